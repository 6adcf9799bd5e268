package kube_test

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/local/router"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

const (
	trafficGatewayNS = "gateways"
	trafficGateway   = "elafros"
)

// trafficEnv is one cluster shared by the Traffic subtests, each in its
// own namespace.
type trafficEnv struct {
	c     *kubetest.Cluster
	store *client.Store
	gw    gwclient.Interface // admin, uncounted
	tr    *kube.Traffic
	reqs  *requestLog // every request of tr, but its informer's watch
}

// requestLog records the API requests made through a rest.Config.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Get("watch") != "true" {
			l.mu.Lock()
			l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
			l.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

// since returns the requests after the first n.
func (l *requestLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reqs[n:]...)
}

func (l *requestLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func startTrafficEnv(t *testing.T) *trafficEnv {
	t.Helper()
	c := kubetest.Start(t)
	ctx := t.Context()
	if err := kube.InstallCRDs(ctx, c.Config, append(kube.CRDs(), crdDocs(t, c.GatewayAPICRDs(t))...)...); err != nil {
		t.Fatal(err)
	}
	e := &trafficEnv{c: c, reqs: &requestLog{}}
	var err error
	if e.store, err = client.New(c.Config); err != nil {
		t.Fatal(err)
	}
	if e.gw, err = gwclient.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	e.namespace(t, trafficGatewayNS)
	createGateway(t, e.gw)
	cfg := rest.CopyConfig(c.Config)
	cfg.Wrap(e.reqs.wrap)
	e.tr = e.startTraffic(t, cfg, gatewayRef(trafficGatewayNS))
	return e
}

// crdDocs keeps the documents that hold only CustomResourceDefinitions
// (the Gateway API bundle also has a ValidatingAdmissionPolicy).
func crdDocs(t *testing.T, docs [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range docs {
		objs, err := kube.Decode(d)
		if err != nil {
			t.Fatal(err)
		}
		crds := len(objs) > 0
		for _, o := range objs {
			crds = crds && o.GetKind() == "CustomResourceDefinition"
		}
		if crds {
			out = append(out, d)
		}
	}
	return out
}

func gatewayRef(ns string) gatewayv1.ParentReference {
	r := gatewayv1.ParentReference{Name: trafficGateway}
	if ns != "" {
		n := gatewayv1.Namespace(ns)
		r.Namespace = &n
	}
	return r
}

// createGateway makes a GatewayClass and a Gateway (no controller serves
// them: HTTPRoutes are only stored).
func createGateway(t *testing.T, gw gwclient.Interface) {
	t.Helper()
	ctx := t.Context()
	gc := &gatewayv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "elafros-test"},
		Spec: gatewayv1.GatewayClassSpec{ControllerName: "elafros.dev/test"}}
	if _, err := gw.GatewayV1().GatewayClasses().Create(ctx, gc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	g := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: trafficGateway, Namespace: trafficGatewayNS},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "elafros-test",
			Listeners: []gatewayv1.Listener{{Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: 80}}}}
	if _, err := gw.GatewayV1().Gateways(trafficGatewayNS).Create(ctx, g, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *trafficEnv) startTraffic(t *testing.T, cfg *rest.Config, gw gatewayv1.ParentReference) *kube.Traffic {
	t.Helper()
	tr, err := kube.NewTraffic(cfg, kube.TrafficOptions{Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (e *trafficEnv) namespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.c.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// route creates a real Route, so that ownerReferences carry its UID.
func (e *trafficEnv) route(t *testing.T, ns, name string) *v1alpha1.Route {
	t.Helper()
	r := &v1alpha1.Route{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: "Route"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: []v1alpha1.TrafficTarget{
			{ConfigurationName: "my-service", Percent: 100},
		}}},
	}
	o, err := e.store.Create(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	created := o.(*v1alpha1.Route)
	if created.UID == "" {
		t.Fatal("the created Route has no UID")
	}
	return created
}

func (e *trafficEnv) httpRoute(t *testing.T, ns, name string) *gatewayv1.HTTPRoute {
	t.Helper()
	hr, err := e.gw.GatewayV1().HTTPRoutes(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("HTTPRoute %s/%s: %v", ns, name, err)
	}
	return hr
}

// names lists the HTTPRoutes of ns.
func (e *trafficEnv) names(t *testing.T, ns string) []string {
	t.Helper()
	l, err := e.gw.GatewayV1().HTTPRoutes(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, hr := range l.Items {
		out = append(out, hr.Name)
	}
	return out
}

func (e *trafficEnv) readPlan(t *testing.T, ns, route string) (reconcile.TrafficPlan, bool) {
	t.Helper()
	p, found, err := kube.ReadPlan(t.Context(), e.c.Config, ns, route)
	if err != nil {
		t.Fatal(err)
	}
	return p, found
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

// Expected shapes, spelled out as the Gateway API stores them (with its
// defaults), independently of the implementation.

func wantParent(ns string) []gatewayv1.ParentReference {
	g, k, n := gatewayv1.Group(gatewayv1.GroupName), gatewayv1.Kind("Gateway"), gatewayv1.Namespace(ns)
	return []gatewayv1.ParentReference{{Group: &g, Kind: &k, Namespace: &n, Name: trafficGateway}}
}

func wantBackend(rev string, weight int32) gatewayv1.HTTPBackendRef {
	g, k, port := gatewayv1.Group(""), gatewayv1.Kind("Service"), gatewayv1.PortNumber(kube.ServicePort)
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Group: &g, Kind: &k, Name: gatewayv1.ObjectName(kube.ServiceName(rev)), Port: &port},
		Weight:                 &weight,
	}}
}

func wantMatch(tag string) []gatewayv1.HTTPRouteMatch {
	pt, v := gatewayv1.PathMatchPathPrefix, "/"
	m := gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: &pt, Value: &v}}
	if tag != "" {
		ht := gatewayv1.HeaderMatchExact
		m.Headers = []gatewayv1.HTTPHeaderMatch{{Type: &ht, Name: "Elafros-Target", Value: tag}}
	}
	return []gatewayv1.HTTPRouteMatch{m}
}

func wantOwner(r *v1alpha1.Route) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "elafros.dev/v1alpha1", Kind: "Route", Name: r.Name, UID: r.UID, Controller: &yes, BlockOwnerDeletion: &yes}}
}

func splitPlan(ns, route string) reconcile.TrafficPlan {
	domain := route + "." + ns + ".example.com"
	return reconcile.TrafficPlan{
		Domain: domain,
		Split:  []reconcile.Backend{{Revision: "my-service-00002", Percent: 75, Ready: true}, {Revision: "my-service-00001", Percent: 25}},
		Hosts: map[string]reconcile.NamedTarget{
			"current." + domain: {Tag: "current", Revision: "my-service-00002"},
			"next." + domain:    {Tag: "next", Revision: "my-service-00003"},
		},
		Tags: map[string]string{"current": "my-service-00002", "next": "my-service-00003"},
	}
}

// unready is p as ReadPlan returns it: Ready is the caller's to fill.
func unready(p reconcile.TrafficPlan) reconcile.TrafficPlan {
	out := p
	out.Split = nil
	for _, b := range p.Split {
		b.Ready = false
		out.Split = append(out.Split, b)
	}
	out.Hosts, out.Tags = maps.Clone(p.Hosts), maps.Clone(p.Tags)
	if out.Hosts == nil {
		out.Hosts = map[string]reconcile.NamedTarget{}
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	return out
}

func TestTrafficOptions(t *testing.T) {
	_, err := kube.NewTraffic(&rest.Config{Host: "https://127.0.0.1:1"}, kube.TrafficOptions{})
	if err == nil || !strings.Contains(err.Error(), "Gateway.Name") {
		t.Fatalf("NewTraffic without a Gateway name: err = %v, want one naming Gateway.Name", err)
	}
	tr, err := kube.NewTraffic(&rest.Config{Host: "https://127.0.0.1:1"}, kube.TrafficOptions{Gateway: gatewayRef("")})
	if err != nil {
		t.Fatal(err)
	}
	r := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "u"}}
	if err := tr.Apply(t.Context(), r, splitPlan("ns", "r")); err == nil || !strings.Contains(err.Error(), "Start") {
		t.Fatalf("Apply before Start: err = %v, want one saying Start was not called", err)
	}
	if kube.TargetHeader != router.TargetHeader {
		t.Fatalf("kube.TargetHeader %q differs from the local router's %q", kube.TargetHeader, router.TargetHeader)
	}
}

func TestTraffic(t *testing.T) {
	e := startTrafficEnv(t)

	t.Run("split, hosts, header rules and references as stored", func(t *testing.T) {
		ns := e.namespace(t, "split")
		r := e.route(t, ns, "web")
		plan := splitPlan(ns, "web")
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		diff(t, "HTTPRoutes", []string{"web", "web--current", "web--next"}, e.names(t, ns))

		hr := e.httpRoute(t, ns, kube.HTTPRouteName("web", ""))
		diff(t, "domain hostnames", []gatewayv1.Hostname{"web.split.example.com"}, hr.Spec.Hostnames)
		diff(t, "domain parentRefs", wantParent(trafficGatewayNS), hr.Spec.ParentRefs)
		diff(t, "domain rules", []gatewayv1.HTTPRouteRule{
			{Matches: wantMatch("current"), BackendRefs: []gatewayv1.HTTPBackendRef{wantBackend("my-service-00002", 100)}},
			{Matches: wantMatch("next"), BackendRefs: []gatewayv1.HTTPBackendRef{wantBackend("my-service-00003", 100)}},
			{Matches: wantMatch(""), BackendRefs: []gatewayv1.HTTPBackendRef{wantBackend("my-service-00002", 75), wantBackend("my-service-00001", 25)}},
		}, hr.Spec.Rules)
		diff(t, "domain labels", map[string]string{kube.ManagedByLabelKey: kube.ManagedByValue, v1alpha1.RouteLabelKey: "web"}, hr.Labels)
		diff(t, "domain owner", wantOwner(r), hr.OwnerReferences)

		for tag, rev := range map[string]string{"current": "my-service-00002", "next": "my-service-00003"} {
			hr := e.httpRoute(t, ns, kube.HTTPRouteName("web", tag))
			diff(t, tag+" hostnames", []gatewayv1.Hostname{gatewayv1.Hostname(tag + ".web.split.example.com")}, hr.Spec.Hostnames)
			diff(t, tag+" parentRefs", wantParent(trafficGatewayNS), hr.Spec.ParentRefs)
			diff(t, tag+" rules", []gatewayv1.HTTPRouteRule{
				{Matches: wantMatch(""), BackendRefs: []gatewayv1.HTTPBackendRef{wantBackend(rev, 100)}},
			}, hr.Spec.Rules)
			diff(t, tag+" labels", map[string]string{kube.ManagedByLabelKey: kube.ManagedByValue, v1alpha1.RouteLabelKey: "web", kube.TagLabelKey: tag}, hr.Labels)
			diff(t, tag+" owner", wantOwner(r), hr.OwnerReferences)
		}

		got, found := e.readPlan(t, ns, "web")
		if !found {
			t.Fatal("ReadPlan found no HTTPRoute")
		}
		diff(t, "ReadPlan", unready(plan), got)
	})

	t.Run("unchanged Apply makes no request", func(t *testing.T) {
		ns := e.namespace(t, "steady")
		r := e.route(t, ns, "web")
		plan := splitPlan(ns, "web")
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		before := e.httpRoute(t, ns, "web").ResourceVersion
		for i := range 3 {
			n := e.reqs.len()
			same := unready(plan) // equal content, fresh maps and slices
			if err := e.tr.Apply(t.Context(), r, same); err != nil {
				t.Fatal(err)
			}
			if reqs := e.reqs.since(n); len(reqs) != 0 {
				t.Fatalf("Apply %d of an unchanged plan made %d requests: %v", i+2, len(reqs), reqs)
			}
		}
		if after := e.httpRoute(t, ns, "web").ResourceVersion; after != before {
			t.Errorf("resourceVersion moved from %s to %s", before, after)
		}

		// A change writes, and only the HTTPRoute that changed.
		plan.Split = []reconcile.Backend{{Revision: "my-service-00002", Percent: 50}, {Revision: "my-service-00001", Percent: 50}}
		n := e.reqs.len()
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		diff(t, "requests of a new split", []string{"PATCH /apis/gateway.networking.k8s.io/v1/namespaces/steady/httproutes/web"}, e.reqs.since(n))
		got, _ := e.readPlan(t, ns, "web")
		diff(t, "split after the change", unready(plan).Split, got.Split)
		n = e.reqs.len()
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		if reqs := e.reqs.since(n); len(reqs) != 0 {
			t.Fatalf("Apply right after a change made %d requests: %v", len(reqs), reqs)
		}

		n = e.reqs.len()
		if err := e.tr.Forget(t.Context(), ns, "never-applied"); err != nil {
			t.Fatal(err)
		}
		if reqs := e.reqs.since(n); len(reqs) != 0 {
			t.Fatalf("Forget of a route without HTTPRoutes made %d requests: %v", len(reqs), reqs)
		}
	})

	t.Run("a removed named target loses its HTTPRoute", func(t *testing.T) {
		ns := e.namespace(t, "untag")
		r := e.route(t, ns, "web")
		plan := splitPlan(ns, "web")
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		delete(plan.Tags, "next")
		delete(plan.Hosts, "next.web.untag.example.com")
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		_, err := e.gw.GatewayV1().HTTPRoutes(ns).Get(t.Context(), "web--next", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("HTTPRoute web--next after its target was removed: err = %v, want NotFound", err)
		}
		diff(t, "HTTPRoutes", []string{"web", "web--current"}, e.names(t, ns))
		got, _ := e.readPlan(t, ns, "web")
		diff(t, "ReadPlan", unready(plan), got)
	})

	t.Run("ReadPlan round-trips", func(t *testing.T) {
		ns := e.namespace(t, "roundtrip")
		if _, found := e.readPlan(t, ns, "none"); found {
			t.Fatal("ReadPlan found HTTPRoutes of a route never applied")
		}
		r := e.route(t, ns, "web")
		// Two named targets on one revision, with Knative's host template:
		// each host still gets its own target's HTTPRoute.
		domain := "web.roundtrip.example.com"
		plan := reconcile.TrafficPlan{
			Domain: domain,
			Split:  []reconcile.Backend{{Revision: "a", Percent: 34}, {Revision: "b", Percent: 33}, {Revision: "a", Percent: 33}},
			Hosts: map[string]reconcile.NamedTarget{
				"current-web.roundtrip.example.com": {Tag: "current", Revision: "a"},
				"latest-web.roundtrip.example.com":  {Tag: "latest", Revision: "a"},
				"cur-web.roundtrip.example.com":     {Tag: "cur", Revision: "b"},
			},
			Tags: map[string]string{"current": "a", "latest": "a", "cur": "b"},
		}
		if err := e.tr.Apply(t.Context(), r, plan); err != nil {
			t.Fatal(err)
		}
		got, found := e.readPlan(t, ns, "web")
		if !found {
			t.Fatal("ReadPlan found no HTTPRoute")
		}
		diff(t, "ReadPlan", unready(plan), got)
		for tag, host := range map[string]string{"current": "current-web", "latest": "latest-web", "cur": "cur-web"} {
			hr := e.httpRoute(t, ns, kube.HTTPRouteName("web", tag))
			diff(t, "hostnames of "+tag, []gatewayv1.Hostname{gatewayv1.Hostname(host + ".roundtrip.example.com")}, hr.Spec.Hostnames)
		}

		// An empty split keeps the domain's HTTPRoute, with a split rule
		// that has no backend (the gateway answers an error).
		empty := reconcile.TrafficPlan{Domain: domain, Hosts: map[string]reconcile.NamedTarget{}, Tags: map[string]string{}}
		if err := e.tr.Apply(t.Context(), r, empty); err != nil {
			t.Fatal(err)
		}
		got, found = e.readPlan(t, ns, "web")
		if !found {
			t.Fatal("ReadPlan found no HTTPRoute for an empty split")
		}
		diff(t, "ReadPlan of an empty split", empty, got)
		diff(t, "rules of an empty split", []gatewayv1.HTTPRouteRule{{Matches: wantMatch("")}}, e.httpRoute(t, ns, "web").Spec.Rules)
		diff(t, "HTTPRoutes", []string{"web"}, e.names(t, ns))
	})

	t.Run("a foreign HTTPRoute with our name is refused and untouched", func(t *testing.T) {
		ns := e.namespace(t, "foreign")
		pt, v := gatewayv1.PathMatchPathPrefix, "/"
		theirs := &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{"team": "other"}},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: wantParent(trafficGatewayNS)},
				Hostnames:       []gatewayv1.Hostname{"theirs.example.com"},
				Rules: []gatewayv1.HTTPRouteRule{{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &pt, Value: &v}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{wantBackend("theirs", 1)}}},
			},
		}
		before, err := e.gw.GatewayV1().HTTPRoutes(ns).Create(t.Context(), theirs, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := e.route(t, ns, "web")
		err = e.tr.Apply(t.Context(), r, splitPlan(ns, "web"))
		if !errors.Is(err, kube.ErrForeignHTTPRoute) || !strings.Contains(err.Error(), "foreign/web") {
			t.Fatalf("Apply over a foreign HTTPRoute: err = %v, want ErrForeignHTTPRoute naming foreign/web", err)
		}
		after := e.httpRoute(t, ns, "web")
		if after.ResourceVersion != before.ResourceVersion || !cmp.Equal(after.Labels, before.Labels) {
			t.Errorf("the foreign HTTPRoute changed: resourceVersion %s -> %s, labels %v -> %v",
				before.ResourceVersion, after.ResourceVersion, before.Labels, after.Labels)
		}
		diff(t, "HTTPRoutes (nothing written)", []string{"web"}, e.names(t, ns))

		// Another route's HTTPRoute (labelled elafros, but not this
		// route's) at a named target's name: route "site--x"'s domain is
		// where route "site"'s target x goes. Refused before any write.
		squatter := e.route(t, ns, "site--x")
		if err := e.tr.Apply(t.Context(), squatter, reconcile.TrafficPlan{Domain: "squat.foreign.example.com"}); err != nil {
			t.Fatal(err)
		}
		owner := e.route(t, ns, "site")
		stolen := reconcile.TrafficPlan{Domain: "site.foreign.example.com",
			Split: []reconcile.Backend{{Revision: "a", Percent: 100}},
			Hosts: map[string]reconcile.NamedTarget{"x.site.foreign.example.com": {Tag: "x", Revision: "a"}}, Tags: map[string]string{"x": "a"}}
		squatted := e.httpRoute(t, ns, "site--x")
		err = e.tr.Apply(t.Context(), owner, stolen)
		if !errors.Is(err, kube.ErrForeignHTTPRoute) || !strings.Contains(err.Error(), "foreign/site--x") {
			t.Fatalf("Apply over another route's HTTPRoute: err = %v, want ErrForeignHTTPRoute naming foreign/site--x", err)
		}
		if _, err := e.gw.GatewayV1().HTTPRoutes(ns).Get(t.Context(), "site", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("HTTPRoute site was written although its plan was refused: err = %v", err)
		}
		if got := e.httpRoute(t, ns, "site--x"); got.ResourceVersion != squatted.ResourceVersion {
			t.Errorf("the other route's HTTPRoute changed: resourceVersion %s -> %s", squatted.ResourceVersion, got.ResourceVersion)
		}
	})

	t.Run("plans beyond the Gateway API limits are refused and write nothing", func(t *testing.T) {
		ns := e.namespace(t, "limits")
		r := e.route(t, ns, "web")
		domain := "web.limits.example.com"
		split := func(n int) []reconcile.Backend {
			var out []reconcile.Backend
			for i := range n {
				out = append(out, reconcile.Backend{Revision: fmt.Sprintf("rev-%02d", i), Percent: 1})
			}
			return out
		}
		tags := func(n int) (map[string]reconcile.NamedTarget, map[string]string) {
			hosts, tags := map[string]reconcile.NamedTarget{}, map[string]string{}
			for i := range n {
				tag := fmt.Sprintf("t%02d", i)
				tags[tag] = "rev-00"
				hosts[tag+"."+domain] = reconcile.NamedTarget{Tag: tag, Revision: "rev-00"}
			}
			return hosts, tags
		}

		hosts, tg := tags(16)
		for _, tc := range []struct {
			name, want string
			plan       reconcile.TrafficPlan
		}{
			{"17 revisions", "17 backendRefs", reconcile.TrafficPlan{Domain: domain, Split: split(17)}},
			{"16 named targets", "17 rules", reconcile.TrafficPlan{Domain: domain, Split: split(1), Hosts: hosts, Tags: tg}},
		} {
			err := e.tr.Apply(t.Context(), r, tc.plan)
			if !errors.Is(err, kube.ErrGatewayLimit) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want ErrGatewayLimit saying %q", tc.name, err, tc.want)
			}
			if names := e.names(t, ns); len(names) != 0 {
				t.Errorf("%s: HTTPRoutes written although the plan was refused: %v", tc.name, names)
			}
		}

		// At the limits, the API server's validation accepts them.
		hosts, tg = tags(15)
		most := reconcile.TrafficPlan{Domain: domain, Split: split(16), Hosts: hosts, Tags: tg}
		if err := e.tr.Apply(t.Context(), r, most); err != nil {
			t.Fatalf("a plan at the limits: %v", err)
		}
		got, _ := e.readPlan(t, ns, "web")
		diff(t, "ReadPlan at the limits", unready(most), got)
		before := e.httpRoute(t, ns, "web").ResourceVersion

		// Beyond them again: what is served stays.
		over := most
		over.Split = split(17)
		if err := e.tr.Apply(t.Context(), r, over); !errors.Is(err, kube.ErrGatewayLimit) {
			t.Fatalf("17 revisions over a served plan: err = %v, want ErrGatewayLimit", err)
		}
		if after := e.httpRoute(t, ns, "web").ResourceVersion; after != before {
			t.Errorf("a refused plan moved resourceVersion from %s to %s", before, after)
		}
	})

	t.Run("Forget deletes every HTTPRoute of the route", func(t *testing.T) {
		ns := e.namespace(t, "forget")
		r := e.route(t, ns, "web")
		keep := e.route(t, ns, "other")
		if err := e.tr.Apply(t.Context(), r, splitPlan(ns, "web")); err != nil {
			t.Fatal(err)
		}
		if err := e.tr.Apply(t.Context(), keep, reconcile.TrafficPlan{Domain: "other.forget.example.com"}); err != nil {
			t.Fatal(err)
		}
		if err := e.tr.Forget(t.Context(), ns, "web"); err != nil {
			t.Fatal(err)
		}
		diff(t, "HTTPRoutes after Forget", []string{"other"}, e.names(t, ns))
		if _, found := e.readPlan(t, ns, "web"); found {
			t.Error("ReadPlan still finds HTTPRoutes after Forget")
		}
		n := e.reqs.len()
		if err := e.tr.Forget(t.Context(), ns, "web"); err != nil {
			t.Fatal(err)
		}
		if reqs := e.reqs.since(n); len(reqs) != 0 {
			t.Errorf("a second Forget made %d requests: %v", len(reqs), reqs)
		}
	})

	t.Run("deleting the Route lets the garbage collector delete its HTTPRoutes", func(t *testing.T) {
		ns := e.namespace(t, "gc")
		r := e.route(t, ns, "web")
		if err := e.tr.Apply(t.Context(), r, splitPlan(ns, "web")); err != nil {
			t.Fatal(err)
		}
		diff(t, "HTTPRoutes", []string{"web", "web--current", "web--next"}, e.names(t, ns))
		if err := e.store.Delete(t.Context(), store.KindRoute, ns, "web"); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, "the HTTPRoutes of a deleted Route to be gone", func() (bool, string) {
			names := e.names(t, ns)
			return len(names) == 0, fmt.Sprintf("left: %v", names)
		})
	})

	t.Run("the Gateway's namespace defaults to the route's", func(t *testing.T) {
		ns := e.namespace(t, "local-gateway")
		tr := e.startTraffic(t, e.c.Config, gatewayRef(""))
		r := e.route(t, ns, "web")
		if err := tr.Apply(t.Context(), r, reconcile.TrafficPlan{Domain: "web.local-gateway.example.com"}); err != nil {
			t.Fatal(err)
		}
		diff(t, "parentRefs", wantParent(ns), e.httpRoute(t, ns, "web").Spec.ParentRefs)
	})

	t.Run("a route without a UID is refused", func(t *testing.T) {
		ns := e.namespace(t, "no-uid")
		r := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}}
		err := e.tr.Apply(t.Context(), r, splitPlan(ns, "web"))
		if err == nil || !strings.Contains(err.Error(), "UID") {
			t.Fatalf("Apply of a route without UID: err = %v, want one about the UID", err)
		}
		if names := e.names(t, ns); len(names) != 0 {
			t.Errorf("HTTPRoutes written: %v", names)
		}
	})
}
