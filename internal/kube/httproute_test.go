package kube

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// TestCheckTrafficPlan covers the plan checks that need no cluster: every
// host carries its tag, so a host whose tag the plan does not name, or
// names with another revision, or shares with another host, is refused
// before anything is written.
func TestCheckTrafficPlan(t *testing.T) {
	const domain = "web.ns.example.com"
	plan := func(hosts map[string]reconcile.NamedTarget, tags map[string]string) reconcile.TrafficPlan {
		return reconcile.TrafficPlan{Domain: domain, Split: []reconcile.Backend{{Revision: "a", Percent: 100}}, Hosts: hosts, Tags: tags}
	}
	for _, tc := range []struct {
		name    string
		plan    reconcile.TrafficPlan
		wantErr string // "" for a valid plan
	}{{
		name: "two tags on one revision, Knative's host template",
		plan: plan(map[string]reconcile.NamedTarget{
			"current-web.ns.example.com": {Tag: "current", Revision: "a"},
			"latest-web.ns.example.com":  {Tag: "latest", Revision: "a"},
		}, map[string]string{"current": "a", "latest": "a"}),
	}, {
		// The guessing this replaced refused hosts that do not contain
		// their tag; the tag is now carried, so any host template works.
		name: "a host that does not contain its tag",
		plan: plan(map[string]reconcile.NamedTarget{"canary.example.org": {Tag: "next", Revision: "a"}},
			map[string]string{"next": "a"}),
	}, {
		name:    "a host whose tag is not a named target",
		plan:    plan(map[string]reconcile.NamedTarget{"next." + domain: {Tag: "next", Revision: "a"}}, map[string]string{"current": "a"}),
		wantErr: `named target host "next.web.ns.example.com" serves tag "next", which is not one of the plan's named targets [current]`,
	}, {
		name:    "a host whose revision differs from its tag's",
		plan:    plan(map[string]reconcile.NamedTarget{"next." + domain: {Tag: "next", Revision: "b"}}, map[string]string{"next": "a"}),
		wantErr: `named target host "next.web.ns.example.com" serves revision b as tag "next", but the tag names revision a`,
	}, {
		name: "two hosts with one tag",
		plan: plan(map[string]reconcile.NamedTarget{
			"next." + domain:  {Tag: "next", Revision: "a"},
			"other." + domain: {Tag: "next", Revision: "a"},
		}, map[string]string{"next": "a"}),
		wantErr: `named target hosts "next.web.ns.example.com" and "other.web.ns.example.com" both serve tag "next"; each tag has one host`,
	}, {
		name:    "a host without a revision",
		plan:    plan(map[string]reconcile.NamedTarget{"next." + domain: {Tag: "next"}}, map[string]string{"next": "a"}),
		wantErr: `named target host "next.web.ns.example.com" has no revision`,
	}, {
		name:    "a host that is not a hostname",
		plan:    plan(map[string]reconcile.NamedTarget{"Next_" + domain: {Tag: "next", Revision: "a"}}, map[string]string{"next": "a"}),
		wantErr: `named target host: host "Next_web.ns.example.com"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTrafficPlan(tc.plan)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("checkTrafficPlan: %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("checkTrafficPlan error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestHTTPRoutesRoundTrip builds a plan's HTTPRoutes and reads them back
// as the API server would store them (the desired spec is the stored
// form): the plan comes back whole, tags included (ReadPlan leaves Ready
// for its caller).
func TestHTTPRoutesRoundTrip(t *testing.T) {
	gw := gatewayv1.ParentReference{Name: "elafros", Namespace: ptr(gatewayv1.Namespace("gateways"))}
	route := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-1"}}
	for _, tc := range []struct {
		name      string
		plan      reconcile.TrafficPlan
		wantNames []string
	}{{
		name:      "a split without named targets",
		plan:      reconcile.TrafficPlan{Domain: "web.ns.example.com", Split: []reconcile.Backend{{Revision: "a", Percent: 75}, {Revision: "b", Percent: 25}}},
		wantNames: []string{"web"},
	}, {
		name:      "an empty split still gets its HTTPRoute",
		plan:      reconcile.TrafficPlan{Domain: "web.ns.example.com"},
		wantNames: []string{"web"},
	}, {
		name: "two tags on one revision, Knative's host template",
		plan: reconcile.TrafficPlan{
			Domain: "web.ns.example.com",
			Split:  []reconcile.Backend{{Revision: "a", Percent: 100}},
			Hosts: map[string]reconcile.NamedTarget{
				"current-web.ns.example.com": {Tag: "current", Revision: "a"},
				"latest-web.ns.example.com":  {Tag: "latest", Revision: "a"},
				"next-web.ns.example.com":    {Tag: "next", Revision: "b"},
			},
			Tags: map[string]string{"current": "a", "latest": "a", "next": "b"},
		},
		wantNames: []string{"web", "web--current", "web--latest", "web--next"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := desiredHTTPRoutes(gw, route, tc.plan)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			var items []gatewayv1.HTTPRoute
			for _, d := range ds {
				names = append(names, d.name)
				if got := *d.ac.Spec.ParentRefs[0].Namespace; got != "gateways" {
					t.Errorf("HTTPRoute %s attaches to a Gateway in %s, want gateways", d.name, got)
				}
				items = append(items, gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: d.name, Labels: d.labels}, Spec: d.spec})
			}
			if diff := cmp.Diff(tc.wantNames, names); diff != "" {
				t.Errorf("HTTPRoute names (-want +got):\n%s", diff)
			}
			got, err := planOfHTTPRoutes(route.Name, items)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.plan
			if want.Hosts == nil {
				want.Hosts = map[string]reconcile.NamedTarget{}
			}
			if want.Tags == nil {
				want.Tags = map[string]string{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("plan read back (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDesiredHTTPRoutesRefused: plans and routes an HTTPRoute cannot
// carry are refused with what is wrong, before any write.
func TestDesiredHTTPRoutesRefused(t *testing.T) {
	gw := gatewayv1.ParentReference{Name: "elafros"}
	route := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-1"}}
	var wide []reconcile.Backend
	for i := range MaxBackendRefs + 1 {
		wide = append(wide, reconcile.Backend{Revision: fmt.Sprintf("r%02d", i), Percent: 1})
	}
	for _, tc := range []struct {
		name    string
		route   *v1alpha1.Route
		plan    reconcile.TrafficPlan
		wantErr string
		wantIs  error
	}{
		{"no UID", &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}}, reconcile.TrafficPlan{Domain: "web.ns.example.com"}, "has no UID", nil},
		{"no domain", route, reconcile.TrafficPlan{}, "domain: empty host", nil},
		{"a percent over 100", route, reconcile.TrafficPlan{Domain: "web.ns.example.com", Split: []reconcile.Backend{{Revision: "a", Percent: 101}}}, "split[0] (revision a) has percent 101", nil},
		{"a tag that is not a DNS label", route, reconcile.TrafficPlan{Domain: "web.ns.example.com", Tags: map[string]string{"Next_1": "a"}}, `named target "Next_1"`, nil},
		{"more revisions than backendRefs", route, reconcile.TrafficPlan{Domain: "web.ns.example.com", Split: wide}, fmt.Sprintf("%d backendRefs", MaxBackendRefs+1), ErrGatewayLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := desiredHTTPRoutes(gw, tc.route, tc.plan)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("desiredHTTPRoutes error = %v, want one containing %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("desiredHTTPRoutes error = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
