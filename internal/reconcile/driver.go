package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/workqueue"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// Converge reconciles every object of namespace ("" for all) in passes
// until a pass writes nothing, reports no error and has nothing in
// progress, or ctx ends (the action's deadline). It returns the last
// errors when ctx ends first.
func (r *Reconciler) Converge(ctx context.Context, namespace string) error {
	backoff := 10 * time.Millisecond
	for {
		before := r.Writes()
		inProgress, errs := r.Pass(ctx, namespace)
		wrote := r.Writes() != before
		if !wrote && len(errs) == 0 && !inProgress {
			return nil
		}
		if wrote {
			backoff = 10 * time.Millisecond
			if ctx.Err() == nil {
				continue
			}
		}
		select {
		case <-ctx.Done():
			if len(errs) > 0 {
				return fmt.Errorf("not converged before the deadline: %w", errors.Join(errs...))
			}
			return fmt.Errorf("not converged before the deadline (still starting, building or migrating): %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// Pass reconciles every object once, owners before what they own.
func (r *Reconciler) Pass(ctx context.Context, namespace string) (inProgress bool, errs []error) {
	for _, k := range []store.Kind{store.KindService, store.KindConfiguration, store.KindRevision, store.KindConfiguration, store.KindRoute, store.KindService} {
		objs, err := r.store.List(ctx, k, namespace, nil)
		if err != nil {
			return true, []error{err}
		}
		for _, o := range objs {
			res, err := r.Reconcile(ctx, Key{Kind: k, Namespace: o.GetNamespace(), Name: o.GetName()})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s/%s: %w", k, o.GetNamespace(), o.GetName(), err))
			}
			inProgress = inProgress || res.InProgress
		}
	}
	return inProgress, errs
}

// RunOptions tune the continuous driver.
type RunOptions struct {
	// Workers reconcile in parallel (one key is never reconciled twice at
	// once). Default 2.
	Workers int
	// Resync re-enqueues every object this often. Default 5m.
	Resync time.Duration
	Logger *slog.Logger
	// Notify, when set, enqueues keys from outside the store's watch: a
	// runtime reporting that a revision's workload changed, so that its
	// readiness is seen at once instead of at the next poll.
	Notify <-chan Key
}

// Run reconciles continuously: every watch event enqueues the objects it
// affects, a resync enqueues everything, failures retry with backoff.
// It returns when ctx ends.
func (r *Reconciler) Run(ctx context.Context, o RunOptions) error {
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Resync <= 0 {
		o.Resync = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[Key](),
		workqueue.TypedRateLimitingQueueConfig[Key]{Name: "elafros"})
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, shutdown := q.Get()
				if shutdown {
					return
				}
				res, err := r.Reconcile(ctx, k)
				switch {
				case err != nil && ctx.Err() == nil:
					level := slog.LevelWarn
					if apierrors.IsConflict(err) {
						level = slog.LevelDebug // someone wrote first: read again and retry
					}
					o.Logger.Log(ctx, level, "reconcile failed; retrying", "object", k.String(), "err", err)
					q.AddRateLimited(k)
				case res.RequeueAfter > 0:
					q.Forget(k)
					q.AddAfter(k, res.RequeueAfter)
				default:
					q.Forget(k)
				}
				q.Done(k)
			}
		}()
	}
	defer func() {
		q.ShutDown()
		wg.Wait()
	}()
	resync := time.NewTicker(o.Resync)
	defer resync.Stop()
	for ctx.Err() == nil {
		events, err := r.store.Watch(ctx)
		if err != nil {
			o.Logger.Warn("watch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		r.enqueueAll(ctx, q) // what changed before the watch began
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-resync.C:
				r.enqueueAll(ctx, q)
			case k := <-o.Notify:
				q.Add(k)
			case e, ok := <-events:
				if !ok {
					break loop // fell behind or the store closed: list again
				}
				for _, k := range r.affected(ctx, e) {
					q.Add(k)
				}
			}
		}
	}
	return nil
}

func (r *Reconciler) enqueueAll(ctx context.Context, q workqueue.TypedInterface[Key]) {
	for _, k := range store.Kinds {
		objs, err := r.store.List(ctx, k, "", nil)
		if err != nil {
			continue
		}
		for _, o := range objs {
			q.Add(Key{Kind: k, Namespace: o.GetNamespace(), Name: o.GetName()})
		}
	}
}

// affected lists the objects whose reconcile reads the changed object.
func (r *Reconciler) affected(ctx context.Context, e store.Event) []Key {
	o := e.Object
	ns := o.GetNamespace()
	k := store.KindOf(o)
	keys := []Key{{Kind: k, Namespace: ns, Name: o.GetName()}}
	for _, ref := range o.GetOwnerReferences() {
		keys = append(keys, Key{Kind: store.Kind(ref.Kind), Namespace: ns, Name: ref.Name})
	}
	switch x := o.(type) {
	case *v1alpha1.Revision:
		// Routes resolve revisions; configurations track their latest.
		keys = append(keys, r.routesIn(ctx, ns)...)
	case *v1alpha1.Configuration:
		keys = append(keys, r.routesIn(ctx, ns)...)
	case *v1alpha1.Route:
		// Configurations collect garbage by route references.
		seen := map[string]bool{}
		for _, t := range append(append([]v1alpha1.TrafficTarget{}, x.Spec.Rollout.Traffic...), x.Status.Traffic...) {
			c := t.ConfigurationName
			if c == "" && t.RevisionName != "" {
				if rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, t.RevisionName); err == nil && rev != nil {
					c = rev.Labels[v1alpha1.ConfigurationLabelKey]
				}
			}
			if c != "" && !seen[c] {
				seen[c] = true
				keys = append(keys, Key{Kind: store.KindConfiguration, Namespace: ns, Name: c})
			}
		}
	}
	return keys
}

func (r *Reconciler) routesIn(ctx context.Context, ns string) []Key {
	routes, err := r.store.List(ctx, store.KindRoute, ns, nil)
	if err != nil {
		return nil
	}
	keys := make([]Key, len(routes))
	for i, rt := range routes {
		keys[i] = Key{Kind: store.KindRoute, Namespace: ns, Name: rt.GetName()}
	}
	return keys
}
