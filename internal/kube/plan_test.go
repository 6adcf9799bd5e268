package kube

import (
	"strings"
	"testing"

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
