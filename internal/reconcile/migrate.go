package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// migration is one configuration target's gradual move under way.
type migration struct {
	revision string
	// percent is the new revision's share so far, of share in all.
	percent, share int
	duration       time.Duration
	// next is how soon the split moves again.
	next time.Duration
}

func (m *migration) message() string {
	return fmt.Sprintf("Moving %d%% of the traffic to revision %q over %s: %d%% so far.", m.share, m.revision, m.duration, m.percent)
}

// minStep bounds how often a gradual move writes: a short duration moves
// by more than one percent at a time rather than rewriting status and
// traffic many times a second.
const minStep = time.Second

// migrate computes the split to serve now from the desired one. Without a
// rollout duration, or when a configuration target's share has nothing to
// move from (the first revision), the desired split is served at once.
// With one, the share of a configuration target whose revision changed
// moves onto the new revision in proportion to the time since the move
// began (recorded in status.rollouts), taking from the revisions that
// served it in proportion to what they serve; a newer ready revision
// restarts the move towards it.
func (r *Reconciler) migrate(ctx context.Context, route *v1alpha1.Route, targets []resolvedTarget,
	desired []v1alpha1.TrafficTarget, duration time.Duration) ([]v1alpha1.TrafficTarget, []v1alpha1.TargetRollout, *migration, error) {
	if duration <= 0 {
		return desired, nil, nil, nil
	}
	now := r.now()
	var out []v1alpha1.TrafficTarget
	var rollouts []v1alpha1.TargetRollout
	var first *migration
	for i, t := range targets {
		if t.RevisionName == "" {
			continue
		}
		spec := route.Spec.Rollout.Traffic[i]
		if spec.ConfigurationName == "" || !t.ready || t.Percent == 0 {
			out = append(out, t.TrafficTarget)
			continue
		}
		olds, cur, err := r.sharedWith(ctx, route, spec, t)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(olds) == 0 {
			out = append(out, t.TrafficTarget)
			continue
		}
		ro := findRollout(route.Status.Rollouts, spec.ConfigurationName, t.Name)
		if ro == nil || ro.RevisionName != t.RevisionName {
			ro = &v1alpha1.TargetRollout{ConfigurationName: spec.ConfigurationName, Name: t.Name, RevisionName: t.RevisionName, StartTime: now}
		}
		elapsed := now.Sub(ro.StartTime.Time)
		if elapsed >= duration {
			out = append(out, t.TrafficTarget)
			continue
		}
		p := max(int(int64(t.Percent)*int64(max(elapsed, 0))/int64(duration)), min(cur, t.Percent))
		for _, o := range scale(olds, t.Percent-p) {
			if o.Percent > 0 {
				out = append(out, o)
			}
		}
		if p > 0 {
			out = append(out, v1alpha1.TrafficTarget{RevisionName: t.RevisionName, Name: t.Name, Percent: p})
		}
		rollouts = append(rollouts, *ro)
		// The next whole percent, but not sooner than minStep.
		at := time.Duration((int64(p) + 1) * int64(duration) / int64(t.Percent))
		if (int64(p)+1)*int64(duration)%int64(t.Percent) != 0 {
			at++
		}
		m := &migration{revision: t.RevisionName, percent: p, share: t.Percent, duration: duration, next: max(at-elapsed, minStep)}
		if first == nil {
			first = m
		} else {
			first.next = min(first.next, m.next)
		}
	}
	return out, rollouts, first, nil
}

// sharedWith returns the revisions of the target's configuration that
// serve its share in the route's current split (other than its new
// revision, and Ready: traffic only moves back onto a Ready revision),
// and what the new revision already serves.
func (r *Reconciler) sharedWith(ctx context.Context, route *v1alpha1.Route, spec v1alpha1.TrafficTarget, t resolvedTarget) ([]v1alpha1.TrafficTarget, int, error) {
	var olds []v1alpha1.TrafficTarget
	cur := 0
	for _, p := range route.Status.Traffic {
		if p.Name != t.Name || p.Percent == 0 || p.RevisionName == v1alpha1.NotFoundRevisionName {
			continue
		}
		if p.RevisionName == t.RevisionName {
			cur += p.Percent
			continue
		}
		// A revision pinned under the same name is that target's, not
		// this one's.
		if slices.ContainsFunc(route.Spec.Rollout.Traffic, func(x v1alpha1.TrafficTarget) bool {
			return x.Name == p.Name && x.RevisionName == p.RevisionName
		}) {
			continue
		}
		rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, route.Namespace, p.RevisionName)
		if err != nil {
			return nil, 0, err
		}
		if rev == nil || rev.Labels[v1alpha1.ConfigurationLabelKey] != spec.ConfigurationName {
			continue
		}
		if ok, _ := rev.Readiness(); !ok {
			continue
		}
		olds = append(olds, p)
	}
	return olds, cur, nil
}

func findRollout(rs []v1alpha1.TargetRollout, cfg, name string) *v1alpha1.TargetRollout {
	for i := range rs {
		if rs[i].ConfigurationName == cfg && rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

// scale shares total among ts in proportion to their percents, by largest
// remainder (ties to the earlier entry), so that the result sums to total.
func scale(ts []v1alpha1.TrafficTarget, total int) []v1alpha1.TrafficTarget {
	out := slices.Clone(ts)
	sum := 0
	for _, t := range ts {
		sum += t.Percent
	}
	if sum == 0 || len(out) == 0 {
		return nil
	}
	rem := make([]int, len(out))
	given := 0
	for i, t := range ts {
		out[i].Percent = t.Percent * total / sum
		rem[i] = t.Percent * total % sum
		given += out[i].Percent
	}
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return rem[b] - rem[a] })
	for k := 0; given < total; k = (k + 1) % len(order) {
		out[order[k]].Percent++
		given++
	}
	return out
}

// revert gives the share of a revision that stopped being Ready in the
// middle of a gradual move back to the revisions it was moving from, and
// ends that move. It returns the split, the moves left, and the revisions
// the share returned to ("" when nothing was returned).
func revert(split []v1alpha1.TrafficTarget, rollouts []v1alpha1.TargetRollout, waiting []resolvedTarget) ([]v1alpha1.TrafficTarget, []v1alpha1.TargetRollout, string) {
	var returned []string
	for _, w := range waiting {
		i := slices.IndexFunc(rollouts, func(ro v1alpha1.TargetRollout) bool { return ro.Name == w.Name && ro.RevisionName == w.RevisionName })
		if i < 0 || w.RevisionName == "" {
			continue
		}
		var olds []v1alpha1.TrafficTarget
		share := 0
		for _, x := range split {
			if x.Name != w.Name {
				continue
			}
			if x.RevisionName == w.RevisionName {
				share += x.Percent
			} else if x.Percent > 0 {
				olds = append(olds, x)
			}
		}
		if len(olds) == 0 {
			continue // nothing to return to: it keeps its share
		}
		total := share
		for _, o := range olds {
			total += o.Percent
		}
		back := scale(olds, total)
		var next []v1alpha1.TrafficTarget
		k := 0
		for _, x := range split {
			switch {
			case x.Name == w.Name && x.RevisionName == w.RevisionName:
			case x.Name == w.Name && x.Percent > 0:
				next = append(next, back[k])
				returned = append(returned, fmt.Sprintf("%q", back[k].RevisionName))
				k++
			default:
				next = append(next, x)
			}
		}
		split = next
		rollouts = slices.Delete(slices.Clone(rollouts), i, i+1)
	}
	if len(rollouts) == 0 {
		rollouts = nil
	}
	return split, rollouts, strings.Join(returned, ", ")
}
