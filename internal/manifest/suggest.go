package manifest

import (
	"reflect"
	"strings"

	"github.com/elafros/elafros/api/v1alpha1"
)

// movedField explains a field that people write from other shapes of the
// API (spec.md, later Knative) and where it lives here.
type movedField struct {
	in   reflect.Type
	name string
	hint string
}

var movedFields = []movedField{
	{reflect.TypeOf(v1alpha1.RouteSpec{}), "traffic",
		`unknown field; traffic lives at spec.rollout.traffic here (the shape of the Elafros normative examples): move this list under "rollout:"`},
	{reflect.TypeOf(v1alpha1.ServiceRollout{}), "traffic",
		`unknown field; a Service's traffic is moved by its strategy (automatic, manual, canary): to split traffic by hand, write a Route with spec.rollout.traffic or run "elafros rollout"`},
	{reflect.TypeOf(v1alpha1.ConfigurationSpec{}), "template",
		`unknown field, did you mean "revisionTemplate"? ("template" is later Knative's name)`},
	{reflect.TypeOf(v1alpha1.RevisionSpec{}), "containers",
		`unknown field, did you mean "container"? A revision runs exactly one container`},
	{reflect.TypeOf(v1alpha1.RevisionSpec{}), "containerConcurrency",
		`unknown field; use concurrencyModel: SingleThreaded (one request at a time) or Multi`},
	{reflect.TypeOf(v1alpha1.ConfigurationSpec{}), "runLatest",
		`unknown field; use spec.rollout.strategy: automatic`},
	{reflect.TypeOf(v1alpha1.ConfigurationSpec{}), "pinned",
		`unknown field; use spec.rollout.strategy: manual`},
	{reflect.TypeOf(v1alpha1.ConfigurationSpec{}), "release",
		`unknown field; use spec.rollout.strategy: canary with steps`},
}

func movedHint(t reflect.Type, name string) string {
	for _, m := range movedFields {
		if m.in == t && m.name == name {
			return m.hint
		}
		// An inlined spec (ServiceSpec embeds ConfigurationSpec) inherits
		// the hints of what it embeds.
		if t.Kind() == reflect.Struct && m.name == name {
			for i := 0; i < t.NumField(); i++ {
				if f := t.Field(i); f.Anonymous && f.Type == m.in {
					return m.hint
				}
			}
		}
	}
	return ""
}

// suggest returns the accepted name closest to name, or "" when none is
// close enough to be a likely typo.
func suggest(name string, accepted []string) string {
	best, bestD := "", 1<<30
	lname := strings.ToLower(name)
	for _, a := range accepted {
		if strings.ToLower(a) == lname {
			return a
		}
		if d := levenshtein(lname, strings.ToLower(a)); d < bestD {
			best, bestD = a, d
		}
	}
	limit := 2
	if len(name) <= 4 {
		limit = 1
	}
	if bestD <= limit {
		return best
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
