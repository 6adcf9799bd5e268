package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// ReconcilerOptions wire the bundled reconciler to a cluster.
type ReconcilerOptions struct {
	// Traffic names the Gateway (required) every HTTPRoute attaches to.
	Traffic TrafficOptions
	// Runtime tunes the workloads (mirrors, replicas, …).
	Runtime RuntimeOptions
	// Namespace confines the Store, Runtime and Traffic to one namespace
	// ("" for all).
	Namespace string
	// Reconcile is passed to reconcile.New (DomainSuffix is required).
	Reconcile reconcile.Options
	// Builder builds revisions that need it; nil refuses them.
	Builder reconcile.Builder
}

// Reconciler is the bundled reconciler running against a cluster.
type Reconciler struct {
	*reconcile.Reconciler
	// Store is the informer-backed Store the reconciler reads from.
	Store *CachedStore
	// Notify carries the revisions whose workloads changed: pass it as
	// reconcile.RunOptions.Notify so readiness is seen at once.
	Notify <-chan reconcile.Key
}

// NewReconciler starts the informers of the Store, Runtime and Traffic on
// cfg's cluster (until ctx ends) and returns the reconciler over them.
func NewReconciler(ctx context.Context, cfg *rest.Config, o ReconcilerOptions) (*Reconciler, error) {
	if o.Reconcile.DomainSuffix == "" {
		return nil, errors.New("the domain suffix must not be empty")
	}
	direct, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	cached := NewCachedStore(direct, o.Namespace)
	if err := cached.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the elafros.dev informers: %w", err)
	}
	notify := make(chan reconcile.Key, 1024)
	ro := o.Runtime
	ro.Namespace = o.Namespace
	ro.OnChange = func(ns, name string) {
		select {
		case notify <- reconcile.Key{Kind: store.KindRevision, Namespace: ns, Name: name}:
		default: // the revision's next poll sees it
		}
	}
	rt, err := NewRuntime(cfg, ro)
	if err != nil {
		return nil, err
	}
	if err := rt.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the runtime's informers: %w", err)
	}
	to := o.Traffic
	to.Namespace = o.Namespace
	tr, err := NewTraffic(cfg, to)
	if err != nil {
		return nil, err
	}
	if err := tr.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the traffic informers: %w", err)
	}
	ropts := o.Reconcile
	if ropts.Moved == nil {
		// The strategy's moves are Events too, as the people's are
		// (deploy.WithEvents): "kubectl describe route" shows them all.
		ev, err := NewEvents(cfg, "elafros-reconciler")
		if err != nil {
			return nil, err
		}
		ropts.Moved = func(ctx context.Context, rt *v1alpha1.Route, m v1alpha1.RolloutMove) {
			if err := ev.Event(ctx, rt, corev1.EventTypeNormal, v1alpha1.ReasonTrafficMoved, m.Message()); err != nil {
				slog.Warn("the strategy's move is in the route's history, but its Event was not recorded", "route", rt.Namespace+"/"+rt.Name, "err", err)
			}
		}
	}
	r, err := reconcile.New(cached, rt, tr, o.Builder, ropts)
	if err != nil {
		return nil, err
	}
	return &Reconciler{Reconciler: r, Store: cached, Notify: notify}, nil
}
