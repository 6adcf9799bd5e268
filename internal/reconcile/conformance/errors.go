package conformance

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
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
		diff(t, "TrafficDropped", [3]string{"True", "RevisionMissing", `Revision 'qyzz' referenced in rollout.traffic not found; point the route at an existing revision.`},
			cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped))
		diff(t, "RolloutInProgress", [3]string{"False", "", ""}, cond(rt.Status.Conditions, v1alpha1.ConditionRolloutInProgress))
		e.checkPlan("abc", []reconcile.Backend{{Revision: rev("my-service", 1), Percent: 100, Ready: true}},
			map[string]string{e.host("current", "abc"): rev("my-service", 1)})
	})
	t.Run("Configuration not found by Route", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedRoutePOST)
		e.converge()
		rt := e.route("my-service")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target("Not found", "", 100)}, rt.Status.Traffic)
		// errors.md's message says "Revision 'my-service'" here, a slip of
		// the seed (my-service is the Configuration): we say Configuration.
		diff(t, "TrafficDropped", [3]string{"True", "ConfigurationMissing", "Configuration 'my-service' referenced in rollout.traffic not found; create it or change the route."},
			cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped))
		diff(t, "RolloutInProgress", [3]string{"False", "", ""}, cond(rt.Status.Conditions, v1alpha1.ConditionRolloutInProgress))
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
		if err := e.patch(store.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
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
		r1 := rev("my-service", 1)
		e.create(seedRoutePOST)
		e.create(seedConfigPOST)
		e.converge()
		e.b.Hold(ns, r1) // when it is created again, it starts and waits
		if err := e.b.Store.Delete(e.ctx, store.KindRevision, ns, r1); err != nil {
			t.Fatal(err)
		}
		e.settle()
		c := e.config("my-service")
		diff(t, "latestReady cleared, latestCreated kept", [2]string{"", r1}, [2]string{c.Status.LatestReadyRevisionName, c.Status.LatestCreatedRevisionName})
		diff(t, "LatestRevisionReady", [3]string{"False", "RevisionMissing", `The latest Revision appears to have been deleted. Revision "my-service-00001" is created again for generation 1; traffic that followed it is dropped until it is Ready.`},
			cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady))
		rt := e.route("my-service")
		diff(t, "route traffic", []v1alpha1.TrafficTarget{target("Not found", "", 100)}, rt.Status.Traffic)
		diff(t, "TrafficDropped", [3]string{"True", "RevisionMissing", "Revision 'my-service-00001' referenced in rollout.traffic not found: it was the latest Revision of Configuration 'my-service' and appears to have been deleted."},
			cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped))
		diff(t, "RolloutInProgress", [3]string{"False", "", ""}, cond(rt.Status.Conditions, v1alpha1.ConditionRolloutInProgress))
		diff(t, "RolloutComplete", [2]string{"False", "RevisionMissing"}, [2]string{cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0], cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[1]})
		e.checkPlan("my-service", nil, nil)

		// Recovery: the revision created again for the same generation
		// becomes Ready, and the route serves it.
		e.b.Release(ns, r1)
		e.converge()
		c = e.config("my-service")
		diff(t, "recovered latestReady", r1, c.Status.LatestReadyRevisionName)
		diff(t, "recovered LatestRevisionReady", "True", cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady)[0])
		rt = e.route("my-service")
		diff(t, "recovered traffic", []v1alpha1.TrafficTarget{target(r1, "", 100)}, rt.Status.Traffic)
		diff(t, "TrafficDropped gone", [3]string{}, cond(rt.Status.Conditions, v1alpha1.ConditionTrafficDropped))
		diff(t, "RolloutComplete", "True", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
		e.checkPlan("my-service", []reconcile.Backend{{Revision: r1, Percent: 100, Ready: true}}, nil)
	})
	t.Run("Latest ready Revision deleted while a newer one starts", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedConfigPOST)
		e.converge()
		r2 := rev("my-service", 2)
		e.b.Hold(ns, r2)
		if err := e.patch(store.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if err := e.b.Store.Delete(e.ctx, store.KindRevision, ns, rev("my-service", 1)); err != nil {
			t.Fatal(err)
		}
		e.settle()
		c := e.config("my-service")
		diff(t, "latestReady cleared", "", c.Status.LatestReadyRevisionName)
		diff(t, "LatestRevisionReady", [3]string{"False", "RevisionMissing", `The latest Revision appears to have been deleted. Revision "my-service-00001", the latest Ready one, is gone; traffic that followed it is dropped until "my-service-00002" is Ready.`},
			cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady))
	})
	t.Run("Build failed", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		e.create(seedConfigBuildPOST)
		e.settle()
		r1 := rev("my-built", 1)
		if err := e.b.FailBuild(ns, r1, "BuildStepFailed", "Step build failed with error message: main.go:3:1: syntax error"); err != nil {
			t.Fatal(err)
		}
		e.converge()
		r := e.revision(r1)
		diff(t, "Ready", [3]string{"False", "ContainerMissing", "Unable to start because container is missing and build failed. Step build failed with error message: main.go:3:1: syntax error"},
			cond(r.Status.Conditions, v1alpha1.ConditionReady))
		diff(t, "BuildFailed", [3]string{"True", "BuildStepFailed", "Step build failed with error message: main.go:3:1: syntax error"},
			cond(r.Status.Conditions, v1alpha1.ConditionBuildFailed))
		diff(t, "LatestRevisionReady copies Ready", cond(r.Status.Conditions, v1alpha1.ConditionReady), cond(e.config("my-built").Status.Conditions, v1alpha1.ConditionLatestRevisionReady))
	})
	t.Run("Container image not present in repository", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		image := "gcr.io/elafros-samples/my-service:deleted"
		if a, ok := e.b.Runtime.(interface{ Absent(string, error) }); ok {
			a.Absent(image, errors.New("MANIFEST_UNKNOWN: manifest unknown"))
		} // a real registry simply has no such tag
		e.create(strings.Replace(seedConfigPOST, "gcr.io/elafros-samples/my-service:v1", image, 1))
		e.until1("the image reported missing", func() bool {
			return e.readyReason(rev("my-service", 1)) == v1alpha1.ReasonContainerMissing
		})
		r := e.revision(rev("my-service", 1))
		ready, failed := cond(r.Status.Conditions, v1alpha1.ConditionReady), cond(r.Status.Conditions, v1alpha1.ConditionFailed)
		prefix := "Unable to fetch image '" + image + "': "
		if ready[0] != "False" || !strings.HasPrefix(ready[2], prefix) || len(ready[2]) == len(prefix) {
			t.Errorf("Ready = %q, want False ContainerMissing %q<the registry's error>", ready, prefix)
		}
		diff(t, "Failed repeats Ready", [3]string{"True", ready[1], ready[2]}, failed)
	})
	t.Run("Resource exhausted while creating a revision", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		exhaust := e.b.Exhaust
		if exhaust == nil {
			x, ok := e.b.Runtime.(interface{ Exhaust(string, error) func() })
			if !ok {
				t.Skip("the backend cannot exhaust its resources")
			}
			exhaust = func(ns string) func() {
				return x.Exhaust(ns, errors.New(`exceeded quota: elafros-test, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0`))
			}
		}
		restore := exhaust(ns)
		e.create(seedConfigPOST)
		e.until1("the revision reported NoDeployment", func() bool {
			return e.readyReason(rev("my-service", 1)) == v1alpha1.ReasonNoDeployment
		})
		ready := cond(e.revision(rev("my-service", 1)).Status.Conditions, v1alpha1.ConditionReady)
		if ready[0] != "False" || !strings.HasPrefix(ready[2], "The controller could not create a deployment named ") || !strings.Contains(ready[2], "quota") {
			t.Errorf("Ready = %q, want False NoDeployment \"The controller could not create a deployment named <name>.\" with the quota's refusal", ready)
		}
		restore()
		e.converge()
		diff(t, "Ready once resources are back", "True", cond(e.revision(rev("my-service", 1)).Status.Conditions, v1alpha1.ConditionReady)[0])
	})
	t.Run("Traffic shift stuck", func(t *testing.T) {
		now := timeNow()
		e := newEnv(t, nb, reconcile.Options{Now: now.Now})
		br, ok := e.b.Traffic.(interface {
			Break(error)
			Repair()
		})
		if !ok {
			t.Skip("the backend's traffic layer cannot be made to refuse a split")
		}
		e.create(seedRoutePOST)
		e.create(seedConfigPOST)
		e.converge()
		br.Break(errors.New("gateway refused the route"))
		if err := e.patch(store.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
			t.Fatal(err)
		}
		// Once the new revision is Ready, its split is refused.
		ipOf := func() [3]string {
			return cond(e.route("my-service").Status.Conditions, v1alpha1.ConditionRolloutInProgress)
		}
		for deadline := time.Now().Add(90 * time.Second); ipOf()[1] != reconcile.ReasonTrafficNotApplied; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("RolloutInProgress = %q after 90s, want reason %s", ipOf(), reconcile.ReasonTrafficNotApplied)
			}
			e.passes(1)
		}
		rt := e.route("my-service")
		diff(t, "status keeps the split really served", []v1alpha1.TrafficTarget{target(rev("my-service", 1), "", 100)}, rt.Status.Traffic)
		// The backend's wording of the refusal follows the seed's text.
		if ip := ipOf(); ip[0] != "True" || !strings.HasPrefix(ip[2], "Unable to update traffic split: ") || !strings.Contains(ip[2], "gateway refused the route") {
			t.Errorf("RolloutInProgress before the deadline = %q, want True %s \"Unable to update traffic split: …gateway refused the route…\"", ip, reconcile.ReasonTrafficNotApplied)
		}
		now.Advance(121)
		e.passes(1)
		if ip := ipOf(); ip[0] != "True" || ip[1] != v1alpha1.ReasonProgressDeadlineExceeded ||
			!strings.HasPrefix(ip[2], "Unable to update traffic split for more than 120 seconds. ") || !strings.Contains(ip[2], "gateway refused the route") {
			t.Errorf("RolloutInProgress after 120s = %q, want True ProgressDeadlineExceeded \"Unable to update traffic split for more than 120 seconds. …\"", ip)
		}
		br.Repair()
		e.converge()
		rt = e.route("my-service")
		diff(t, "traffic once applied", []v1alpha1.TrafficTarget{target(rev("my-service", 2), "", 100)}, rt.Status.Traffic)
		diff(t, "RolloutInProgress", [3]string{"False", "", ""}, cond(rt.Status.Conditions, v1alpha1.ConditionRolloutInProgress))
		diff(t, "RolloutComplete", "True", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
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

// until1 runs passes until ok, within a real-time deadline.
func (e *env) until1(what string, ok func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("no %s after 90s", what)
		}
		if _, errs := e.r.Pass(e.ctx, ns); len(errs) > 0 {
			e.t.Fatal(errs)
		}
	}
}

// passes runs n passes, errors allowed (a broken traffic layer fails
// every route reconcile).
func (e *env) passes(n int) {
	for range n {
		e.r.Pass(e.ctx, ns)
	}
}

// readyReason is a revision's Ready reason, "" while it does not exist.
func (e *env) readyReason(name string) string {
	o, err := e.b.Store.Get(e.ctx, store.KindRevision, ns, name)
	if err != nil {
		return ""
	}
	return cond(o.(*v1alpha1.Revision).Status.Conditions, v1alpha1.ConditionReady)[1]
}
