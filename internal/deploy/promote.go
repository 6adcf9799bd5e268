package deploy

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

// Promotion is what scheduled promotion did (or did not do) to one
// service's canary.
type Promotion struct {
	Service string
	// Revision is the canary (next) revision.
	Revision string
	// Outcome says what happened.
	Outcome PromotionOutcome
	// Why explains a wait, a rollback or a refusal, for people.
	Why string
	// Before and After are the route's spec traffic (After is nil when
	// nothing moved).
	Before, After []v1alpha1.TrafficTarget
}

// PromotionOutcome is what promotion did to a canary.
type PromotionOutcome string

// The outcomes.
const (
	Promoted   PromotionOutcome = "promoted"    // moved one step
	Finished   PromotionOutcome = "finished"    // the last step: next is current at 100%
	RolledBack PromotionOutcome = "rolled-back" // its health gate failed: back to current
	Waiting    PromotionOutcome = "waiting"     // its interval has not passed
	Paused     PromotionOutcome = "paused"      // "/rollout pause"
	Refused    PromotionOutcome = "refused"     // the rollout rules refused the step
)

// PromoteDue moves every canary in the namespace (of the services that sel
// selects) one step along its policy's steps when its time at the current
// step has reached the policy's interval, and rolls back one whose next
// revision is no longer Ready (its health gate). The interval counts from
// the last move in the route's audit history; a route whose traffic was
// changed outside this history (by hand, or a canary the reconciler just
// started) is recorded as moved now, so nothing moves until a whole
// interval has passed since.
func (c *Client) PromoteDue(ctx context.Context, sel labels.Selector) ([]Promotion, error) {
	if sel == nil {
		sel = labels.Everything()
	}
	svcs, err := c.store.List(ctx, store.KindService, c.ns(), sel)
	if err != nil {
		return nil, err
	}
	var out []Promotion
	for _, o := range svcs {
		svc := o.(*v1alpha1.Service)
		policy := svc.Spec.Rollout
		policy.SetDefaults()
		if policy.Strategy != v1alpha1.StrategyCanary {
			continue
		}
		rt, err := c.route(ctx, svc.Name)
		if err != nil {
			return out, err
		}
		if rt == nil {
			continue
		}
		t := rt.Spec.Rollout.Traffic
		ni := rollout.Find(t, rollout.Next)
		if ni < 0 || t[ni].Percent == 0 || t[ni].Percent == 100 {
			continue // no canary under way
		}
		p := Promotion{Service: svc.Name, Revision: t[ni].RevisionName, Before: t}
		moved, err := c.promoteOne(ctx, svc, rt, policy, &p)
		if err != nil {
			return out, fmt.Errorf("service %s: %w", svc.Name, err)
		}
		if moved != nil {
			p.After = moved.Spec.Rollout.Traffic
		}
		out = append(out, p)
	}
	return out, nil
}

func (c *Client) promoteOne(ctx context.Context, svc *v1alpha1.Service, rt *v1alpha1.Route, policy v1alpha1.ServiceRollout, p *Promotion) (*v1alpha1.Route, error) {
	if svc.Annotations[v1alpha1.RolloutPausedAnnotationKey] != "" {
		p.Outcome, p.Why = Paused, "promotion is paused (/rollout resume restarts it)"
		return nil, nil
	}
	if ok, why := c.Ready(ctx)(p.Revision); !ok {
		moved, err := c.Rollout(ctx, svc.Name, Abort)
		if rollout.IsRefused(err) {
			p.Outcome, p.Why = Refused, err.Error()
			return nil, nil
		}
		p.Outcome, p.Why = RolledBack, fmt.Sprintf("revision %s failed its health gate: %s; traffic went back to current", p.Revision, why)
		return moved, err
	}
	h, _ := History(rt)
	now := c.now()
	if len(h) == 0 || !equality.Semantic.DeepEqual(h[len(h)-1].To, rt.Spec.Rollout.Traffic) {
		// A move this history did not see: its interval starts now.
		err := onConflict(func() error {
			o, err := c.store.Get(ctx, store.KindRoute, c.ns(), rt.Name)
			if err != nil {
				return err
			}
			cur := o.(*v1alpha1.Route).DeepCopy()
			if err := c.withActor("elafros", "observed a traffic change made outside elafros; the interval starts now").record(cur, cur.Spec.Rollout.Traffic, cur.Spec.Rollout.Traffic); err != nil {
				return err
			}
			_, err = c.store.Update(ctx, cur)
			return err
		})
		p.Outcome, p.Why = Waiting, fmt.Sprintf("its traffic changed outside elafros; the next step comes %s after now", policy.Interval.Duration)
		return nil, err
	}
	last := h[len(h)-1].Time
	if due := last.Add(policy.Interval.Duration); now.Before(due) {
		p.Outcome, p.Why = Waiting, fmt.Sprintf("at this step since %s; the next step is due at %s", last.Format(time.RFC3339), due.Format(time.RFC3339))
		return nil, nil
	}
	var done bool
	moved, err := c.Rollout(ctx, svc.Name, func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		out, fin, err := rollout.Promote(t, policy.Steps, ready)
		done = fin
		return out, err
	})
	if rollout.IsRefused(err) {
		p.Outcome, p.Why = Refused, err.Error()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.Outcome = Promoted
	if done {
		p.Outcome = Finished
	}
	return moved, nil
}

// withActor is a copy of c that records moves as actor, for reason.
func (c *Client) withActor(actor, reason string) *Client {
	cc := *c
	cc.actor, cc.reason = actor, reason
	return &cc
}

// SetPaused stops (or restarts) scheduled promotion of a service's canary:
// the annotation elafros.dev/rolloutPaused names who paused it. It changes
// only metadata, so no revision is made and no traffic moves.
func (c *Client) SetPaused(ctx context.Context, service string, paused bool) error {
	return onConflict(func() error {
		svc, err := c.service(ctx, service)
		if err != nil {
			return err
		}
		if svc == nil {
			return fmt.Errorf("service %s does not exist in namespace %s", service, c.ns())
		}
		_, has := svc.Annotations[v1alpha1.RolloutPausedAnnotationKey]
		if has == paused {
			return nil
		}
		s := svc.DeepCopy()
		if paused {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[v1alpha1.RolloutPausedAnnotationKey] = or(c.actor, "unknown")
		} else {
			delete(s.Annotations, v1alpha1.RolloutPausedAnnotationKey)
		}
		_, err = c.store.Update(ctx, s)
		return err
	})
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
