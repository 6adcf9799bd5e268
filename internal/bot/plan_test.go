package bot

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/command"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/testutil"
)

func tt(name, rev string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}
}

func TestPlan(t *testing.T) {
	ready := func(rev string) (bool, string) {
		if rev == "r-broken" {
			return false, "it is not Ready (ContainerMissing)"
		}
		return true, ""
	}
	base := rollout.Traffic{tt("current", "r1", 100), tt("next", "r1", 0), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}
	held := rollout.Traffic{tt("current", "r1", 70), tt("next", "r7", 30), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}
	tests := []struct {
		name    string
		cmd     command.Command
		pr      int
		rev     string
		in      rollout.Traffic
		want    rollout.Traffic
		refused string
	}{
		{"percent stages the PR's revision as next", command.Command{Verb: command.SetPercent, Percent: 50}, 7, "r7", base,
			rollout.Traffic{tt("current", "r1", 50), tt("next", "r7", 50), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"percent again moves the same canary", command.Command{Verb: command.SetPercent, Percent: 80}, 7, "r7", held,
			rollout.Traffic{tt("current", "r1", 20), tt("next", "r7", 80), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"percent 0 keeps the claim", command.Command{Verb: command.SetPercent, Percent: 0}, 7, "r7", held,
			rollout.Traffic{tt("current", "r1", 100), tt("next", "r7", 0), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"another PR holds the canary", command.Command{Verb: command.SetPercent, Percent: 10}, 8, "r8", held, nil, "pull request #7 holds the canary"},
		{"another PR's canary at 0% can be taken", command.Command{Verb: command.SetPercent, Percent: 10}, 8, "r8",
			rollout.Traffic{tt("current", "r1", 100), tt("next", "r7", 0), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)},
			rollout.Traffic{tt("current", "r1", 90), tt("next", "r8", 10), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"finish", command.Command{Verb: command.Finish}, 7, "r7", held,
			rollout.Traffic{tt("current", "r7", 100), tt("next", "r7", 0), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"finish without a split first", command.Command{Verb: command.Finish}, 8, "r8", base,
			rollout.Traffic{tt("current", "r8", 100), tt("next", "r8", 0), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"finish of another's canary", command.Command{Verb: command.Finish}, 8, "r8", held, nil, "pull request #7 holds the canary"},
		{"abort", command.Command{Verb: command.Abort}, 7, "r7", held,
			rollout.Traffic{tt("current", "r1", 100), tt("next", "r7", 0), tt("pr-7", "r7", 0), tt("pr-8", "r8", 0)}, ""},
		{"abort of another's canary", command.Command{Verb: command.Abort}, 8, "r8", held, nil, "not the canary"},
		{"not Ready", command.Command{Verb: command.SetPercent, Percent: 5}, 9, "r-broken", base, nil, "cannot take traffic: it is not Ready (ContainerMissing)"},
		{"already current", command.Command{Verb: command.SetPercent, Percent: 5}, 3, "r1",
			rollout.Traffic{tt("current", "r1", 100), tt("next", "r2", 0)}, nil, "already serves as current"},
		{"no revision", command.Command{Verb: command.SetPercent, Percent: 5}, 3, "", base, nil, "no revision"},
		{"no current to split with", command.Command{Verb: command.SetPercent, Percent: 5}, 7, "r7",
			rollout.Traffic{tt("", "r1", 100), tt("pr-7", "r7", 0)}, nil, "targets named"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op, err := Plan(tc.cmd, tc.pr, tc.rev)
			var got rollout.Traffic
			if err == nil {
				got, err = op(tc.in, ready)
			}
			if tc.refused != "" {
				if !rollout.IsRefused(err) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err %v, want a refusal containing %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Plan(command.Command{Verb: command.Status}, 1, "r"); err == nil {
		t.Error("status planned a move")
	}
}

func TestTableGolden(t *testing.T) {
	before := rollout.Traffic{tt("current", "hello-00001", 100), tt("next", "hello-00001", 0), tt("pr-7", "hello-pr-7-00001", 0)}
	after := rollout.Traffic{tt("current", "hello-00001", 50), tt("next", "hello-pr-7-00001", 50), tt("pr-7", "hello-pr-7-00001", 0)}
	got := Table(before, after)
	testutil.Golden(t, filepath.Join("testdata", "table.golden.md"), got)
}
