package rollout

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/api/v1alpha1"
)

func tt(name, rev string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}
}

func readySet(revs ...string) ReadyFunc {
	return func(r string) (bool, string) {
		for _, x := range revs {
			if x == r {
				return true, ""
			}
		}
		return false, "revision " + r + " is not Ready (Starting Instances)"
	}
}

// The seed's scenario 3, step by step.
func TestSeedScenario3(t *testing.T) {
	ready := readySet("def", "ghi")
	pinned, err := Pin(Traffic{{ConfigurationName: "my-service", Percent: 100}}, "def", ready)
	if err != nil {
		t.Fatal(err)
	}
	staged, err := Stage(pinned, Next, "ghi", ready)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Traffic{tt("current", "def", 100), tt("next", "ghi", 0)}, staged); d != "" {
		t.Errorf("staged (-want +got):\n%s", d)
	}
	five, err := SetNext(staged, 5, ready)
	if err != nil {
		t.Fatal(err)
	}
	fifty, err := SetNext(five, 50, ready)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Traffic{tt("current", "def", 50), tt("next", "ghi", 50)}, fifty); d != "" {
		t.Errorf("50%% (-want +got):\n%s", d)
	}
	done, err := Finish(fifty, ready)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Traffic{tt("current", "ghi", 100), tt("next", "ghi", 0)}, done); d != "" {
		t.Errorf("finish (-want +got):\n%s", d)
	}
}

func TestRefusals(t *testing.T) {
	split := Traffic{tt("current", "a", 95), tt("next", "b", 5), tt("pr-42", "c", 0)}
	tests := []struct {
		name string
		op   func() (Traffic, error)
		want string
	}{
		{"percent over 100", func() (Traffic, error) { return SetNext(split, 101, nil) }, "between 0 and 100"},
		{"negative", func() (Traffic, error) { return SetNext(split, -5, nil) }, "between 0 and 100"},
		{"no next", func() (Traffic, error) { return SetNext(Traffic{tt("current", "a", 100)}, 5, nil) }, `targets named "current" and "next"`},
		{"next not ready", func() (Traffic, error) { return SetNext(split, 50, readySet("a")) }, "revision b cannot take traffic"},
		{"finish onto unready", func() (Traffic, error) { return Finish(split, readySet("a")) }, "revision b cannot take traffic"},
		{"abort onto unready current", func() (Traffic, error) { return Abort(split, readySet("b")) }, "revision a cannot take traffic"},
		{"abort without current", func() (Traffic, error) { return Abort(Traffic{tt("next", "b", 100)}, nil) }, `no "current"`},
		{"split identical", func() (Traffic, error) {
			return SetNext(Traffic{tt("current", "a", 100), tt("next", "a", 0)}, 50, nil)
		}, "same revision a"},
		{"others hold too much", func() (Traffic, error) {
			return SetNext(Traffic{tt("current", "a", 40), tt("next", "b", 0), tt("exp", "c", 60)}, 50, nil)
		}, "other targets hold 60%"},
		{"stage current", func() (Traffic, error) { return Stage(split, Current, "z", nil) }, "carries the traffic"},
		{"unstage current", func() (Traffic, error) { return Unstage(split, Current, nil) }, "cannot be removed"},
		{"pin nothing", func() (Traffic, error) { return Pin(split, "", nil) }, "name the revision"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.op()
			if err == nil || !IsRefused(err) {
				t.Fatalf("got %v, %v; want a refusal", out, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("reason %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPromoteWalksSteps(t *testing.T) {
	steps := []int{5, 25, 50, 100}
	cur, err := StartCanary(Traffic{tt("current", "a", 100)}, "b", steps, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	for i := 0; i < 10; i++ {
		seen = append(seen, cur[Find(cur, Next)].Percent)
		var done bool
		cur, done, err = Promote(cur, steps, nil)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if d := cmp.Diff([]int{5, 25, 50}, seen); d != "" {
		t.Errorf("steps walked (-want +got):\n%s", d)
	}
	if d := cmp.Diff(Traffic{tt("current", "b", 100), tt("next", "b", 0)}, cur); d != "" {
		t.Errorf("after the last step (-want +got):\n%s", d)
	}
	first, err := StartCanary(nil, "a", steps, nil)
	if err != nil || len(first) != 1 || first[0].RevisionName != "a" || first[0].Percent != 100 {
		t.Errorf("first deploy canary = %v, %v; want a at 100%%", first, err)
	}
}

// TestInvariantsProperty applies random operations with random readiness
// and checks every result the package accepts: it validates, percents
// total 100 and none is negative, and no revision's share grew unless it
// is Ready. Refusals must leave the input untouched.
func TestInvariantsProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	revs := []string{"r1", "r2", "r3", "r4"}
	accepted, refused := 0, 0
	for seq := 0; seq < 2000; seq++ {
		readyNow := map[string]bool{"r1": true}
		ready := func(name string) (bool, string) { return readyNow[name], "not Ready" }
		cur := Traffic{tt("current", "r1", 100)}
		for step := 0; step < 30; step++ {
			for _, rv := range revs {
				if r.IntN(4) == 0 {
					readyNow[rv] = !readyNow[rv]
				}
			}
			before := cur
			snapshot := fmt.Sprint(before)
			var out Traffic
			var err error
			rev := revs[r.IntN(len(revs))]
			switch r.IntN(8) {
			case 0:
				out, err = SetNext(cur, r.IntN(120)-10, ready)
			case 1:
				out, err = Finish(cur, ready)
			case 2:
				out, err = Abort(cur, ready)
			case 3:
				out, err = Pin(cur, rev, ready)
			case 4:
				out, err = Stage(cur, []string{"next", "pr-1", "pr-2"}[r.IntN(3)], rev, ready)
			case 5:
				out, err = Unstage(cur, []string{"next", "pr-1", "current"}[r.IntN(3)], ready)
			case 6:
				out, _, err = Promote(cur, []int{5, 25, 50, 100}, ready)
			case 7:
				out, err = StartCanary(cur, rev, []int{10, 100}, ready)
			}
			if fmt.Sprint(before) != snapshot {
				t.Fatalf("an operation modified its input: %s -> %v", snapshot, before)
			}
			if err != nil {
				if !IsRefused(err) {
					t.Fatalf("non-refusal error: %v", err)
				}
				refused++
				continue
			}
			accepted++
			total := 0
			for _, x := range out {
				if x.Percent < 0 {
					t.Fatalf("negative percent in %v", out)
				}
				total += x.Percent
			}
			if total != 100 {
				t.Fatalf("total %d in %v (from %v)", total, out, before)
			}
			was := ByRevision(before)
			for rv, p := range ByRevision(out) {
				if p > was[rv] && !readyNow[rv] {
					t.Fatalf("traffic moved onto unready %s: %v -> %v", rv, before, out)
				}
			}
			cur = out
		}
	}
	if accepted < 5000 || refused < 1000 {
		t.Fatalf("accepted %d, refused %d: the generator does not exercise both paths", accepted, refused)
	}
}
