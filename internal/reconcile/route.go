package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// resolvedTarget is a spec target dereferenced to a revision.
type resolvedTarget struct {
	v1alpha1.TrafficTarget      // status form: revisionName, name, percent
	ready                  bool // the revision is Ready
	failed                 bool // not Ready, and waiting will not fix it
	why                    string
	missingReason          string // RevisionMissing or ConfigurationMissing
}

func (r *Reconciler) reconcileRoute(ctx context.Context, ns, name string) (Result, error) {
	route, err := getOrNil[*v1alpha1.Route](ctx, r.store, store.KindRoute, ns, name)
	if err != nil {
		return Result{}, err
	}
	if route == nil {
		return Result{}, r.traffic.Forget(ctx, ns, name)
	}
	errs := v1alpha1.ValidateRolloutDuration(route.Annotations, field.NewPath("metadata", "annotations"))
	if errs = append(errs, route.Spec.Validate(field.NewPath("spec"))...); len(errs) > 0 {
		return r.rejectRoute(ctx, route, errs)
	}
	duration, _ := v1alpha1.RolloutDuration(route.Annotations) // validated above
	targets, revs, err := r.resolve(ctx, route)
	if err != nil {
		return Result{}, err
	}
	st := route.Status.DeepCopy()
	st.ObservedGeneration = route.Generation
	st.Domain = r.opts.Domain(route)
	now := r.now()

	// A share may only move onto a Ready revision. While a target that
	// should carry traffic is not Ready, the previous split is held.
	// A missing target's share holds the previous split too, when one is
	// being served: a typo in a route must not become an outage.
	serving := slices.ContainsFunc(st.Traffic, func(x v1alpha1.TrafficTarget) bool {
		return x.Percent > 0 && x.RevisionName != v1alpha1.NotFoundRevisionName
	})
	var waiting []resolvedTarget
	for _, t := range targets {
		if t.Percent > 0 && !t.ready && (t.missingReason == "" || serving) {
			waiting = append(waiting, t)
		}
	}
	var desired []v1alpha1.TrafficTarget
	for _, t := range targets {
		if t.RevisionName != "" { // a 0% target of a configuration with no Ready revision is not served yet
			desired = append(desired, t.TrafficTarget)
		}
	}
	var held []v1alpha1.TrafficTarget
	returned := ""
	if len(waiting) > 0 {
		held = slices.Clone(st.Traffic)
		// A revision that stops being Ready in the middle of a gradual
		// move gives its share back to the revisions it came from.
		held, st.Rollouts, returned = revert(held, st.Rollouts, waiting)
		for i := range held {
			if _, ok := revs[held[i].RevisionName]; !ok && held[i].RevisionName != v1alpha1.NotFoundRevisionName {
				rv, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, held[i].RevisionName)
				if err != nil {
					return Result{}, err
				}
				if rv == nil {
					held[i].RevisionName = v1alpha1.NotFoundRevisionName
				} else {
					revs[rv.Name] = rv
				}
			}
		}
		// Holding a split none of whose revisions is there and Ready
		// serves nothing: the missing targets are reported as they are.
		live := slices.ContainsFunc(held, func(x v1alpha1.TrafficTarget) bool {
			if x.Percent == 0 || revs[x.RevisionName] == nil {
				return false
			}
			ok, _ := revs[x.RevisionName].Readiness()
			return ok
		})
		if !live && !slices.ContainsFunc(waiting, func(w resolvedTarget) bool { return w.missingReason == "" }) {
			waiting = nil
		}
	}
	var moving *migration
	if len(waiting) == 0 {
		next, rollouts, m, err := r.migrate(ctx, route, targets, desired, duration)
		if err != nil {
			return Result{}, err
		}
		st.Traffic, st.Rollouts, moving = next, rollouts, m
	} else {
		st.Traffic = held
	}

	res := routeConditions(st, routeOutcome{targets: targets, waiting: waiting, moving: moving, returned: returned},
		now, r.opts.Now(), r.opts.ProgressDeadline)

	for _, x := range st.Traffic { // revisions held or moved from are served too
		if _, ok := revs[x.RevisionName]; !ok && x.RevisionName != v1alpha1.NotFoundRevisionName {
			rv, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, x.RevisionName)
			if err != nil {
				return res, err
			}
			if rv != nil {
				revs[rv.Name] = rv
			}
		}
	}
	if err := r.recordReferences(ctx, route, targets, st.Traffic, revs); err != nil {
		return res, err
	}
	if err := r.traffic.Apply(ctx, route, r.plan(route, st.Traffic, revs)); err != nil {
		return res, r.trafficNotApplied(ctx, route, err)
	}
	st.Conditions.Remove(ConditionTrafficApplied)
	if !equality.Semantic.DeepEqual(*st, route.Status) {
		c := route.DeepCopy()
		c.Status = *st
		if _, err := r.store.UpdateStatus(ctx, c); err != nil {
			return res, err
		}
	}
	return res, nil
}

// routeOutcome is what reconcileRoute decided for a route's traffic, from
// which its conditions follow.
type routeOutcome struct {
	// targets are the spec's targets, resolved.
	targets []resolvedTarget
	// waiting are the targets with a share whose revision is not Ready
	// (or is missing), for which the previous split is held; the first
	// one is reported.
	waiting []resolvedTarget
	// moving is the gradual migration under way, if any.
	moving *migration
	// returned names the revisions a share that stopped being Ready
	// went back to.
	returned string
}

// routeConditions computes the status conditions of a route from what
// reconcileRoute decided, without reading or writing anything, and says
// when to look again. now stamps the conditions; at is the clock, which
// deadline is measured against since RolloutInProgress became True.
func routeConditions(st *v1alpha1.RouteStatus, o routeOutcome, now metav1.Time, at time.Time, deadline time.Duration) Result {
	// Conditions: TrafficDropped when a target is missing; RolloutComplete
	// when status serves spec with every revision Ready; RolloutInProgress
	// True while traffic moves or is held back, False otherwise.
	targets, waiting, moving, returned := o.targets, o.waiting, o.moving, o.returned
	var res Result
	if len(waiting) > 0 {
		res.RequeueAfter, res.InProgress = pollInterval, !waiting[0].failed
	}
	var missing *resolvedTarget
	for i := range targets {
		if targets[i].missingReason != "" {
			missing = &targets[i]
			break
		}
	}
	if missing != nil {
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionTrafficDropped, Status: corev1.ConditionTrue,
			Reason: missing.missingReason, Message: missing.why}, now)
	} else {
		st.Conditions.Remove(v1alpha1.ConditionTrafficDropped)
	}
	inProgress := func(reason, msg string) {
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutInProgress, Status: corev1.ConditionTrue, Reason: reason, Message: msg}, now)
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutComplete, Status: corev1.ConditionFalse, Reason: reason, Message: msg}, now)
	}
	notInProgress := func() {
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutInProgress, Status: corev1.ConditionFalse}, now)
	}
	switch {
	case len(waiting) > 0:
		w := waiting[0]
		what := fmt.Sprintf("revision %q", w.RevisionName)
		if w.RevisionName == "" {
			what = "a Ready revision"
		}
		msg := fmt.Sprintf("Waiting for %s before moving %d%% of the traffic: %s", what, w.Percent, w.why)
		if slices.ContainsFunc(st.Traffic, func(x v1alpha1.TrafficTarget) bool { return x.RevisionName == w.RevisionName && x.Percent > 0 }) {
			msg = fmt.Sprintf("Revision %q keeps its %d%% but is not Ready (%s); its requests fail until it recovers.", w.RevisionName, w.Percent, w.why)
		}
		if returned != "" {
			msg = fmt.Sprintf("Revision %q stopped being Ready during the rollout (%s); its share returned to %s.", w.RevisionName, w.why, returned)
		}
		reason := v1alpha1.ReasonRevisionNotReady
		if w.missingReason != "" {
			reason = w.missingReason
			msg = w.why + " The previous split keeps serving."
		}
		ip := st.Conditions.Get(v1alpha1.ConditionRolloutInProgress)
		if ip != nil && ip.Status == corev1.ConditionTrue && ip.LastTransitionTime != nil &&
			at.Sub(ip.LastTransitionTime.Time) > deadline {
			reason = v1alpha1.ReasonProgressDeadlineExceeded
			msg = fmt.Sprintf(v1alpha1.MessageTrafficSplitStuck+" %s", int(deadline.Seconds()), msg)
		}
		inProgress(reason, msg)
	case moving != nil:
		inProgress(v1alpha1.ReasonRolloutInProgress, moving.message())
		res.RequeueAfter, res.InProgress = moving.next, true
	case missing != nil:
		notInProgress()
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutComplete, Status: corev1.ConditionFalse,
			Reason: missing.missingReason, Message: missing.why}, now)
	default:
		notInProgress()
		var unready *resolvedTarget
		for i := range targets {
			if !targets[i].ready {
				unready = &targets[i]
				break
			}
		}
		if unready != nil {
			st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutComplete, Status: corev1.ConditionFalse,
				Reason:  v1alpha1.ReasonRevisionNotReady,
				Message: fmt.Sprintf("Target %q (revision %q) is not addressable until it is Ready: %s", unready.Name, unready.RevisionName, unready.why)}, now)
			res.RequeueAfter, res.InProgress = pollInterval, !unready.failed
		} else {
			st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutComplete, Status: corev1.ConditionTrue}, now)
		}
	}
	return res
}

// ConditionTrafficApplied is False on a Route while its split cannot be
// applied (Knative's IngressReady); its transition time is when that
// began, from which ProgressDeadlineExceeded is counted.
const ConditionTrafficApplied v1alpha1.ConditionType = "TrafficApplied"

// ReasonTrafficNotApplied is the reason while the traffic layer refuses or
// fails the split.
const ReasonTrafficNotApplied = "TrafficNotApplied"

// trafficNotApplied records that the route's split could not be applied:
// status.traffic keeps the split last applied (the one really served),
// and after ProgressDeadline RolloutInProgress says so with errors.md's
// reason and message. The error is returned so that the route is retried.
func (r *Reconciler) trafficNotApplied(ctx context.Context, route *v1alpha1.Route, applyErr error) error {
	err := fmt.Errorf("applying traffic of route %s: %w", route.Name, applyErr)
	now := r.now()
	st := route.Status.DeepCopy()
	st.Conditions.Set(v1alpha1.Condition{Type: ConditionTrafficApplied, Status: corev1.ConditionFalse,
		Reason: ReasonTrafficNotApplied, Message: "Unable to update traffic split: " + applyErr.Error()}, now)
	since := st.Conditions.Get(ConditionTrafficApplied).LastTransitionTime.Time
	reason, msg := ReasonTrafficNotApplied, "Unable to update traffic split: "+applyErr.Error()
	if r.opts.Now().Sub(since) > r.opts.ProgressDeadline {
		reason = v1alpha1.ReasonProgressDeadlineExceeded
		msg = fmt.Sprintf(v1alpha1.MessageTrafficSplitStuck+" %s", int(r.opts.ProgressDeadline.Seconds()), applyErr.Error())
	}
	st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutInProgress, Status: corev1.ConditionTrue, Reason: reason, Message: msg}, now)
	st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutComplete, Status: corev1.ConditionFalse, Reason: reason, Message: msg}, now)
	if !equality.Semantic.DeepEqual(*st, route.Status) {
		c := route.DeepCopy()
		c.Status = *st
		if _, uerr := r.store.UpdateStatus(ctx, c); uerr != nil {
			return errors.Join(err, uerr)
		}
	}
	return err
}

// resolve dereferences each spec target; revs holds the revisions seen.
func (r *Reconciler) resolve(ctx context.Context, route *v1alpha1.Route) ([]resolvedTarget, map[string]*v1alpha1.Revision, error) {
	revs := map[string]*v1alpha1.Revision{}
	var out []resolvedTarget
	for _, t := range route.Spec.Rollout.Traffic {
		rt := resolvedTarget{TrafficTarget: v1alpha1.TrafficTarget{Name: t.Name, Percent: t.Percent}}
		revName := t.RevisionName
		if t.ConfigurationName != "" {
			cfg, err := getOrNil[*v1alpha1.Configuration](ctx, r.store, store.KindConfiguration, route.Namespace, t.ConfigurationName)
			if err != nil {
				return nil, nil, err
			}
			if cfg == nil {
				rt.RevisionName = v1alpha1.NotFoundRevisionName
				rt.missingReason, rt.failed = v1alpha1.ReasonConfigurationMissing, true
				// errors.md writes "Revision 'my-service' ..." here, a slip:
				// it is the Configuration that is missing.
				rt.why = fmt.Sprintf("Configuration '%s' referenced in rollout.traffic not found; create it or change the route.", t.ConfigurationName)
				out = append(out, rt)
				continue
			}
			revName = cfg.Status.LatestReadyRevisionName
			if revName == "" && cond(cfg.Status.Conditions, v1alpha1.ConditionLatestRevisionReady) == v1alpha1.ReasonRevisionMissing {
				// errors.md: the latest Revision was deleted, so the
				// route drops the traffic it served, as for a missing
				// revision.
				gone, err := r.goneRevision(ctx, route, t.Name, cfg)
				if err != nil {
					return nil, nil, err
				}
				rt.RevisionName = v1alpha1.NotFoundRevisionName
				rt.missingReason, rt.failed = v1alpha1.ReasonRevisionMissing, true
				rt.why = fmt.Sprintf("Revision '%s' referenced in rollout.traffic not found: it was the latest Revision of Configuration '%s' and appears to have been deleted.", gone, t.ConfigurationName)
				out = append(out, rt)
				continue
			}
			if revName == "" {
				rt.RevisionName = ""
				rt.why = fmt.Sprintf("configuration %q has no Ready revision yet", t.ConfigurationName)
				if c := cfg.Status.Conditions.Get(v1alpha1.ConditionLatestRevisionReady); c != nil && c.Message != "" {
					rt.why += " (" + c.Message + ")"
				}
				out = append(out, rt)
				continue
			}
		}
		rt.RevisionName = revName
		rev := revs[revName]
		if rev == nil {
			var err error
			if rev, err = getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, route.Namespace, revName); err != nil {
				return nil, nil, err
			}
		}
		if rev == nil {
			rt.RevisionName = v1alpha1.NotFoundRevisionName
			rt.missingReason, rt.failed = v1alpha1.ReasonRevisionMissing, true
			rt.why = fmt.Sprintf("Revision '%s' referenced in rollout.traffic not found; point the route at an existing revision.", revName)
			out = append(out, rt)
			continue
		}
		revs[revName] = rev
		rt.ready, rt.why = rev.Readiness()
		if rev.Status.Conditions.Get(v1alpha1.ConditionReady).Failed() {
			rt.failed = true
		}
		out = append(out, rt)
	}
	return out, revs, nil
}

// goneRevision names the deleted revision that a configuration target
// served: the one of its current split that no longer exists, else the
// configuration's latest created one.
func (r *Reconciler) goneRevision(ctx context.Context, route *v1alpha1.Route, name string, cfg *v1alpha1.Configuration) (string, error) {
	for _, x := range route.Status.Traffic {
		if x.Name != name || x.RevisionName == v1alpha1.NotFoundRevisionName {
			continue
		}
		rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, route.Namespace, x.RevisionName)
		if err != nil {
			return "", err
		}
		if rev == nil {
			return x.RevisionName, nil
		}
	}
	return cfg.Status.LatestCreatedRevisionName, nil
}

// plan turns a status split into what the traffic layer serves.
func (r *Reconciler) plan(route *v1alpha1.Route, traffic []v1alpha1.TrafficTarget, revs map[string]*v1alpha1.Revision) TrafficPlan {
	p := TrafficPlan{Domain: r.opts.Domain(route), Hosts: map[string]NamedTarget{}, Tags: map[string]string{}}
	for _, t := range traffic {
		rev := revs[t.RevisionName]
		ready := false
		if rev != nil {
			ready, _ = rev.Readiness()
		}
		if t.Percent > 0 && rev != nil {
			p.Split = append(p.Split, Backend{Revision: t.RevisionName, Percent: t.Percent, Ready: ready})
		}
		if t.Name != "" && ready {
			p.Hosts[r.opts.TagHost(route, t.Name)] = NamedTarget{Tag: t.Name, Revision: t.RevisionName}
			p.Tags[t.Name] = t.RevisionName
		}
	}
	return p
}

// recordReferences adds the route's name to the RoutesAnnotation of every
// revision it serves or names, so that garbage collection keeps them. It
// writes only when a name is missing.
func (r *Reconciler) recordReferences(ctx context.Context, route *v1alpha1.Route, targets []resolvedTarget,
	traffic []v1alpha1.TrafficTarget, revs map[string]*v1alpha1.Revision) error {
	names := map[string]bool{}
	for _, t := range targets {
		names[t.RevisionName] = true
	}
	for _, t := range traffic {
		names[t.RevisionName] = true
	}
	for name := range names {
		rev := revs[name]
		if rev == nil || slices.Contains(routeNames(rev.Annotations[RoutesAnnotation]), route.Name) {
			continue
		}
		c := rev.DeepCopy()
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		setRouteNames(c.Annotations, append(routeNames(c.Annotations[RoutesAnnotation]), route.Name))
		delete(c.Annotations, UnreferencedSinceAnnotation)
		delete(c.Annotations, RetiredAnnotation)
		updated, err := r.store.Update(ctx, c)
		if err != nil {
			return fmt.Errorf("recording route %s on revision %s: %w", route.Name, name, err)
		}
		revs[name] = updated.(*v1alpha1.Revision)
	}
	return nil
}

// rejectRoute keeps serving the previous split of a route whose spec is
// invalid (written past the API's validation), and says why.
func (r *Reconciler) rejectRoute(ctx context.Context, route *v1alpha1.Route, errs field.ErrorList) (Result, error) {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Field + ": " + v1alpha1.FieldErrorMessage(e)
	}
	st := route.Status.DeepCopy()
	st.ObservedGeneration = route.Generation
	st.Domain = r.opts.Domain(route)
	st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionRolloutComplete, Status: corev1.ConditionFalse,
		Reason: "InvalidSpec", Message: "The route's spec is invalid and was not applied; the previous split keeps serving. " + strings.Join(msgs, "; ")}, r.now())
	revs := map[string]*v1alpha1.Revision{}
	for _, t := range st.Traffic {
		rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, route.Namespace, t.RevisionName)
		if err != nil {
			return Result{}, err
		}
		if rev != nil {
			revs[rev.Name] = rev
		}
	}
	if err := r.traffic.Apply(ctx, route, r.plan(route, st.Traffic, revs)); err != nil {
		return Result{}, err
	}
	if !equality.Semantic.DeepEqual(*st, route.Status) {
		c := route.DeepCopy()
		c.Status = *st
		if _, err := r.store.UpdateStatus(ctx, c); err != nil {
			return Result{}, err
		}
	}
	return Result{}, nil
}
