package reconcile

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

func (r *Reconciler) reconcileService(ctx context.Context, ns, name string) (Result, error) {
	svc, err := getOrNil[*v1alpha1.Service](ctx, r.store, store.KindService, ns, name)
	if err != nil || svc == nil {
		return Result{}, err
	}
	st := svc.Status.DeepCopy()
	st.ObservedGeneration = svc.Generation
	now := r.now()
	notReady := func(reason, msg string) {
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionReady, Status: corev1.ConditionFalse, Reason: reason, Message: msg}, now)
	}

	cfg, err := r.ensureConfiguration(ctx, svc)
	if err != nil {
		return Result{}, err
	}
	var route *v1alpha1.Route
	if cfg != nil {
		if route, err = r.ensureRoute(ctx, svc, cfg); err != nil {
			if !rollout.IsRefused(err) {
				return Result{}, err
			}
			notReady("RolloutRefused", err.Error())
		}
	}
	switch {
	case cfg == nil:
		notReady("NotOwned", fmt.Sprintf("Configuration %q exists and is not owned by this Service; delete it or rename the Service.", name))
	case route == nil:
		if st.Conditions.Get(v1alpha1.ConditionReady) == nil || !st.Conditions.IsFalse(v1alpha1.ConditionReady) {
			notReady("NotOwned", fmt.Sprintf("Route %q exists and is not owned by this Service; delete it or rename the Service.", name))
		}
	default:
		st.LatestCreatedRevisionName = cfg.Status.LatestCreatedRevisionName
		st.LatestReadyRevisionName = cfg.Status.LatestReadyRevisionName
		st.Domain = route.Status.Domain
		st.Traffic = route.Status.Traffic
		cc := cfg.Status.Conditions.Get(v1alpha1.ConditionLatestRevisionReady)
		rc := route.Status.Conditions.Get(v1alpha1.ConditionRolloutComplete)
		switch {
		case cc != nil && cc.Status == corev1.ConditionFalse:
			notReady(cc.Reason, cc.Message)
		case rc != nil && rc.Status == corev1.ConditionFalse:
			notReady(rc.Reason, rc.Message)
		case cc != nil && rc != nil && cc.Status == corev1.ConditionTrue && rc.Status == corev1.ConditionTrue:
			st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionReady, Status: corev1.ConditionTrue}, now)
		default:
			st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionReady, Status: corev1.ConditionUnknown,
				Reason: v1alpha1.ReasonDeploying, Message: "Waiting for the configuration and route to converge."}, now)
		}
	}
	if !equality.Semantic.DeepEqual(*st, svc.Status) {
		c := svc.DeepCopy()
		c.Status = *st
		if _, err := r.store.UpdateStatus(ctx, c); err != nil {
			return Result{}, err
		}
	}
	return Result{}, nil
}

// ensureConfiguration makes the Service's Configuration match its spec.
// It returns nil when a Configuration of that name belongs to someone else.
func (r *Reconciler) ensureConfiguration(ctx context.Context, svc *v1alpha1.Service) (*v1alpha1.Configuration, error) {
	cfg, err := getOrNil[*v1alpha1.Configuration](ctx, r.store, store.KindConfiguration, svc.Namespace, svc.Name)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		o, err := r.store.Create(ctx, &v1alpha1.Configuration{
			ObjectMeta: childMeta(svc),
			Spec:       *svc.Spec.ConfigurationSpec.DeepCopy(),
		})
		if err != nil {
			return nil, fmt.Errorf("creating configuration %s: %w", svc.Name, err)
		}
		return o.(*v1alpha1.Configuration), nil
	}
	if !ownedBy(cfg, svc) {
		return nil, nil
	}
	if equality.Semantic.DeepEqual(cfg.Spec, svc.Spec.ConfigurationSpec) {
		return cfg, nil
	}
	c := cfg.DeepCopy()
	c.Spec = *svc.Spec.ConfigurationSpec.DeepCopy()
	o, err := r.store.Update(ctx, c)
	if err != nil {
		return nil, err
	}
	return o.(*v1alpha1.Configuration), nil
}

// StrategyActor is who the audit history says moved traffic when the
// Service's strategy did.
const StrategyActor = "elafros (strategy)"

// ensureRoute creates the Service's Route, and moves it when a new
// revision becomes ready, as the strategy says.
func (r *Reconciler) ensureRoute(ctx context.Context, svc *v1alpha1.Service, cfg *v1alpha1.Configuration) (*v1alpha1.Route, error) {
	route, err := getOrNil[*v1alpha1.Route](ctx, r.store, store.KindRoute, svc.Namespace, svc.Name)
	if err != nil {
		return nil, err
	}
	if route != nil && !ownedBy(route, svc) {
		return nil, nil
	}
	var current []v1alpha1.TrafficTarget
	staged := ""
	if route != nil {
		current = route.Spec.Rollout.Traffic
		staged = route.Annotations[v1alpha1.StagedRevisionAnnotationKey]
	}
	desired, err := r.desiredTraffic(ctx, svc, cfg, current, staged)
	if err != nil {
		return route, err
	}
	// spec.rollout.duration becomes the Route's rollout-duration, the one
	// place the reconciler reads it from.
	duration := ""
	if d := svc.Spec.Rollout.Duration; d != nil && d.Duration > 0 {
		duration = d.Duration.String()
	}
	// What the strategy has placed is recorded, so that it places each
	// revision once: a command that later gives next to another revision
	// (a pull request's preview) is not undone by staging the latest again.
	// The automatic strategy follows the configuration and records nothing.
	want := map[string]string{v1alpha1.RolloutDurationAnnotationKey: duration}
	if policy := svc.Spec.Rollout.Strategy; policy != "" && policy != v1alpha1.StrategyAutomatic && cfg.Status.LatestReadyRevisionName != "" {
		want[v1alpha1.StagedRevisionAnnotationKey] = cfg.Status.LatestReadyRevisionName
	} else {
		want[v1alpha1.StagedRevisionAnnotationKey] = staged
	}
	annotate := func(a map[string]string) map[string]string {
		for k, v := range want {
			if v == "" {
				delete(a, k)
				continue
			}
			if a == nil {
				a = map[string]string{}
			}
			a[k] = v
		}
		return a
	}
	if route == nil {
		meta := childMeta(svc)
		meta.Annotations = annotate(meta.Annotations)
		o, err := r.store.Create(ctx, &v1alpha1.Route{
			ObjectMeta: meta,
			Spec:       v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: desired}},
		})
		if err != nil {
			return nil, fmt.Errorf("creating route %s: %w", svc.Name, err)
		}
		return o.(*v1alpha1.Route), nil
	}
	c := route.DeepCopy()
	c.Annotations = annotate(c.Annotations)
	if equality.Semantic.DeepEqual(current, desired) && equality.Semantic.DeepEqual(route.Annotations, c.Annotations) {
		return route, nil
	}
	var move *v1alpha1.RolloutMove
	if !equality.Semantic.DeepEqual(current, desired) {
		// The strategy's own moves go into the audit history beside the
		// people's, in the same write.
		strategy := svc.Spec.Rollout.Strategy
		if strategy == "" {
			strategy = v1alpha1.StrategyAutomatic
		}
		move = &v1alpha1.RolloutMove{Time: r.now().Time, Actor: StrategyActor,
			Reason: fmt.Sprintf("strategy %s: revision %s is ready", strategy, cfg.Status.LatestReadyRevisionName),
			From:   current, To: desired}
		if err := c.RecordMove(*move); err != nil {
			return nil, err
		}
	}
	c.Spec.Rollout.Traffic = desired
	o, err := r.store.Update(ctx, c)
	if err != nil {
		return nil, err
	}
	written := o.(*v1alpha1.Route)
	if move != nil && r.opts.Moved != nil {
		r.opts.Moved(ctx, written, *move)
	}
	return written, nil
}

// desiredTraffic applies the Service's strategy to the Route's traffic:
// automatic follows the configuration at 100%; manual stages a new ready
// revision as next at 0%; canary stages it as next at the first step.
// Named targets other than current and next (previews such as pr-42) are
// kept. Nothing moves when no new revision is ready.
func (r *Reconciler) desiredTraffic(ctx context.Context, svc *v1alpha1.Service, cfg *v1alpha1.Configuration, current []v1alpha1.TrafficTarget, staged string) ([]v1alpha1.TrafficTarget, error) {
	policy := svc.Spec.Rollout
	policy.SetDefaults()
	latest := cfg.Status.LatestReadyRevisionName
	follow := v1alpha1.TrafficTarget{ConfigurationName: cfg.Name, Percent: 100}
	if policy.Strategy == v1alpha1.StrategyAutomatic {
		out := []v1alpha1.TrafficTarget{follow}
		for _, t := range current {
			if t.Name != "" && t.Name != rollout.Current && t.Name != rollout.Next && t.RevisionName != "" {
				t.Percent = 0
				out = append(out, t)
			}
		}
		return out, nil
	}
	if len(current) == 0 && latest == "" {
		return []v1alpha1.TrafficTarget{follow}, nil // nothing to pin yet
	}
	if latest == "" {
		return current, nil
	}
	ready := r.readyFunc(ctx, svc.Namespace)
	ci, ni := rollout.Find(current, rollout.Current), rollout.Find(current, rollout.Next)
	if ci < 0 {
		return rollout.Pin(current, latest, ready) // the first revision: nothing to compare it against
	}
	if current[ci].RevisionName == latest || (ni >= 0 && current[ni].RevisionName == latest) || latest == staged {
		return current, nil // not new: an aborted, finished or displaced revision is not staged again
	}
	if policy.Strategy == v1alpha1.StrategyManual {
		return rollout.Stage(current, rollout.Next, latest, ready)
	}
	return rollout.StartCanary(current, latest, policy.Steps, ready)
}

// readyFunc reports revision readiness from the store, for rollout checks.
func (r *Reconciler) readyFunc(ctx context.Context, ns string) rollout.ReadyFunc {
	return func(name string) (bool, string) {
		rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, name)
		if err != nil {
			return false, err.Error()
		}
		if rev == nil {
			return false, fmt.Sprintf("revision %q does not exist", name)
		}
		return rev.Readiness()
	}
}

func childMeta(svc *v1alpha1.Service) metav1.ObjectMeta {
	lbl := maps.Clone(svc.Labels)
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[v1alpha1.ServiceLabelKey] = svc.Name
	return metav1.ObjectMeta{
		Name:            svc.Name,
		Namespace:       svc.Namespace,
		Labels:          lbl,
		OwnerReferences: []metav1.OwnerReference{ownerRef(svc, store.KindService)},
	}
}
