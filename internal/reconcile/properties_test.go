package reconcile_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

// world builds a few services of each strategy with a couple of revisions
// and one rollout in progress.
func world(f *fixture) {
	for i, s := range []v1alpha1.RolloutStrategy{v1alpha1.StrategyAutomatic, v1alpha1.StrategyManual, v1alpha1.StrategyCanary} {
		f.create(service(fmt.Sprintf("svc-%d", i), "img:1", s))
	}
	f.converge()
	for i := range 3 {
		f.setImage(fmt.Sprintf("svc-%d", i), "img:2")
	}
	f.converge()
}

func TestUnchangedWorldWritesNothing(t *testing.T) {
	f := newFixture(t, reconcile.Options{})
	world(f)
	before := f.rec.Writes()
	for range 3 {
		if _, errs := f.r.Pass(f.ctx, ""); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	if got := f.rec.Writes() - before; got != 0 {
		t.Errorf("three passes over an unchanged world made %d writes, want 0", got)
	}
}

// snapshot renders every object without the fields that differ between
// runs (uids, resourceVersions, timestamps), for comparing end states.
func snapshot(t *testing.T, f *fixture) string {
	t.Helper()
	var out []string
	for _, k := range store.Kinds {
		objs, err := f.store.List(f.ctx, k, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			c := o.DeepCopyObject().(store.Object)
			c.SetUID("")
			c.SetResourceVersion("")
			c.SetCreationTimestamp(metaZero)
			refs := c.GetOwnerReferences()
			for i := range refs {
				refs[i].UID = ""
			}
			b, _ := json.Marshal(c)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			stripTimes(m)
			b, _ = json.Marshal(m)
			out = append(out, string(b))
		}
	}
	sort.Strings(out)
	b, _ := json.MarshalIndent(out, "", " ")
	return string(b)
}

func stripTimes(v any) {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "lastTransitionTime")
		for _, c := range x {
			stripTimes(c)
		}
	case []any:
		for _, c := range x {
			stripTimes(c)
		}
	}
}

// TestKilledBetweenWritesConverges stops the reconciler at each of its
// writes in turn (as if the process died there), then restarts a fresh one
// on the same store and checks that it reaches the same end state as an
// uninterrupted run.
func TestKilledBetweenWritesConverges(t *testing.T) {
	scenario := func(f *fixture, r *reconcile.Reconciler) error {
		if _, errs := runPasses(f, r); len(errs) > 0 {
			return errors.Join(errs...)
		}
		return nil
	}
	setup := func(f *fixture) {
		f.create(service("svc-c", "img:1", v1alpha1.StrategyCanary))
		f.create(service("svc-a", "img:1", v1alpha1.StrategyAutomatic))
	}
	change := func(f *fixture) {
		f.setImage("svc-c", "img:2")
		f.setImage("svc-a", "img:2")
	}

	ref := newFixture(t, reconcile.Options{})
	setup(ref)
	ref.converge()
	change(ref)
	start := ref.rec.Writes()
	ref.converge()
	total := ref.rec.Writes() - start
	want := snapshot(t, ref)
	if total < 5 {
		t.Fatalf("the scenario makes only %d writes; it does not exercise much", total)
	}
	for k := 0; k < total; k++ {
		t.Run(fmt.Sprintf("killed after %d of %d writes", k, total), func(t *testing.T) {
			f := newFixture(t, reconcile.Options{})
			setup(f)
			f.converge()
			change(f)
			dying := reconciletest.NewRecorder(f.store)
			dying.Budget = k
			if err := scenario(f, f.newReconciler(dying)); !errors.Is(err, reconciletest.ErrKilled) {
				t.Fatalf("the reconciler was not stopped: %v", err)
			}
			f.converge() // a fresh reconciler on the same store
			if d := cmp.Diff(want, snapshot(t, f)); d != "" {
				t.Errorf("end state differs from an uninterrupted run (-want +got):\n%s", d)
			}
		})
	}
}

func runPasses(f *fixture, r *reconcile.Reconciler) (bool, []error) {
	for range 20 {
		before := r.Writes()
		inProgress, errs := r.Pass(f.ctx, "")
		if len(errs) > 0 {
			return inProgress, errs
		}
		if r.Writes() == before && !inProgress {
			return false, nil
		}
	}
	return true, nil
}

// TestRouteInvariantsProperty drives random sequences of commands (new
// images, rollout operations through the rollout package, direct route
// edits) and readiness changes (start failures, recoveries, held starts),
// and checks every Route status ever written: percents total 100 (or
// nothing is served yet), none is negative, and no revision's share grows
// unless it is Ready at that moment.
func TestRouteInvariantsProperty(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	gradual := 0 // statuses written in the middle of a gradual move
	for seed := range seeds {
		f := newFixture(t, reconcile.Options{})
		statuses := 0
		f.rec.OnRouteStatus = func(old, new *v1alpha1.Route) {
			statuses++
			if len(new.Status.Rollouts) > 0 {
				gradual++
			}
			total := 0
			for _, x := range new.Status.Traffic {
				if x.Percent < 0 {
					t.Fatalf("seed %d: negative percent in %+v", seed, new.Status.Traffic)
				}
				total += x.Percent
			}
			if len(new.Status.Traffic) > 0 && total != 100 {
				t.Fatalf("seed %d: status total %d: %+v", seed, total, new.Status.Traffic)
			}
			was := rollout.ByRevision(old.Status.Traffic)
			for rev, p := range rollout.ByRevision(new.Status.Traffic) {
				if p <= was[rev] || rev == v1alpha1.NotFoundRevisionName {
					continue // "Not found" serves nothing: that share is dropped, and said so
				}
				o, err := f.store.Get(f.ctx, store.KindRevision, "default", rev)
				if err != nil || !o.(*v1alpha1.Revision).Status.Conditions.IsTrue(v1alpha1.ConditionReady) {
					t.Fatalf("seed %d: route %s moved traffic onto %s (%d%% -> %d%%), which is not Ready: %+v -> %+v",
						seed, new.Name, rev, was[rev], p, old.Status.Traffic, new.Status.Traffic)
				}
			}
		}
		rnd := rand.New(rand.NewPCG(uint64(seed), 99))
		strategies := []v1alpha1.RolloutStrategy{v1alpha1.StrategyAutomatic, v1alpha1.StrategyManual, v1alpha1.StrategyCanary}
		svc := service("web", "img:0", strategies[rnd.IntN(3)])
		if seed%2 == 1 { // gradual moves too (kept when the strategy changes; only automatic follows the configuration)
			svc.Spec.Rollout.Duration = &metav1.Duration{Duration: time.Minute}
		}
		f.create(svc)
		gen := 1
		for step := 0; step < 40; step++ {
			f.now = f.now.Add(time.Duration(rnd.IntN(30)) * time.Second)
			switch rnd.IntN(7) {
			case 0, 1: // a new image; its revision may fail or be slow to start
				gen++
				name := reconcile.RevisionName("web", int64(gen))
				switch rnd.IntN(3) {
				case 0:
					f.rt.Fail("default", name, "ExitCode:1", "crash")
				case 1:
					f.rt.Hold("default", name)
				}
				f.setImage("web", fmt.Sprintf("img:%d", gen))
			case 2: // readiness changes on some existing revision
				name := reconcile.RevisionName("web", int64(1+rnd.IntN(gen)))
				switch rnd.IntN(4) {
				case 0:
					f.rt.Fail("default", name, "ExitCode:137", "OOMKilled")
				case 1:
					f.rt.Recover("default", name)
				case 2:
					f.rt.Release("default", name)
				case 3:
					f.rt.Hold("default", name)
				}
			case 3, 4: // a rollout command, as the CLI and the bot issue them
				o, err := f.store.Get(f.ctx, store.KindRoute, "default", "web")
				if err != nil {
					continue // not created yet
				}
				cur := o.(*v1alpha1.Route).Spec.Rollout.Traffic
				ready := func(rev string) (bool, string) {
					o, err := f.store.Get(f.ctx, store.KindRevision, "default", rev)
					if err != nil {
						return false, "missing"
					}
					return o.(*v1alpha1.Revision).Status.Conditions.IsTrue(v1alpha1.ConditionReady), "not Ready"
				}
				var next []v1alpha1.TrafficTarget
				switch rnd.IntN(4) {
				case 0:
					next, err = rollout.SetNext(cur, []int{0, 5, 50, 100}[rnd.IntN(4)], ready)
				case 1:
					next, _, err = rollout.Promote(cur, []int{5, 25, 50, 100}, ready)
				case 2:
					next, err = rollout.Abort(cur, ready)
				case 3:
					next, err = rollout.Finish(cur, ready)
				}
				if err == nil {
					f.setRouteTraffic("web", next)
				}
			case 5: // a hand-written route edit pinning some revision
				if _, err := f.store.Get(f.ctx, store.KindRoute, "default", "web"); err != nil {
					continue
				}
				rev := reconcile.RevisionName("web", int64(1+rnd.IntN(gen)))
				f.setRouteTraffic("web", []v1alpha1.TrafficTarget{tt("current", rev, 100)})
			case 6: // switch strategy
				o, _ := f.store.Get(f.ctx, store.KindService, "default", "web")
				s := o.(*v1alpha1.Service).DeepCopy()
				s.Spec.Rollout.Strategy = strategies[rnd.IntN(3)]
				s.Spec.Rollout.SetDefaults()
				if _, err := f.store.Update(f.ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			for range 1 + rnd.IntN(3) {
				if _, errs := f.r.Pass(f.ctx, ""); len(errs) > 0 {
					t.Fatalf("seed %d step %d: %v", seed, step, errs)
				}
			}
		}
		if statuses < 5 {
			t.Fatalf("seed %d: only %d route statuses written", seed, statuses)
		}
	}
	if gradual == 0 {
		t.Error("no route status was written during a gradual move: the sequences do not exercise rollout durations")
	}
	t.Logf("%d route statuses written during gradual moves", gradual)
}

// TestPinnedRevisionLosingReadinessKeepsItsShare is the case the invariant
// allows: traffic is never moved onto an unready revision, and a pinned
// one that loses readiness keeps its share; the route says so.
func TestPinnedRevisionLosingReadinessKeepsItsShare(t *testing.T) {
	f := newFixture(t, reconcile.Options{})
	f.create(service("web", "img:1", v1alpha1.StrategyManual))
	f.converge()
	r1 := reconcile.RevisionName("web", 1)
	f.rt.Fail("default", r1, "ExitCode:137", "OOMKilled")
	if _, errs := f.r.Pass(f.ctx, ""); len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, errs := f.r.Pass(f.ctx, ""); len(errs) > 0 {
		t.Fatal(errs)
	}
	rt := f.route("web")
	if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("current", r1, 100)}, rt.Status.Traffic); d != "" {
		t.Error(d)
	}
	c := rt.Status.Conditions.Get(v1alpha1.ConditionRolloutComplete)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != v1alpha1.ReasonRevisionNotReady {
		t.Errorf("RolloutComplete = %+v, want False RevisionNotReady", c)
	}
	p, _ := f.tr.Plan("default", "web")
	if len(p.Split) != 1 || p.Split[0].Ready || len(p.Hosts) != 0 {
		t.Errorf("plan = %+v: the share stays, marked not Ready, and the named host is not addressable", p)
	}
}
