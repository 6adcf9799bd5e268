package router

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/internal/reconcile"
)

func pickN(t *table, n int) []string {
	seq := make([]string, n)
	for i := range seq {
		seq[i] = t.pick().revision
	}
	return seq
}

func TestPickSequence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		split []reconcile.Backend
		want  []string
	}{
		// Smooth: the minority is spread out, not sent in a burst.
		{"75/25", split("a", 75, "b", 25), []string{"a", "a", "b", "a", "a", "a", "b", "a"}},
		{"50/50", split("a", 50, "b", 50), []string{"a", "b", "a", "b"}},
		{"5/95", split("a", 95, "b", 5), append(slices.Repeat([]string{"a"}, 10), "b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tb := newTable(routeKey{ns, svc}, reconcile.TrafficPlan{Split: tc.split})
			if diff := cmp.Diff(tc.want, pickN(tb, len(tc.want))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestPickProperty: for random integer weights totalling 100, any 100
// consecutive picks hold each revision exactly its weight, so k*100 picks
// hold it exactly k*weight times.
func TestPickProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		n := 1 + rng.IntN(8)
		cuts := map[int]bool{}
		for len(cuts) < n-1 {
			cuts[1+rng.IntN(99)] = true
		}
		points := append(slices.Sorted(func(yield func(int) bool) {
			for c := range cuts {
				if !yield(c) {
					return
				}
			}
		}), 100)
		var sp []reconcile.Backend
		weight := map[string]int{}
		prev := 0
		for i, p := range points {
			rev := string(rune('a' + i))
			sp = append(sp, reconcile.Backend{Revision: rev, Percent: p - prev, Ready: true})
			weight[rev] = p - prev
			prev = p
		}
		k := 1 + rng.IntN(5)
		seq := pickN(newTable(routeKey{ns, svc}, reconcile.TrafficPlan{Split: sp}), 100*k)

		total := map[string]int{}
		for _, r := range seq {
			total[r]++
		}
		want := map[string]int{}
		for r, w := range weight {
			want[r] = w * k
		}
		if diff := cmp.Diff(want, total); diff != "" {
			t.Fatalf("split %v over %d picks (-want +got):\n%s", sp, 100*k, diff)
		}

		// Slide a window of 100 picks over the whole sequence.
		window := map[string]int{}
		for i, r := range seq {
			window[r]++
			if i >= 100 {
				window[seq[i-100]]--
			}
			if i < 99 {
				continue
			}
			for rev, w := range weight {
				if window[rev] != w {
					t.Fatalf("split %v: picks %d..%d hold %s %d times, want %d", sp, i-99, i, rev, window[rev], w)
				}
			}
		}
	}
}

func TestCanonicalHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"svc.default.localhost":      "svc.default.localhost",
		"SVC.Default.localhost:8080": "svc.default.localhost",
		"svc.default.localhost.":     "svc.default.localhost",
		"svc.default.localhost.:80":  "svc.default.localhost",
		"[::1]:8080":                 "::1",
		"[::1]":                      "::1",
		"127.0.0.1:80":               "127.0.0.1",
		"":                           "",
	} {
		if got := canonicalHost(in); got != want {
			t.Errorf("canonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
}
