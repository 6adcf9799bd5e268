package kube_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// counter counts a client's API requests: reads (GET, including lists and
// watches) and writes (everything else), and the writes the API server
// accepted (a 2xx answer: not a conflict).
// counter counts the API requests of a rest.Config: reads and writes.
// Watches are not reads: the informers' long-running streams are renewed
// every five to ten minutes whatever the reconciler does, so a test that
// runs that long would count a renewal that falls in the span it measures.
type counter struct {
	reads, writes, accepted atomic.Int64
	mu                      sync.Mutex
	lastReads               []string // the last few, for a failure to name
}

// recentReads are the last reads' URLs.
func (c *counter) recentReads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lastReads)
}

func (c *counter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && r.URL.Query().Get("watch") == "true" {
				return rt.RoundTrip(r)
			}
			if r.Method == http.MethodGet {
				c.reads.Add(1)
				c.mu.Lock()
				c.lastReads = append(c.lastReads, r.URL.RequestURI())
				if len(c.lastReads) > 8 {
					c.lastReads = c.lastReads[1:]
				}
				c.mu.Unlock()
			} else {
				c.writes.Add(1)
			}
			resp, err := rt.RoundTrip(r)
			if err == nil && r.Method != http.MethodGet && resp.StatusCode/100 == 2 {
				c.accepted.Add(1)
			}
			return resp, err
		})
	})
	return cfg
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// reconciler is one running bundled reconciler (as the action or the bot
// runs it), over cfg's credentials.
type reconciler struct {
	r     *reconcile.Reconciler
	store store.Store
}

func startReconciler(t testing.TB, ctx context.Context, e *env, cfg *rest.Config, resync time.Duration) *reconciler {
	t.Helper()
	r := newReconciler(t, ctx, e, cfg)
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = r.Run(ctx, reconcile.RunOptions{Resync: resync, Notify: r.Notify})
	}()
	t.Cleanup(func() {
		<-done
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	})
	return &reconciler{r: r.Reconciler, store: r.Store}
}

// newReconciler wires a reconciler to the test cluster as elafros
// reconcile does, with builds that complete at once.
func newReconciler(t testing.TB, ctx context.Context, e *env, cfg *rest.Config) *kube.Reconciler {
	t.Helper()
	r, err := kube.NewReconciler(ctx, cfg, kube.ReconcilerOptions{
		Traffic: gateway(), Runtime: kube.RuntimeOptions{Mirrors: map[string]string{"gcr.io": e.registry}},
		Reconcile: reconcile.Options{DomainSuffix: "example.com"}, Builder: reconciletest.NewBuilder(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// app creates a Configuration and a Route that follows it.
func app(t testing.TB, ctx context.Context, s store.Store, name string) {
	t.Helper()
	body := fmt.Sprintf(`apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata: {name: %[1]s, namespace: default}
spec:
  revisionTemplate:
    spec:
      container:
        image: gcr.io/elafros-samples/my-service:v1
        env:
        - {name: VERSION, value: "1"}
---
apiVersion: elafros.dev/v1alpha1
kind: Route
metadata: {name: %[1]s, namespace: default}
spec:
  rollout:
    traffic:
    - {configurationName: %[1]s, percent: 100}
`, name)
	docs, errs := manifest.Decode("app.yaml", []byte(body))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, d := range docs {
		d.Object.SetDefaults()
		if _, err := s.Create(ctx, d.Object.(store.Object)); err != nil {
			t.Fatal(err)
		}
	}
}

// setVersion changes a configuration's VERSION env (a new revision).
func setVersion(ctx context.Context, s store.Store, name string, v int) error {
	patch := fmt.Sprintf(`{"spec":{"revisionTemplate":{"spec":{"container":{"env":[{"name":"VERSION","value":"%d"}]}}}}}`, v)
	_, err := s.Patch(ctx, store.KindConfiguration, "default", name, types.StrategicMergePatchType, []byte(patch))
	return err
}

// converged reports whether name's route serves the revision of
// generation gen at 100%, complete, with the HTTPRoute saying the same,
// and every revision up to gen carries its own VERSION (no lost update).
func converged(ctx context.Context, e *env, s store.Store, name string, gen int64) error {
	o, err := s.Get(ctx, store.KindConfiguration, "default", name)
	if err != nil {
		return err
	}
	cfg := o.(*v1alpha1.Configuration)
	want := reconcile.RevisionName(name, gen)
	if cfg.Generation != gen || cfg.Status.ObservedGeneration != gen || cfg.Status.LatestReadyRevisionName != want {
		return fmt.Errorf("configuration %s: generation %d observed %d latestReady %q, want %d and %s",
			name, cfg.Generation, cfg.Status.ObservedGeneration, cfg.Status.LatestReadyRevisionName, gen, want)
	}
	o, err = s.Get(ctx, store.KindRoute, "default", name)
	if err != nil {
		return err
	}
	rt := o.(*v1alpha1.Route)
	if len(rt.Status.Traffic) != 1 || rt.Status.Traffic[0].RevisionName != want || rt.Status.Traffic[0].Percent != 100 ||
		!rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete) || rt.Status.ObservedGeneration != rt.Generation {
		return fmt.Errorf("route %s: traffic %+v, conditions %+v", name, rt.Status.Traffic, rt.Status.Conditions)
	}
	p, found, err := kube.ReadPlan(ctx, e.c.Config, "default", name)
	if err != nil || !found || len(p.Split) != 1 || p.Split[0].Revision != want || p.Split[0].Percent != 100 {
		return fmt.Errorf("HTTPRoute of %s: %+v (found %v): %w", name, p, found, err)
	}
	for g := int64(1); g <= gen; g++ {
		o, err := s.Get(ctx, store.KindRevision, "default", reconcile.RevisionName(name, g))
		if err != nil {
			return fmt.Errorf("revision %d of %s: %w", g, name, err)
		}
		env := o.(*v1alpha1.Revision).Spec.Container.Env
		if len(env) != 1 || env[0].Value != fmt.Sprint(g) {
			return fmt.Errorf("revision %d of %s has env %+v, want VERSION=%d", g, name, env, g)
		}
	}
	return nil
}

func eventually(t testing.TB, what string, d time.Duration, f func() error) {
	t.Helper()
	testutil.EventuallyEvery(t, d, 250*time.Millisecond, what, func() (bool, string) {
		err := f()
		return err == nil, fmt.Sprint(err)
	})
}

// TestTwoReconcilers runs the action's and the bot's reconcilers at once,
// each under its own ServiceAccount, on the same objects while users
// change them: both write the same statuses, conflicts are retried, and
// everything converges with no lost update and no lost revision.
func TestTwoReconcilers(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var actionWrites, botWrites counter
	action := startReconciler(t, ctx, e, actionWrites.wrap(e.action), time.Minute)
	startReconciler(t, ctx, e, botWrites.wrap(e.bot), time.Minute)
	t.Cleanup(cancel)
	const apps, versions = 4, 4
	for i := range apps {
		app(t, ctx, action.store, fmt.Sprintf("app-%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, apps)
	for i := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("app-%d", i)
			for v := 2; v <= versions; v++ {
				// As a user deploying in turn: each change once the
				// previous one has its revision (a change made before
				// the reconciler saw the one before replaces it).
				prev := reconcile.RevisionName(name, int64(v-1))
				for {
					if _, err := action.store.Get(ctx, store.KindRevision, "default", prev); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return setVersion(ctx, action.store, name, v) }); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range apps {
		name := fmt.Sprintf("app-%d", i)
		eventually(t, name+" converged", 120*time.Second, func() error { return converged(ctx, e, action.store, name, versions) })
	}
	// Both really reconciled: each had writes the API server accepted
	// (the action's include the users' changes above, so its count is
	// checked beyond those).
	if n := botWrites.accepted.Load(); n == 0 {
		t.Errorf("the bot's reconciler had no write accepted (%d attempted)", botWrites.writes.Load())
	}
	if n := actionWrites.accepted.Load() - apps*2 - apps*(versions-1); n <= 0 {
		t.Errorf("the action's reconciler had no write accepted beyond the test's own (%d accepted in all)", actionWrites.accepted.Load())
	}
}

// TestRolloutSurvivesRestart stops kube-apiserver and etcd in the middle of
// a rollout and starts them again: the reconciler's watches and informers
// recover and the rollout completes.
func TestRolloutSurvivesRestart(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startReconciler(t, ctx, e, e.action, time.Minute)
	t.Cleanup(cancel)
	app(t, ctx, r.store, "survivor")
	eventually(t, "first revision serving", 60*time.Second, func() error { return converged(ctx, e, r.store, "survivor", 1) })
	// A gradual rollout, so that it is surely under way when the API
	// server dies (an immediate one could finish first).
	if _, err := r.store.Patch(ctx, store.KindRoute, "default", "survivor", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"elafros.dev/rollout-duration":"20s"}}}`)); err != nil {
		t.Fatal(err)
	}
	if err := setVersion(ctx, r.store, "survivor", 2); err != nil {
		t.Fatal(err)
	}
	r2 := reconcile.RevisionName("survivor", 2)
	eventually(t, "rollout under way", 60*time.Second, func() error {
		o, err := r.store.Get(ctx, store.KindRoute, "default", "survivor")
		if err != nil {
			return err
		}
		rt := o.(*v1alpha1.Route)
		if len(rt.Status.Rollouts) != 1 || rt.Status.Rollouts[0].RevisionName != r2 || !rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutInProgress) {
			return fmt.Errorf("route not moving to %s: rollouts %+v, traffic %+v", r2, rt.Status.Rollouts, rt.Status.Traffic)
		}
		return nil
	})
	e.c.Stop(t, "kube-apiserver", "etcd")
	time.Sleep(2 * time.Second)
	e.c.Start(t, "etcd", "kube-apiserver")
	eventually(t, "rollout after the restart", 120*time.Second, func() error { return converged(ctx, e, r.store, "survivor", 2) })
}
