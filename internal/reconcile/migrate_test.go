package reconcile_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// pass runs one pass at the fixture's clock and returns the route.
func (f *fixture) pass(route string) *v1alpha1.Route {
	f.t.Helper()
	if _, errs := f.r.Pass(f.ctx, ""); len(errs) > 0 {
		f.t.Fatal(errs)
	}
	return f.route(route)
}

// TestServiceRolloutDuration: a Service's spec.rollout.duration becomes
// its Route's rollout-duration, and its automatic rollout moves in steps
// whose size follows the time since the move began, ending at 100%.
func TestServiceRolloutDuration(t *testing.T) {
	r := func(n int) string { return reconcile.RevisionName("web", int64(n)) }
	f := newFixture(t, reconcile.Options{})
	svc := service("web", "img:1", v1alpha1.StrategyAutomatic)
	svc.Spec.Rollout.Duration = &metav1.Duration{Duration: 100 * time.Second}
	f.create(svc)
	f.converge()
	rt := f.route("web")
	if got := rt.Annotations[v1alpha1.RolloutDurationAnnotationKey]; got != "1m40s" {
		t.Fatalf("route annotation %s = %q, want 1m40s", v1alpha1.RolloutDurationAnnotationKey, got)
	}
	if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("", r(1), 100)}, rt.Status.Traffic); d != "" {
		t.Fatalf("first revision at once (-want +got):\n%s", d)
	}
	f.setImage("web", "img:2")
	for range 4 {
		f.pass("web")
	}
	steps := []struct {
		after time.Duration
		want  []v1alpha1.TrafficTarget
	}{
		{0, []v1alpha1.TrafficTarget{tt("", r(1), 100)}},
		{time.Second, []v1alpha1.TrafficTarget{tt("", r(1), 99), tt("", r(2), 1)}},
		{1500 * time.Millisecond, []v1alpha1.TrafficTarget{tt("", r(1), 99), tt("", r(2), 1)}},
		{33 * time.Second, []v1alpha1.TrafficTarget{tt("", r(1), 67), tt("", r(2), 33)}},
		{99 * time.Second, []v1alpha1.TrafficTarget{tt("", r(1), 1), tt("", r(2), 99)}},
		{100 * time.Second, []v1alpha1.TrafficTarget{tt("", r(2), 100)}},
	}
	start := f.now
	for _, s := range steps {
		f.now = start.Add(s.after)
		rt := f.pass("web")
		if d := cmp.Diff(s.want, rt.Status.Traffic); d != "" {
			t.Errorf("after %s (-want +got):\n%s", s.after, d)
		}
		p, _ := f.tr.Plan("default", "web")
		var applied []v1alpha1.TrafficTarget
		for _, b := range p.Split {
			applied = append(applied, tt("", b.Revision, b.Percent))
		}
		if d := cmp.Diff(s.want, applied); d != "" {
			t.Errorf("after %s, applied split differs from status (-status +applied):\n%s", s.after, d)
		}
		done := s.after >= 100*time.Second
		if got := rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete); got != done {
			t.Errorf("after %s: RolloutComplete = %v, want %v", s.after, got, done)
		}
		if got := rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutInProgress); got == done {
			t.Errorf("after %s: RolloutInProgress = %v, want %v", s.after, got, !done)
		}
	}

	// Without the duration, the annotation goes and moves are at once.
	o, _ := f.store.Get(f.ctx, store.KindService, "default", "web")
	s := o.(*v1alpha1.Service).DeepCopy()
	s.Spec.Rollout.Duration = nil
	if _, err := f.store.Update(f.ctx, s); err != nil {
		t.Fatal(err)
	}
	f.converge()
	if _, ok := f.route("web").Annotations[v1alpha1.RolloutDurationAnnotationKey]; ok {
		t.Error("the annotation stayed after spec.rollout.duration was removed")
	}
	f.setImage("web", "img:3")
	f.converge()
	if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("", r(3), 100)}, f.route("web").Status.Traffic); d != "" {
		t.Errorf("without a duration, at once (-want +got):\n%s", d)
	}
}

// TestRolloutDurationRefused: a bad annotation is refused by validation
// and, written past it, by the reconciler, which keeps serving.
func TestRolloutDurationRefused(t *testing.T) {
	for _, v := range []string{"soon", "-5s", "10"} {
		rt := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default",
			Annotations: map[string]string{v1alpha1.RolloutDurationAnnotationKey: v}}}
		rt.Spec.Rollout.Traffic = []v1alpha1.TrafficTarget{{ConfigurationName: "web", Percent: 100}}
		errs := rt.Validate()
		if len(errs) != 1 || errs[0].Field != "metadata.annotations[elafros.dev/rollout-duration]" {
			t.Errorf("%q: errors = %v, want one naming metadata.annotations[elafros.dev/rollout-duration]", v, errs)
		}
	}
	svc := service("web", "img:1", v1alpha1.StrategyCanary)
	svc.Spec.Rollout.Duration = &metav1.Duration{Duration: time.Minute}
	if errs := svc.Validate(); len(errs) != 1 || errs[0].Field != "spec.rollout.duration" {
		t.Errorf("duration with canary: errors = %v, want one on spec.rollout.duration", errs)
	}
}
