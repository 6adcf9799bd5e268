package conformance

import (
	"sync/atomic"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/rollout"
)

// StepMigrator moves at most step percent per reconcile from the current
// status split towards the desired one; it shows the seed's intermediate
// 75/25 state through the reconciler's migration hook.
func StepMigrator(step int) func(*v1alpha1.Route, []v1alpha1.TrafficTarget, []v1alpha1.TrafficTarget) []v1alpha1.TrafficTarget {
	return func(_ *v1alpha1.Route, current, desired []v1alpha1.TrafficTarget) []v1alpha1.TrafficTarget {
		cur, want := rollout.ByRevision(current), rollout.ByRevision(desired)
		if len(current) == 0 || len(desired) != 1 || desired[0].Name != "" {
			return desired
		}
		newRev := desired[0].RevisionName
		if cur[newRev]+step >= 100 || want[newRev] != 100 {
			return desired
		}
		var out []v1alpha1.TrafficTarget
		moved := 0
		for _, t := range current {
			if t.RevisionName == newRev || moved == step {
				if t.RevisionName != newRev {
					out = append(out, t)
				}
				continue
			}
			take := min(step-moved, t.Percent)
			moved += take
			t.Percent -= take
			if t.Percent > 0 {
				out = append(out, t)
			}
		}
		return append(out, v1alpha1.TrafficTarget{RevisionName: newRev, Percent: cur[newRev] + moved})
	}
}

// clock is the real time moved forward by Advance, for deadline scenarios:
// real, so that a server's own timestamps (creationTimestamp) compare with
// it however long the backend took to start.
type clock struct{ offset atomic.Int64 }

func timeNow() *clock { return &clock{} }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by secs seconds.
func (c *clock) Advance(secs int) { c.offset.Add(int64(time.Duration(secs) * time.Second)) }
