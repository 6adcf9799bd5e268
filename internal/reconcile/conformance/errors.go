package conformance

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// errorScenarios follow the seed's errors.md.
func errorScenarios(t *testing.T, nb NewBackend) {
	t.Run("Revision not found by Route", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedConfigPOST)
		e.converge()
		e.create(`apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: abc
spec:
  rollout:
    traffic:
    - revisionName: my-service-00001
      name: current
      percent: 100
    - revisionName: qyzz
      name: next
      percent: 0
`)
		e.converge()
		rt := e.route("abc")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(rev("my-service", 1), "current", 100), target("Not found", "next", 0)}, rt.Status.Traffic)
		diff(t, "TrafficDropped", [3]string{"True", "RevisionMissing", `Revision "qyzz" referenced in rollout.traffic not found; point the route at an existing revision.`},
			cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped))
		e.checkPlan("abc", []reconcile.Backend{{Revision: rev("my-service", 1), Percent: 100, Ready: true}},
			map[string]string{e.host("current", "abc"): rev("my-service", 1)})
	})
	t.Run("Configuration not found by Route", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedRoutePOST)
		e.converge()
		rt := e.route("my-service")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target("Not found", "", 100)}, rt.Status.Traffic)
		diff(t, "TrafficDropped", [2]string{"True", "ConfigurationMissing"}, [2]string{cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped)[0], cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped)[1]})
		diff(t, "RolloutComplete", "False", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
		e.checkPlan("my-service", nil, nil)
	})
	t.Run("Container image fails at startup", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedRoutePOST)
		e.create(seedConfigPOST)
		e.converge()
		r2 := rev("my-service", 2)
		e.b.Fail(ns, r2, "ExitCode:127", "Container failed with: SyntaxError: Unexpected identifier")
		if err := e.patch(reconcile.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
			t.Fatal(err)
		}
		e.converge()
		diff(t, "revision Ready", [3]string{"False", "ExitCode:127", "Container failed with: SyntaxError: Unexpected identifier"},
			cond(e.revision(r2).Status.Conditions, v1alpha1.ConditionReady))
		c := e.config("my-service")
		diff(t, "LatestRevisionReady copies the reason", [3]string{"False", "ExitCode:127", "Container failed with: SyntaxError: Unexpected identifier"},
			cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady))
		diff(t, "latestReady stays", rev("my-service", 1), c.Status.LatestReadyRevisionName)
		diff(t, "traffic stays", []v1alpha1.TrafficTarget{target(rev("my-service", 1), "", 100)}, e.route("my-service").Status.Traffic)
	})
	t.Run("Latest Revision of a Configuration deleted", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedConfigPOST)
		e.converge()
		r2 := rev("my-service", 2)
		e.b.Hold(ns, r2)
		if err := e.patch(reconcile.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if err := e.b.Store.Delete(e.ctx, reconcile.KindRevision, ns, rev("my-service", 1)); err != nil {
			t.Fatal(err)
		}
		e.settle()
		c := e.config("my-service")
		diff(t, "latestReady cleared", "", c.Status.LatestReadyRevisionName)
		diff(t, "LatestRevisionReady", [3]string{"False", "RevisionMissing", "The latest Revision appears to have been deleted."},
			cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady))
	})
	t.Run("Deployment progressing slowly", func(t *testing.T) {
		now := timeNow()
		e := newEnv(t, nb, reconcile.Options{Now: now.Now})
		e.b.Hold(ns, rev("my-service", 1))
		e.create(seedConfigPOST)
		e.settle()
		now.Advance(121)
		e.settle()
		diff(t, "Ready", [3]string{"False", "ProgressDeadlineExceeded", "Unable to create pods for more than 120 seconds."},
			cond(e.revision(rev("my-service", 1)).Status.Conditions, v1alpha1.ConditionReady))
		e.b.Release(ns, rev("my-service", 1))
		e.converge()
		diff(t, "Ready once it starts after all", "True", cond(e.revision(rev("my-service", 1)).Status.Conditions, v1alpha1.ConditionReady)[0])
	})
}
