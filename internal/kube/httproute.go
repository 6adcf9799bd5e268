package kube

// The desired HTTPRoutes of a Route's TrafficPlan, and a plan read back
// from HTTPRoutes: pure functions of the plan, the Route and the Gateway
// (knative's resources/ packages), with the checks that refuse a plan
// before anything is written. traffic.go talks to the API server with
// them; httproute_test.go tests them without a cluster.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// desiredHTTPRoute is one HTTPRoute a plan needs.
type desiredHTTPRoute struct {
	name, tag string
	labels    map[string]string
	owner     metav1.OwnerReference
	ac        *gwac.HTTPRouteApplyConfiguration
	// spec is ac's spec as the API server stores it (every default
	// explicit), to compare with the cache.
	spec gatewayv1.HTTPRouteSpec
}

// desiredHTTPRoutes builds and validates the HTTPRoutes of plan: the domain's first,
// then one per named target's host, by host.
func desiredHTTPRoutes(gateway gatewayv1.ParentReference, route *v1alpha1.Route, plan reconcile.TrafficPlan) ([]desiredHTTPRoute, error) {
	if err := checkTrafficRoute(route); err != nil {
		return nil, err
	}
	if err := checkTrafficPlan(plan); err != nil {
		return nil, err
	}
	domain, err := buildHTTPRoute(gateway, route, "", plan.Domain, domainHTTPRules(plan))
	if err != nil {
		return nil, err
	}
	out := []desiredHTTPRoute{domain}
	for _, host := range slices.Sorted(maps.Keys(plan.Hosts)) {
		target := plan.Hosts[host]
		d, err := buildHTTPRoute(gateway, route, target.Tag, host, []*gwac.HTTPRouteRuleApplyConfiguration{
			catchAllRule(revisionBackendRef(target.Revision, targetWeight)),
		})
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// checkTrafficRoute checks route can own HTTPRoutes.
func checkTrafficRoute(route *v1alpha1.Route) error {
	switch {
	case route.Name == "" || route.Namespace == "":
		return errors.New("the route has no name or namespace")
	case route.UID == "":
		return errors.New("the route has no UID (read it from the API server): its HTTPRoutes' ownerReference needs one")
	}
	if msgs := validation.IsValidLabelValue(route.Name); len(msgs) > 0 {
		return fmt.Errorf("the route's name %q cannot label its HTTPRoutes: %s", route.Name, strings.Join(msgs, "; "))
	}
	return nil
}

// checkTrafficPlan checks every name and number of plan against what an
// HTTPRoute accepts.
func checkTrafficPlan(plan reconcile.TrafficPlan) error {
	if err := checkRouteHost(plan.Domain); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	for i, b := range plan.Split {
		if b.Revision == "" {
			return fmt.Errorf("split[%d] has no revision", i)
		}
		if b.Percent < 0 || b.Percent > 100 {
			return fmt.Errorf("split[%d] (revision %s) has percent %d, not 0 to 100", i, b.Revision, b.Percent)
		}
	}
	for tag, rev := range plan.Tags {
		if msgs := validation.IsDNS1123Label(tag); len(msgs) > 0 {
			return fmt.Errorf("named target %q: %s", tag, strings.Join(msgs, "; "))
		}
		if rev == "" {
			return fmt.Errorf("named target %q has no revision", tag)
		}
	}
	// Each host is one HTTPRoute named after its tag, so two hosts with
	// one tag would write the same object; and a host serves the revision
	// its tag names on the domain's Elafros-Target rule, or the two ways
	// to reach a target would disagree.
	hostOf := make(map[string]string, len(plan.Hosts))
	for _, host := range slices.Sorted(maps.Keys(plan.Hosts)) {
		target := plan.Hosts[host]
		if err := checkRouteHost(host); err != nil {
			return fmt.Errorf("named target host: %w", err)
		}
		switch rev, ok := plan.Tags[target.Tag]; {
		case target.Revision == "":
			return fmt.Errorf("named target host %q has no revision", host)
		case !ok:
			return fmt.Errorf("named target host %q serves tag %q, which is not one of the plan's named targets %v", host, target.Tag, slices.Sorted(maps.Keys(plan.Tags)))
		case rev != target.Revision:
			return fmt.Errorf("named target host %q serves revision %s as tag %q, but the tag names revision %s", host, target.Revision, target.Tag, rev)
		case hostOf[target.Tag] != "":
			return fmt.Errorf("named target hosts %q and %q both serve tag %q; each tag has one host", hostOf[target.Tag], host, target.Tag)
		}
		hostOf[target.Tag] = host
	}
	return nil
}

// checkRouteHost checks h is a precise HTTPRoute hostname.
func checkRouteHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
		return fmt.Errorf("host %q: %s", h, strings.Join(msgs, "; "))
	}
	return nil
}

// domainHTTPRules are the rules of a route's domain: one per named target
// (by tag) matching its Elafros-Target header, then the split. An empty
// split is a rule without backendRefs, which the gateway answers with an
// error rather than falling through to another HTTPRoute.
func domainHTTPRules(plan reconcile.TrafficPlan) []*gwac.HTTPRouteRuleApplyConfiguration {
	var rules []*gwac.HTTPRouteRuleApplyConfiguration
	for _, tag := range slices.Sorted(maps.Keys(plan.Tags)) {
		header := gwac.HTTPHeaderMatch().WithType(gatewayv1.HeaderMatchExact).WithName(TargetHeader).WithValue(tag)
		rules = append(rules, gwac.HTTPRouteRule().WithMatches(rootPathMatch().WithHeaders(header)).
			WithBackendRefs(revisionBackendRef(plan.Tags[tag], targetWeight)))
	}
	split := gwac.HTTPRouteRule().WithMatches(rootPathMatch())
	for _, b := range plan.Split {
		split.WithBackendRefs(revisionBackendRef(b.Revision, int32(b.Percent)))
	}
	return append(rules, split)
}

// catchAllRule is a rule matching every request, to backends. The match is the
// API server's default, explicit so that the cache compares equal.
func catchAllRule(backends ...*gwac.HTTPBackendRefApplyConfiguration) *gwac.HTTPRouteRuleApplyConfiguration {
	return gwac.HTTPRouteRule().WithMatches(rootPathMatch()).WithBackendRefs(backends...)
}

// rootPathMatch matches every path (PathPrefix /, the default).
func rootPathMatch() *gwac.HTTPRouteMatchApplyConfiguration {
	return gwac.HTTPRouteMatch().WithPath(gwac.HTTPPathMatch().WithType(gatewayv1.PathMatchPathPrefix).WithValue("/"))
}

// revisionBackendRef sends weight to revision's Service (group and kind are the
// defaults, explicit so that the cache compares equal).
func revisionBackendRef(revision string, weight int32) *gwac.HTTPBackendRefApplyConfiguration {
	return gwac.HTTPBackendRef().WithGroup("").WithKind(backendServiceKind).
		WithName(gatewayv1.ObjectName(ServiceName(revision))).WithPort(ServicePort).WithWeight(weight)
}

// parentRef is the Gateway g, for a route in namespace.
func parentRef(g gatewayv1.ParentReference, namespace string) *gwac.ParentReferenceApplyConfiguration {
	p := gwac.ParentReference().WithGroup(parentGatewayGroup).WithKind(parentGatewayKind).
		WithNamespace(gatewayv1.Namespace(namespace)).WithName(g.Name)
	if g.Group != nil {
		p.WithGroup(*g.Group)
	}
	if g.Kind != nil {
		p.WithKind(*g.Kind)
	}
	if g.Namespace != nil && *g.Namespace != "" {
		p.WithNamespace(*g.Namespace)
	}
	if g.SectionName != nil {
		p.WithSectionName(*g.SectionName)
	}
	if g.Port != nil {
		p.WithPort(*g.Port)
	}
	return p
}

// buildHTTPRoute is the HTTPRoute of route's tag ("" for the domain) on host.
func buildHTTPRoute(gateway gatewayv1.ParentReference, route *v1alpha1.Route, tag, host string, rules []*gwac.HTTPRouteRuleApplyConfiguration) (desiredHTTPRoute, error) {
	d := desiredHTTPRoute{name: HTTPRouteName(route.Name, tag), tag: tag}
	if msgs := validation.IsDNS1123Subdomain(d.name); len(msgs) > 0 {
		return d, fmt.Errorf("HTTPRoute name %q: %s", d.name, strings.Join(msgs, "; "))
	}
	d.labels = map[string]string{ManagedByLabelKey: ManagedByValue, v1alpha1.RouteLabelKey: route.Name}
	if tag != "" {
		d.labels[TagLabelKey] = tag
	}
	d.owner = metav1.OwnerReference{APIVersion: v1alpha1.APIVersion, Kind: routeOwnerKind, Name: route.Name, UID: route.UID,
		Controller: new(true), BlockOwnerDeletion: new(true)}
	spec := gwac.HTTPRouteSpec().WithParentRefs(parentRef(gateway, route.Namespace)).
		WithHostnames(gatewayv1.Hostname(host)).WithRules(rules...)
	d.ac = gwac.HTTPRoute(d.name, route.Namespace).WithLabels(d.labels).
		WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion(d.owner.APIVersion).WithKind(d.owner.Kind).
			WithName(d.owner.Name).WithUID(d.owner.UID).WithController(true).WithBlockOwnerDeletion(true)).
		WithSpec(spec)
	var err error
	if d.spec, err = typedHTTPRouteSpec(spec); err != nil {
		return d, fmt.Errorf("HTTPRoute %s: %w", d.name, err)
	}
	return d, checkGatewayLimits(d)
}

// typedHTTPRouteSpec converts an apply configuration to the type the cache holds
// (they share the wire form).
func typedHTTPRouteSpec(ac *gwac.HTTPRouteSpecApplyConfiguration) (gatewayv1.HTTPRouteSpec, error) {
	var spec gatewayv1.HTTPRouteSpec
	b, err := json.Marshal(ac)
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		return spec, fmt.Errorf("converting the spec: %w", err)
	}
	return spec, nil
}

// checkGatewayLimits refuses an HTTPRoute beyond the Gateway API's limits.
func checkGatewayLimits(d desiredHTTPRoute) error {
	if n := len(d.spec.Hostnames); n > MaxHostnames {
		return fmt.Errorf("%w: HTTPRoute %s would have %d hostnames; at most %d", ErrGatewayLimit, d.name, n, MaxHostnames)
	}
	if n := len(d.spec.Rules); n > MaxRules {
		return fmt.Errorf("%w: HTTPRoute %s would have %d rules, one per named target (%s header) and one for the split; at most %d, so at most %d named targets",
			ErrGatewayLimit, d.name, n, TargetHeader, MaxRules, MaxRules-1)
	}
	for i, r := range d.spec.Rules {
		if n := len(r.BackendRefs); n > MaxBackendRefs {
			return fmt.Errorf("%w: rule %d of HTTPRoute %s would have %d backendRefs, one per revision of the split; at most %d revisions",
				ErrGatewayLimit, i, d.name, n, MaxBackendRefs)
		}
	}
	return nil
}

// checkOwnedHTTPRoute reports why live is not route's HTTPRoute for tag.
func checkOwnedHTTPRoute(live *gatewayv1.HTTPRoute, route *v1alpha1.Route, tag string) error {
	id := live.Namespace + "/" + live.Name
	l := live.Labels
	if l[ManagedByLabelKey] != ManagedByValue || l[v1alpha1.RouteLabelKey] != route.Name || l[TagLabelKey] != tag {
		return fmt.Errorf("%w: HTTPRoute %s (labels %v) is not route %s's; delete or rename it to let elafros serve the route",
			ErrForeignHTTPRoute, id, l, route.Name)
	}
	ref := metav1.GetControllerOfNoCopy(live)
	if ref == nil || ref.Kind != routeOwnerKind || !strings.HasPrefix(ref.APIVersion, v1alpha1.GroupName+"/") || ref.Name != route.Name {
		return fmt.Errorf("%w: HTTPRoute %s is not controlled by route %s; delete it to let elafros serve the route",
			ErrForeignHTTPRoute, id, route.Name)
	}
	if ref.UID != route.UID {
		return fmt.Errorf("%w: HTTPRoute %s belongs to an earlier route %s (uid %s, not %s), which the garbage collector is to delete",
			ErrForeignHTTPRoute, id, route.Name, ref.UID, route.UID)
	}
	if live.DeletionTimestamp != nil {
		return fmt.Errorf("HTTPRoute %s is being deleted; it is recreated once gone", id)
	}
	return nil
}

// httpRouteUpToDate reports whether live has d's labels, owner and spec.
func httpRouteUpToDate(live *gatewayv1.HTTPRoute, d *desiredHTTPRoute) bool {
	for k, v := range d.labels {
		if live.Labels[k] != v {
			return false
		}
	}
	if !slices.ContainsFunc(live.OwnerReferences, func(r metav1.OwnerReference) bool {
		return equality.Semantic.DeepEqual(r, d.owner)
	}) {
		return false
	}
	return equality.Semantic.DeepEqual(live.Spec, d.spec)
}

// planOfHTTPRoutes reads a route's HTTPRoutes back into a plan.
func planOfHTTPRoutes(route string, items []gatewayv1.HTTPRoute) (reconcile.TrafficPlan, error) {
	p := reconcile.TrafficPlan{Hosts: map[string]reconcile.NamedTarget{}, Tags: map[string]string{}}
	for i := range items {
		hr := &items[i]
		tag := hr.Labels[TagLabelKey]
		var err error
		switch {
		case hr.Name != HTTPRouteName(route, tag):
			err = fmt.Errorf("HTTPRoute %s is labelled with route %s (tag %q) but is not named %s", hr.Name, route, tag, HTTPRouteName(route, tag))
		case tag == "":
			err = readDomainHTTPRoute(&p, hr)
		default:
			err = readHostHTTPRoute(&p, hr)
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// readDomainHTTPRoute reads the domain's HTTPRoute: its host, named targets and
// split.
func readDomainHTTPRoute(p *reconcile.TrafficPlan, hr *gatewayv1.HTTPRoute) error {
	if len(hr.Spec.Hostnames) != 1 {
		return fmt.Errorf("HTTPRoute %s has %d hostnames, not 1", hr.Name, len(hr.Spec.Hostnames))
	}
	p.Domain = string(hr.Spec.Hostnames[0])
	splits := 0
	for i, r := range hr.Spec.Rules {
		if tag, ok := targetOfRule(r); ok {
			rev, err := onlyRevisionOf(r)
			if err != nil {
				return fmt.Errorf("HTTPRoute %s rule %d (%s: %s): %w", hr.Name, i, TargetHeader, tag, err)
			}
			p.Tags[tag] = rev
			continue
		}
		if splits++; splits > 1 {
			return fmt.Errorf("HTTPRoute %s has more than one split rule (rule %d)", hr.Name, i)
		}
		for _, b := range r.BackendRefs {
			rev, err := revisionOfBackend(b.BackendRef)
			if err != nil {
				return fmt.Errorf("HTTPRoute %s rule %d: %w", hr.Name, i, err)
			}
			weight := int32(1) // the Gateway API's default
			if b.Weight != nil {
				weight = *b.Weight
			}
			p.Split = append(p.Split, reconcile.Backend{Revision: rev, Percent: int(weight)})
		}
	}
	return nil
}

// readHostHTTPRoute reads a named target host's HTTPRoute.
func readHostHTTPRoute(p *reconcile.TrafficPlan, hr *gatewayv1.HTTPRoute) error {
	if len(hr.Spec.Hostnames) != 1 || len(hr.Spec.Rules) != 1 {
		return fmt.Errorf("HTTPRoute %s has %d hostnames and %d rules, not 1 and 1", hr.Name, len(hr.Spec.Hostnames), len(hr.Spec.Rules))
	}
	rev, err := onlyRevisionOf(hr.Spec.Rules[0])
	if err != nil {
		return fmt.Errorf("HTTPRoute %s: %w", hr.Name, err)
	}
	p.Hosts[string(hr.Spec.Hostnames[0])] = reconcile.NamedTarget{Tag: hr.Labels[TagLabelKey], Revision: rev}
	return nil
}

// targetOfRule is the named target a rule matches by its Elafros-Target
// header.
func targetOfRule(r gatewayv1.HTTPRouteRule) (string, bool) {
	for _, m := range r.Matches {
		for _, h := range m.Headers {
			exact := h.Type == nil || *h.Type == gatewayv1.HeaderMatchExact
			if exact && strings.EqualFold(string(h.Name), TargetHeader) {
				return h.Value, true
			}
		}
	}
	return "", false
}

// onlyRevisionOf is the revision of a rule's one backendRef.
func onlyRevisionOf(r gatewayv1.HTTPRouteRule) (string, error) {
	if len(r.BackendRefs) != 1 {
		return "", fmt.Errorf("%d backendRefs, not 1", len(r.BackendRefs))
	}
	return revisionOfBackend(r.BackendRefs[0].BackendRef)
}

// revisionOfBackend is the revision whose Service b is: ServiceName inverted
// (it puts a fixed prefix and suffix around the revision's name).
func revisionOfBackend(b gatewayv1.BackendRef) (string, error) {
	if (b.Kind != nil && *b.Kind != backendServiceKind) || (b.Group != nil && *b.Group != "") {
		return "", fmt.Errorf("backendRef %s is not a Service", b.Name)
	}
	const mark = "\x00"
	prefix, suffix, _ := strings.Cut(ServiceName(mark), mark)
	name := string(b.Name)
	rev, ok := strings.CutPrefix(name, prefix)
	if ok {
		rev, ok = strings.CutSuffix(rev, suffix)
	}
	if !ok || rev == "" {
		return "", fmt.Errorf("backendRef %s is not a revision's Service", name)
	}
	return rev, nil
}
