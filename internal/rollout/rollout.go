package rollout

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Conventional target names (the seed's; convention only).
const (
	Current = "current"
	Next    = "next"
)

// Traffic is a Route's spec.rollout.traffic.
type Traffic = []v1alpha1.TrafficTarget

// ReadyFunc reports whether a revision is Ready to receive traffic, and
// why not. A nil ReadyFunc treats every revision as Ready.
type ReadyFunc func(revisionName string) (ready bool, why string)

// RefusedError is returned when an operation would break an invariant or
// cannot apply; Reason is written for the person who asked.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// IsRefused reports whether err is a refusal.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Find returns the index of the target with the given name, or -1.
func Find(t Traffic, name string) int {
	return slices.IndexFunc(t, func(x v1alpha1.TrafficTarget) bool { return x.Name == name })
}

// SetNext sends pct percent to the target named "next" and the rest (less
// what other targets hold) to "current": the seed's "rollout next percent N".
func SetNext(t Traffic, pct int, ready ReadyFunc) (Traffic, error) {
	if pct < 0 || pct > 100 {
		return nil, refuse("percent must be between 0 and 100, got %d", pct)
	}
	ci, ni := Find(t, Current), Find(t, Next)
	if ci < 0 || ni < 0 {
		return nil, refuse("the route needs targets named %q and %q to split between; it has %s", Current, Next, names(t))
	}
	if same(t[ci], t[ni]) && pct != 0 && pct != 100 {
		return nil, refuse("next and current are the same %s; deploy a new revision before splitting", describe(t[ni]))
	}
	others := 0
	for i, x := range t {
		if i != ci && i != ni {
			others += x.Percent
		}
	}
	if pct+others > 100 {
		return nil, refuse("other targets hold %d%%, so next can have at most %d%%", others, 100-others)
	}
	out := slices.Clone(t)
	out[ni].Percent = pct
	out[ci].Percent = 100 - pct - others
	return check(t, out, ready)
}

// Finish makes current address next's revision at 100% and keeps next
// addressable at 0% on the same revision (the seed's final step).
func Finish(t Traffic, ready ReadyFunc) (Traffic, error) {
	ci, ni := Find(t, Current), Find(t, Next)
	if ni < 0 {
		return nil, refuse("there is no %q target to finish; the route has %s", Next, names(t))
	}
	out := withoutPercents(t)
	nt := t[ni]
	nt.Percent = 0
	cur := nt
	cur.Name, cur.Percent = Current, 100
	if ci >= 0 {
		out[ci] = cur
		out[ni] = nt
	} else {
		out[ni] = nt
		out = append([]v1alpha1.TrafficTarget{cur}, out...)
	}
	return check(t, out, ready)
}

// Abort sends all traffic back to current and keeps next addressable at
// 0%, so the aborted revision can still be inspected and is not staged
// again.
func Abort(t Traffic, ready ReadyFunc) (Traffic, error) {
	ci := Find(t, Current)
	if ci < 0 {
		return nil, refuse("there is no %q target to go back to; the route has %s", Current, names(t))
	}
	out := withoutPercents(t)
	out[ci].Percent = 100
	return check(t, out, ready)
}

// Pin sends all traffic to one revision as current; named 0% targets
// other than current (next, previews) stay addressable. Targets that
// follow a configuration are replaced.
func Pin(t Traffic, revision string, ready ReadyFunc) (Traffic, error) {
	if revision == "" {
		return nil, refuse("name the revision to pin")
	}
	out := Traffic{{Name: Current, RevisionName: revision, Percent: 100}}
	for _, x := range t {
		if x.Name != "" && x.Name != Current {
			x.Percent = 0
			out = append(out, x)
		}
	}
	return check(t, out, ready)
}

// Stage makes revision addressable under name at 0% (next, or a preview
// such as pr-42), replacing what that name addressed. If the name held
// traffic, that share returns to current.
func Stage(t Traffic, name, revision string, ready ReadyFunc) (Traffic, error) {
	if name == "" || revision == "" {
		return nil, refuse("staging needs a target name and a revision")
	}
	if name == Current {
		return nil, refuse("%q carries the traffic; use pin or finish to change it", Current)
	}
	out := slices.Clone(t)
	tgt := v1alpha1.TrafficTarget{Name: name, RevisionName: revision}
	if i := Find(out, name); i >= 0 {
		freed := out[i].Percent
		if freed > 0 {
			ci := Find(out, Current)
			if ci < 0 {
				return nil, refuse("%q holds %d%% and there is no %q to give it back to", name, freed, Current)
			}
			out[ci].Percent += freed
		}
		out[i] = tgt
	} else {
		out = append(out, tgt)
	}
	return check(t, out, ready)
}

// Unstage removes the named target; a share it held returns to current.
func Unstage(t Traffic, name string, ready ReadyFunc) (Traffic, error) {
	i := Find(t, name)
	if i < 0 {
		return slices.Clone(t), nil
	}
	if name == Current {
		return nil, refuse("%q carries the traffic and cannot be removed", Current)
	}
	out := slices.Clone(t)
	if freed := out[i].Percent; freed > 0 {
		ci := Find(out, Current)
		if ci < 0 {
			return nil, refuse("%q holds %d%% and there is no %q to give it back to", name, freed, Current)
		}
		out[ci].Percent += freed
	}
	out = slices.Delete(out, i, i+1)
	return check(t, out, ready)
}

// StartCanary stages revision as next at the first step, current keeping
// the rest. If there is no current yet (a first deploy), revision becomes
// current at 100%: there is nothing to compare it against.
func StartCanary(t Traffic, revision string, steps []int, ready ReadyFunc) (Traffic, error) {
	if len(steps) == 0 {
		return nil, refuse("a canary needs steps such as [5, 25, 50, 100]")
	}
	if Find(t, Current) < 0 {
		return Pin(t, revision, ready)
	}
	staged, err := Stage(t, Next, revision, nil)
	if err != nil {
		return nil, err
	}
	if steps[0] >= 100 {
		return Finish(staged, ready)
	}
	out, err := SetNext(staged, steps[0], ready)
	if err != nil {
		return nil, err
	}
	return check(t, out, ready)
}

// Promote moves next to the first step above its share; past the last
// step it finishes. done reports that the rollout finished.
func Promote(t Traffic, steps []int, ready ReadyFunc) (out Traffic, done bool, err error) {
	if errs := v1alpha1.ValidateSteps(steps, field.NewPath("steps")); len(errs) > 0 || len(steps) == 0 {
		return nil, false, refuse("invalid steps %v: strictly increasing percents ending at 100", steps)
	}
	ni := Find(t, Next)
	if ni < 0 {
		return nil, false, refuse("there is no %q target to promote; the route has %s", Next, names(t))
	}
	if ci := Find(t, Current); ci >= 0 && same(t[ci], t[ni]) {
		return nil, false, refuse("next and current are the same %s; nothing to promote", describe(t[ni]))
	}
	cur := t[ni].Percent
	for _, s := range steps {
		if s > cur {
			if s == 100 {
				out, err = Finish(t, ready)
				return out, err == nil, err
			}
			out, err = SetNext(t, s, ready)
			return out, false, err
		}
	}
	out, err = Finish(t, ready)
	return out, err == nil, err
}

// check validates the result and refuses to move traffic onto a revision
// that is not Ready: a revision whose total share grows must be Ready.
func check(before, after Traffic, ready ReadyFunc) (Traffic, error) {
	r := v1alpha1.Route{Spec: v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: after}}}
	if errs := r.Spec.Validate(field.NewPath("traffic")); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Field + ": " + v1alpha1.FieldErrorMessage(e)
		}
		return nil, refuse("the result would be invalid: %s", strings.Join(msgs, "; "))
	}
	if ready != nil {
		was, now := ByRevision(before), ByRevision(after)
		for _, x := range after {
			if x.RevisionName == "" || now[x.RevisionName] <= was[x.RevisionName] {
				continue
			}
			if ok, why := ready(x.RevisionName); !ok {
				if why == "" {
					why = "it is not Ready"
				}
				return nil, refuse("revision %s cannot take traffic: %s", x.RevisionName, why)
			}
		}
	}
	return after, nil
}

// ByRevision totals percents per pinned revision.
func ByRevision(t Traffic) map[string]int {
	m := map[string]int{}
	for _, x := range t {
		if x.RevisionName != "" {
			m[x.RevisionName] += x.Percent
		}
	}
	return m
}

func withoutPercents(t Traffic) Traffic {
	out := slices.Clone(t)
	for i := range out {
		out[i].Percent = 0
	}
	return out
}

func same(a, b v1alpha1.TrafficTarget) bool {
	return a.RevisionName == b.RevisionName && a.ConfigurationName == b.ConfigurationName
}

func describe(x v1alpha1.TrafficTarget) string {
	if x.RevisionName != "" {
		return "revision " + x.RevisionName
	}
	return "configuration " + x.ConfigurationName
}

func names(t Traffic) string {
	var ns []string
	for _, x := range t {
		if x.Name != "" {
			ns = append(ns, x.Name)
		}
	}
	if len(ns) == 0 {
		return "no named targets"
	}
	return "targets " + strings.Join(ns, ", ")
}
