package reconcile_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

func TestTypoInRouteDoesNotCauseAnOutage(t *testing.T) {
	f := newFixture(t, reconcile.Options{})
	f.create(service("web", "img:1", v1alpha1.StrategyManual))
	f.converge()
	r1 := reconcile.RevisionName("web", 1)
	f.setRouteTraffic("web", []v1alpha1.TrafficTarget{tt("current", "web-0001", 100)}) // a typo
	f.converge()
	rt := f.route("web")
	if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("current", r1, 100)}, rt.Status.Traffic); d != "" {
		t.Errorf("the previous split must keep serving (-want +got):\n%s", d)
	}
	if c := rt.Status.Conditions.Get(v1alpha1.ConditionTrafficDropped); c == nil || c.Reason != v1alpha1.ReasonRevisionMissing {
		t.Errorf("TrafficDropped = %+v, want True RevisionMissing", c)
	}
}

func TestInvalidRouteKeepsServing(t *testing.T) {
	f := newFixture(t, reconcile.Options{})
	f.create(service("web", "img:1", v1alpha1.StrategyManual))
	f.converge()
	r1 := reconcile.RevisionName("web", 1)
	f.setRouteTraffic("web", []v1alpha1.TrafficTarget{tt("current", r1, 60), tt("next", r1, 30)}) // past the API
	f.converge()
	rt := f.route("web")
	if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("current", r1, 100)}, rt.Status.Traffic); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	c := rt.Status.Conditions.Get(v1alpha1.ConditionRolloutComplete)
	if c == nil || c.Reason != "InvalidSpec" || !strings.Contains(c.Message, "the route must have traffic percent sum equal to 100, got 90") {
		t.Errorf("RolloutComplete = %+v", c)
	}
}

func TestGarbageCollection(t *testing.T) {
	f := newFixture(t, reconcile.Options{RetireAfter: 10 * time.Minute, KeepRevisions: 2, MaxRevisions: 4})
	f.create(service("web", "img:1", v1alpha1.StrategyAutomatic))
	f.converge()
	for i := 2; i <= 7; i++ {
		f.setImage("web", fmt.Sprintf("img:%d", i))
		f.converge()
	}
	// Pin an old revision under a name: it must survive everything.
	rt := f.route("web")
	pinned := reconcile.RevisionName("web", 2)
	f.setRouteTraffic("web", append(rt.Spec.Rollout.Traffic, tt("old", pinned, 0)))
	f.converge()
	f.now = f.now.Add(11 * time.Minute)
	f.converge()

	rev := func(n int) (*v1alpha1.Revision, bool) {
		o, err := f.store.Get(f.ctx, store.KindRevision, "default", reconcile.RevisionName("web", int64(n)))
		if apierrors.IsNotFound(err) {
			return nil, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return o.(*v1alpha1.Revision), true
	}
	var kept []int
	for n := 1; n <= 7; n++ {
		if _, ok := rev(n); ok {
			kept = append(kept, n)
		}
	}
	// 7 revisions, at most 4 kept: 7 and 6 (the newest two), 2 (named
	// target) and the youngest unreferenced one left when the oldest go.
	if d := cmp.Diff([]int{2, 5, 6, 7}, kept); d != "" {
		t.Errorf("revisions kept (-want +got):\n%s", d)
	}
	for _, n := range []int{5, 6} {
		r, _ := rev(n)
		if r.Annotations[reconcile.RetiredAnnotation] != "true" || f.rt.Retired("default", r.Name) == 0 {
			t.Errorf("revision %d: unreferenced for 11m but not retired (annotations %v)", n, r.Annotations)
		}
		if c := r.Status.Conditions.Get(reconcile.ConditionActive); c == nil || c.Reason != v1alpha1.ReasonInactive {
			t.Errorf("revision %d: Active = %+v", n, c)
		}
	}
	for _, n := range []int{2, 7} {
		r, _ := rev(n)
		if _, running := f.rt.Running("default", r.Name); !running || r.Annotations[reconcile.RetiredAnnotation] != "" {
			t.Errorf("referenced revision %d was retired", n)
		}
	}
	// Referencing a retired revision again brings it back.
	r5 := reconcile.RevisionName("web", 5)
	f.setRouteTraffic("web", append(f.route("web").Spec.Rollout.Traffic, tt("back", r5, 0)))
	f.converge()
	if _, running := f.rt.Running("default", r5); !running {
		t.Error("a retired revision referenced again was not restarted")
	}
}

// TestRunReactsToChanges drives the continuous driver (watch, work queue)
// and waits, with a deadline, for it to converge after each change.
func TestRunReactsToChanges(t *testing.T) {
	f := newFixture(t, reconcile.Options{Now: time.Now})
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.r.Run(ctx, reconcile.RunOptions{Workers: 2, Resync: time.Minute}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, what, func() (bool, string) { return ok(), "" })
	}
	serving := func(rev string) func() bool {
		return func() bool {
			o, err := f.store.Get(f.ctx, store.KindRoute, "default", "web")
			if err != nil {
				return false
			}
			st := o.(*v1alpha1.Route).Status
			return len(st.Traffic) == 1 && st.Traffic[0].RevisionName == rev && st.Traffic[0].Percent == 100 &&
				st.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete)
		}
	}
	f.create(service("web", "img:1", v1alpha1.StrategyAutomatic))
	waitFor("the first revision to serve", serving(reconcile.RevisionName("web", 1)))
	if _, err := f.store.Patch(f.ctx, store.KindService, "default", "web", types.MergePatchType,
		[]byte(`{"spec":{"revisionTemplate":{"spec":{"container":{"image":"img:2"}}}}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor("the second revision to serve", serving(reconcile.RevisionName("web", 2)))
	// A held revision becomes Ready later: the driver requeues and notices.
	r3 := reconcile.RevisionName("web", 3)
	f.rt.Hold("default", r3)
	if _, err := f.store.Patch(f.ctx, store.KindService, "default", "web", types.MergePatchType,
		[]byte(`{"spec":{"revisionTemplate":{"spec":{"container":{"image":"img:3"}}}}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor("the third revision to exist", func() bool {
		_, err := f.store.Get(f.ctx, store.KindRevision, "default", r3)
		return err == nil
	})
	f.rt.Release("default", r3)
	waitFor("the third revision to serve", serving(r3))
}
