package reconcile

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// Annotations the garbage collector keeps on revisions.
const (
	// UnreferencedSinceAnnotation records when no route referenced a
	// revision any more.
	UnreferencedSinceAnnotation = v1alpha1.GroupName + "/unreferencedSince"
	// RetiredAnnotation marks a revision whose workload was removed.
	RetiredAnnotation = v1alpha1.GroupName + "/retired"
)

// ConditionActive is False on a retired revision (workload removed).
const ConditionActive v1alpha1.ConditionType = "Active"

func (r *Reconciler) reconcileConfiguration(ctx context.Context, ns, name string) (Result, error) {
	cfg, err := getOrNil[*v1alpha1.Configuration](ctx, r.store, store.KindConfiguration, ns, name)
	if err != nil || cfg == nil {
		return Result{}, err
	}
	revName := RevisionName(cfg.Name, cfg.Generation)
	rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, revName)
	if err != nil {
		return Result{}, err
	}
	if rev == nil {
		// errors.md: a deleted latest Revision is first reported (and the
		// routes that follow this configuration drop its traffic); only
		// then is it created again for the same generation, and its
		// recovery is seen as it becomes Ready.
		if cfg.Status.LatestCreatedRevisionName == revName && cfg.Status.ObservedGeneration == cfg.Generation &&
			cond(cfg.Status.Conditions, v1alpha1.ConditionLatestRevisionReady) != v1alpha1.ReasonRevisionMissing {
			return Result{RequeueAfter: pollInterval, InProgress: true}, r.setConfigStatus(ctx, cfg, func(st *v1alpha1.ConfigurationStatus) {
				if st.LatestReadyRevisionName == revName {
					st.LatestReadyRevisionName = ""
				}
				st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionLatestRevisionReady, Status: corev1.ConditionFalse,
					Reason: v1alpha1.ReasonRevisionMissing, Message: deletedMessage(revName, cfg.Generation)}, r.now())
			})
		}
		if rev, err = r.createRevision(ctx, cfg, revName); err != nil {
			return Result{}, err
		}
	}
	if rev.Labels[v1alpha1.ConfigurationLabelKey] != cfg.Name {
		return Result{}, r.setConfigStatus(ctx, cfg, func(st *v1alpha1.ConfigurationStatus) {
			st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionLatestRevisionReady, Status: corev1.ConditionFalse,
				Reason: "RevisionNameTaken", Message: fmt.Sprintf("Revision %q exists and was not created by this Configuration; delete it so that generation %d can be created.", revName, cfg.Generation)}, r.now())
		})
	}
	if rev.Spec.BuildName != "" && cfg.Spec.Build != nil && !rev.Status.Conditions.IsTrue(v1alpha1.ConditionBuildComplete) && r.builder != nil {
		if err := r.builder.Start(ctx, ns, rev.Spec.BuildName, *cfg.Spec.Build, cfg.Spec.RevisionTemplate.Spec.Container.Image); err != nil {
			return Result{}, fmt.Errorf("starting build %s: %w", rev.Spec.BuildName, err)
		}
	}

	st := cfg.Status.DeepCopy()
	st.LatestCreatedRevisionName = revName
	st.ObservedGeneration = cfg.Generation
	ready := rev.Status.Conditions.Get(v1alpha1.ConditionReady)
	switch {
	case ready != nil && ready.Status == corev1.ConditionTrue:
		st.LatestReadyRevisionName = revName
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionLatestRevisionReady, Status: corev1.ConditionTrue}, r.now())
	case ready != nil && ready.Failed():
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionLatestRevisionReady, Status: corev1.ConditionFalse,
			Reason: ready.Reason, Message: ready.Message}, r.now())
	case st.LatestReadyRevisionName == "" && cond(st.Conditions, v1alpha1.ConditionLatestRevisionReady) == v1alpha1.ReasonRevisionMissing:
		// Keep saying that the ready revision was deleted until another
		// becomes Ready.
	default:
		st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionLatestRevisionReady, Status: corev1.ConditionUnknown,
			Reason: v1alpha1.ReasonDeploying, Message: fmt.Sprintf("Revision %q is starting.", revName)}, r.now())
	}
	if lr := st.LatestReadyRevisionName; lr != "" && lr != revName {
		prev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, lr)
		if err != nil {
			return Result{}, err
		}
		if prev == nil {
			st.LatestReadyRevisionName = ""
			st.Conditions.Set(v1alpha1.Condition{Type: v1alpha1.ConditionLatestRevisionReady, Status: corev1.ConditionFalse,
				Reason: v1alpha1.ReasonRevisionMissing, Message: fmt.Sprintf("%s Revision %q, the latest Ready one, is gone; traffic that followed it is dropped until %q is Ready.",
					v1alpha1.MessageLatestRevisionDeleted, lr, revName)}, r.now())
		}
	}
	if err := r.setConfigStatus(ctx, cfg, func(s *v1alpha1.ConfigurationStatus) { *s = *st }); err != nil {
		return Result{}, err
	}
	return r.collectGarbage(ctx, cfg)
}

func (r *Reconciler) createRevision(ctx context.Context, cfg *v1alpha1.Configuration, name string) (*v1alpha1.Revision, error) {
	tmpl := cfg.Spec.RevisionTemplate
	rev := &v1alpha1.Revision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       cfg.Namespace,
			Labels:          maps.Clone(tmpl.Labels),
			Annotations:     maps.Clone(tmpl.Annotations),
			OwnerReferences: []metav1.OwnerReference{ownerRef(cfg, store.KindConfiguration)},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	if rev.Labels == nil {
		rev.Labels = map[string]string{}
	}
	rev.Labels[v1alpha1.ConfigurationLabelKey] = cfg.Name
	rev.Labels[v1alpha1.ConfigurationGenerationLabelKey] = strconv.FormatInt(cfg.Generation, 10)
	if cfg.Spec.Build != nil && rev.Spec.BuildName == "" {
		rev.Spec.BuildName = name
	}
	created, err := r.store.Create(ctx, rev)
	if apierrors.IsAlreadyExists(err) {
		return getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, cfg.Namespace, name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating revision %s: %w", name, err)
	}
	return created.(*v1alpha1.Revision), nil
}

func (r *Reconciler) setConfigStatus(ctx context.Context, cfg *v1alpha1.Configuration, mutate func(*v1alpha1.ConfigurationStatus)) error {
	st := cfg.Status.DeepCopy()
	mutate(st)
	if equality.Semantic.DeepEqual(*st, cfg.Status) {
		return nil
	}
	c := cfg.DeepCopy()
	c.Status = *st
	_, err := r.store.UpdateStatus(ctx, c)
	return err
}

// collectGarbage retires the workloads of revisions that no route has
// referenced for RetireAfter, and deletes the oldest retired ones beyond
// MaxRevisions. It never touches a referenced revision, the latest created
// or ready one, or the newest KeepRevisions. Routes record themselves on
// the revisions they reference (RoutesAnnotation); each name is checked
// against the route, so a deleted or changed route stops protecting.
func (r *Reconciler) collectGarbage(ctx context.Context, cfg *v1alpha1.Configuration) (Result, error) {
	revs, err := r.store.List(ctx, store.KindRevision, cfg.Namespace, labels.SelectorFromSet(labels.Set{v1alpha1.ConfigurationLabelKey: cfg.Name}))
	if err != nil {
		return Result{}, err
	}
	cur, err := getOrNil[*v1alpha1.Configuration](ctx, r.store, store.KindConfiguration, cfg.Namespace, cfg.Name)
	if err != nil || cur == nil {
		return Result{}, err
	}
	routes := map[string]*v1alpha1.Route{}
	references := func(routeName, rev string) (bool, error) {
		rt, seen := routes[routeName]
		if !seen {
			if rt, err = getOrNil[*v1alpha1.Route](ctx, r.store, store.KindRoute, cfg.Namespace, routeName); err != nil {
				return false, err
			}
			routes[routeName] = rt
		}
		if rt == nil {
			return false, nil
		}
		for _, t := range append(append([]v1alpha1.TrafficTarget{}, rt.Spec.Rollout.Traffic...), rt.Status.Traffic...) {
			if t.RevisionName == rev || (t.ConfigurationName == cfg.Name &&
				(rev == cur.Status.LatestReadyRevisionName || rev == cur.Status.LatestCreatedRevisionName)) {
				return true, nil
			}
		}
		return false, nil
	}
	sort.Slice(revs, func(i, j int) bool { return generationOf(revs[i]) > generationOf(revs[j]) })
	protected := map[string]bool{cur.Status.LatestCreatedRevisionName: true, cur.Status.LatestReadyRevisionName: true}
	for i, o := range revs {
		if i < r.opts.KeepRevisions {
			protected[o.GetName()] = true
		}
	}
	now := r.opts.Now()
	var res Result
	var deletable []store.Object
	for _, o := range revs {
		rev := o.(*v1alpha1.Revision)
		ann := maps.Clone(rev.Annotations)
		if ann == nil {
			ann = map[string]string{}
		}
		var live []string
		for _, name := range routeNames(ann[RoutesAnnotation]) {
			ok, err := references(name, rev.Name)
			if err != nil {
				return res, err
			}
			if ok {
				live = append(live, name)
			}
		}
		setRouteNames(ann, live)
		if len(live) > 0 {
			delete(ann, UnreferencedSinceAnnotation)
			delete(ann, RetiredAnnotation)
		} else {
			since, err := time.Parse(time.RFC3339, ann[UnreferencedSinceAnnotation])
			if err != nil {
				since = now
				ann[UnreferencedSinceAnnotation] = now.UTC().Format(time.RFC3339)
			}
			if left := r.opts.RetireAfter - now.Sub(since); left <= 0 {
				ann[RetiredAnnotation] = "true"
				if !protected[rev.Name] {
					deletable = append(deletable, rev) // only retired revisions are ever deleted
				}
			} else if res.RequeueAfter == 0 || left < res.RequeueAfter {
				res.RequeueAfter = left
			}
		}
		if !maps.Equal(ann, rev.Annotations) {
			c := rev.DeepCopy()
			c.Annotations = ann
			if _, err := r.store.Update(ctx, c); err != nil && !apierrors.IsNotFound(err) {
				return res, err
			}
		}
	}
	excess := len(revs) - r.opts.MaxRevisions
	for i := len(deletable) - 1; i >= 0 && excess > 0; i-- { // oldest first
		if err := r.store.Delete(ctx, store.KindRevision, cfg.Namespace, deletable[i].GetName()); err != nil && !apierrors.IsNotFound(err) {
			return res, err
		}
		excess--
	}
	return res, nil
}

// RoutesAnnotation lists (comma-separated, sorted) the routes that
// reference a revision; routes add themselves, garbage collection drops
// names that no longer reference it.
const RoutesAnnotation = v1alpha1.GroupName + "/routes"

func routeNames(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func setRouteNames(ann map[string]string, names []string) {
	if len(names) == 0 {
		delete(ann, RoutesAnnotation)
		return
	}
	sort.Strings(names)
	ann[RoutesAnnotation] = strings.Join(slices.Compact(names), ",")
}

// cond returns the reason of a condition, or "".
func cond(cs v1alpha1.Conditions, t v1alpha1.ConditionType) string {
	if c := cs.Get(t); c != nil {
		return c.Reason
	}
	return ""
}

func generationOf(o store.Object) int64 {
	g, _ := strconv.ParseInt(o.GetLabels()[v1alpha1.ConfigurationGenerationLabelKey], 10, 64)
	return g
}

func deletedMessage(rev string, gen int64) string {
	return fmt.Sprintf("%s Revision %q is created again for generation %d; traffic that followed it is dropped until it is Ready.",
		v1alpha1.MessageLatestRevisionDeleted, rev, gen)
}
