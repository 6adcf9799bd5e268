package reconcile_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/store"
)

type fixture struct {
	t     testing.TB
	ctx   context.Context
	store *local.Store
	rec   *reconciletest.Recorder
	rt    *reconciletest.Runtime
	tr    *reconciletest.Traffic
	b     *reconciletest.Builder
	r     *reconcile.Reconciler
	opts  reconcile.Options
	now   time.Time
}

func newFixture(t testing.TB, opts reconcile.Options) *fixture {
	t.Helper()
	s, err := local.Open(filepath.Join(t.TempDir(), "elafros.db"), local.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{t: t, ctx: context.Background(), store: s, rec: reconciletest.NewRecorder(s),
		rt: reconciletest.NewRuntime(), tr: reconciletest.NewTraffic(), b: reconciletest.NewBuilder(true),
		now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	if opts.Now == nil {
		opts.Now = func() time.Time { return f.now }
	}
	f.opts = opts
	f.r = f.newReconciler(f.rec)
	return f
}

func (f *fixture) newReconciler(s store.Store) *reconcile.Reconciler {
	r, err := reconcile.New(s, f.rt, f.tr, f.b, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) converge() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	if err := f.r.Converge(ctx, ""); err != nil {
		f.t.Fatal(err)
	}
}

func service(name, image string, strategy v1alpha1.RolloutStrategy) *v1alpha1.Service {
	s := &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	s.Spec.RevisionTemplate.Spec.Container = corev1.Container{Image: image}
	s.Spec.Rollout.Strategy = strategy
	s.SetDefaults()
	return s
}

func (f *fixture) create(o store.Object) {
	f.t.Helper()
	if _, err := f.store.Create(f.ctx, o); err != nil {
		f.t.Fatal(err)
	}
}

// setImage changes a service's image (a new revision).
func (f *fixture) setImage(name, image string) {
	f.t.Helper()
	o, err := f.store.Get(f.ctx, store.KindService, "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	s := o.(*v1alpha1.Service).DeepCopy()
	s.Spec.RevisionTemplate.Spec.Container.Image = image
	if _, err := f.store.Update(f.ctx, s); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) route(name string) *v1alpha1.Route {
	f.t.Helper()
	o, err := f.store.Get(f.ctx, store.KindRoute, "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*v1alpha1.Route)
}

func (f *fixture) setRouteTraffic(name string, traffic []v1alpha1.TrafficTarget) {
	f.t.Helper()
	rt := f.route(name).DeepCopy()
	rt.Spec.Rollout.Traffic = traffic
	if _, err := f.store.Update(f.ctx, rt); err != nil {
		f.t.Fatal(err)
	}
}

func tt(name, rev string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}
}

var metaZero = metav1.Time{}
