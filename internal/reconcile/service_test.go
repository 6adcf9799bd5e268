package reconcile_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

func TestServiceStrategies(t *testing.T) {
	r := func(n int) string { return reconcile.RevisionName("web", int64(n)) }
	t.Run("automatic follows the latest ready revision", func(t *testing.T) {
		f := newFixture(t, reconcile.Options{})
		f.create(service("web", "img:1", v1alpha1.StrategyAutomatic))
		f.converge()
		f.setImage("web", "img:2")
		f.converge()
		rt := f.route("web")
		if d := cmp.Diff([]v1alpha1.TrafficTarget{{ConfigurationName: "web", Percent: 100}}, rt.Spec.Rollout.Traffic); d != "" {
			t.Error(d)
		}
		if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("", r(2), 100)}, rt.Status.Traffic); d != "" {
			t.Error(d)
		}
		o, _ := f.store.Get(f.ctx, store.KindService, "default", "web")
		svc := o.(*v1alpha1.Service)
		if svc.Status.LatestReadyRevisionName != r(2) || svc.Status.Domain != "web.default.example.com" || !svc.Status.Conditions.IsTrue(v1alpha1.ConditionReady) {
			t.Errorf("service status = %+v", svc.Status)
		}
	})
	t.Run("manual stages next at 0% and moves nothing", func(t *testing.T) {
		f := newFixture(t, reconcile.Options{})
		f.create(service("web", "img:1", v1alpha1.StrategyManual))
		f.converge()
		if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("current", r(1), 100)}, f.route("web").Status.Traffic); d != "" {
			t.Errorf("first revision (-want +got):\n%s", d)
		}
		f.setImage("web", "img:2")
		f.converge()
		want := []v1alpha1.TrafficTarget{tt("current", r(1), 100), tt("next", r(2), 0)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("after a new revision (-want +got):\n%s", d)
		}
		p, _ := f.tr.Plan("default", "web")
		if p.Hosts["next.web.default.example.com"] != (reconcile.NamedTarget{Tag: "next", Revision: r(2)}) || p.Hosts["current.web.default.example.com"] != (reconcile.NamedTarget{Tag: "current", Revision: r(1)}) {
			t.Errorf("hosts = %v", p.Hosts)
		}
	})
	t.Run("canary starts at the first step; abort is not re-staged; finish", func(t *testing.T) {
		f := newFixture(t, reconcile.Options{})
		f.create(service("web", "img:1", v1alpha1.StrategyCanary))
		f.converge()
		f.setImage("web", "img:2")
		f.converge()
		want := []v1alpha1.TrafficTarget{tt("current", r(1), 95), tt("next", r(2), 5)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("canary (-want +got):\n%s", d)
		}
		aborted, err := rollout.Abort(f.route("web").Spec.Rollout.Traffic, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.setRouteTraffic("web", aborted)
		f.converge()
		want = []v1alpha1.TrafficTarget{tt("current", r(1), 100), tt("next", r(2), 0)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("after abort the service must not re-stage the aborted revision (-want +got):\n%s", d)
		}
		f.setImage("web", "img:3")
		f.converge()
		want = []v1alpha1.TrafficTarget{tt("current", r(1), 95), tt("next", r(3), 5)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("a newer revision is staged (-want +got):\n%s", d)
		}
		done, err := rollout.Finish(f.route("web").Spec.Rollout.Traffic, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.setRouteTraffic("web", done)
		f.converge()
		want = []v1alpha1.TrafficTarget{tt("current", r(3), 100), tt("next", r(3), 0)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("finish (-want +got):\n%s", d)
		}
	})
	t.Run("a pull request's revision given next is not displaced by the latest again", func(t *testing.T) {
		f := newFixture(t, reconcile.Options{})
		f.create(service("web", "img:1", v1alpha1.StrategyCanary))
		f.converge()
		f.setImage("web", "img:2")
		f.converge() // web-00002 is next at 5%
		pr := &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: "web-pr-7", Namespace: "default"}}
		pr.Spec.RevisionTemplate.Spec.Container.Image = "img:pr7"
		pr.SetDefaults()
		f.create(pr)
		f.converge()
		prRev := reconcile.RevisionName("web-pr-7", 1)
		staged, err := rollout.Stage(f.route("web").Spec.Rollout.Traffic, rollout.Next, prRev, nil)
		if err != nil {
			t.Fatal(err)
		}
		moved, err := rollout.SetNext(staged, 50, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.setRouteTraffic("web", moved) // "/rollout 50" on the pull request
		f.converge()
		want := []v1alpha1.TrafficTarget{tt("current", r(1), 50), tt("next", prRev, 50)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("the strategy staged its latest revision over the pull request's (-want +got):\n%s", d)
		}
		f.setImage("web", "img:3") // a newer revision of the service is staged as usual
		f.converge()
		want = []v1alpha1.TrafficTarget{tt("current", r(1), 95), tt("next", r(3), 5)}
		if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
			t.Errorf("a newer revision (-want +got):\n%s", d)
		}
	})
	t.Run("a revision that fails to start never takes traffic", func(t *testing.T) {
		f := newFixture(t, reconcile.Options{})
		f.create(service("web", "img:1", v1alpha1.StrategyCanary))
		f.converge()
		f.rt.Fail("default", r(2), "ExitCode:1", "panic: boom")
		f.setImage("web", "img:2")
		f.converge()
		if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("current", r(1), 100)}, f.route("web").Status.Traffic); d != "" {
			t.Error(d)
		}
		o, _ := f.store.Get(f.ctx, store.KindService, "default", "web")
		if c := o.(*v1alpha1.Service).Status.Conditions.Get(v1alpha1.ConditionReady); c == nil || c.Reason != "ExitCode:1" {
			t.Errorf("service Ready = %+v, want the revision's failure", c)
		}
	})
	t.Run("named host template", func(t *testing.T) {
		f := newFixture(t, reconcile.Options{TagHostTemplate: "{tag}-{route}.{namespace}.{domain}", DomainSuffix: "apps.example.org"})
		f.create(service("web", "img:1", v1alpha1.StrategyManual))
		f.converge()
		p, _ := f.tr.Plan("default", "web")
		if p.Hosts["current-web.default.apps.example.org"] != (reconcile.NamedTarget{Tag: "current", Revision: r(1)}) || p.Domain != "web.default.apps.example.org" {
			t.Errorf("plan = %+v", p)
		}
	})
}

func TestBadOptions(t *testing.T) {
	if _, err := reconcile.New(nil, nil, nil, nil, reconcile.Options{TagHostTemplate: "{tag}.{domain}"}); err == nil {
		t.Error("a host template without {route} was accepted")
	}
}
