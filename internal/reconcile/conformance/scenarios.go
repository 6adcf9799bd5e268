package conformance

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// Bodies from the seed. Complete ones are verbatim; the elided ones
// ("metadata: ...", "image: gcr.io/...") are completed with the values the
// seed's text describes.
const (
	seedRoutePOST = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - configurationName: my-service  # named reference to Configuration
      percent: 100  # automatically activate new Revisions from the configuration
`
	seedConfigPOST = `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service
spec:
  revisionTemplate:
    spec:
      container:
        image: gcr.io/elafros-samples/my-service:v1
        env:
        - name: FOO
          value: bar
        - name: HELLO
          value: world
`
	seedConfigPATCHImage = `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service  # by convention, same name as the service
spec:
  revisionTemplate:  # template for building Revision
    spec:
      container:
        image: gcr.io/elafros-samples/my-service:v2  # new image
`
	seedRoutePATCHPin = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - revisionName: my-service-00002 # pin a specific revision, i.e. the current one
      percent: 100
`
	seedConfigPATCHEnv = `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service
spec:
  revisionTemplate:
    spec:
      container:
        env: # k8s-style strategic merge patch, updating a single list value
        - name: HELLO
          value: blurg # changed value
`
	seedRoutePATCHNext = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - revisionName: my-service-00002
      name: current  # addressable as current.my-service.default.mydomain.com
      percent: 100
    - revisionName: my-service-00003
      name: next  # addressable as next.my-service.default.mydomain.com
      percent: 0 # no traffic yet
`
	seedRoutePATCHTypo = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    Traffic: # percentages must total 100%
    - revisionName: my-service-00002
      name: current
      percent: 0
    - revisionName: my-service-00003
      name: next
      percent: 100 # migrate traffic fully to the next revision
`
	seedRoutePATCHAll = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic: # percentages must total 100%
    - revisionName: my-service-00002
      name: current
      percent: 0
    - revisionName: my-service-00003
      name: next
      percent: 100 # migrate traffic fully to the next revision
`
	seedRoutePATCHFinish = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - revisionName: my-service-00003 # update for the next rollout, current = next
      name: current
      percent: 100
    - revisionName: my-service-00003 # optional: leave next as also referring to ghi
      name: next
      percent: 0
`
	seedConfigBuildPOST = `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-built
spec:
  build:  # build.dev/v1alpha1.BuildTemplateSpec
    source:
      # oneof git|gcs|custom:
      git:
        url: https://github.com/elafros/sample-app
        commit: a6f92d1
    template:  # defines build template
      name: nodejs_8_9_4 # builder name
      namespace: build-templates
      arguments:
      - name: _IMAGE
        value: gcr.io/elafros-samples/my-built  # destination for image
  revisionTemplate:  # template for building Revision
    spec:
      container:  # k8s core.v1.Container
        image: gcr.io/elafros-samples/my-built  # Promise of a future build.
        env:  # Updated environment variables to go live with new source.
        - name: FOO
          value: bar
        - name: HELLO
          value: world
`
	seedFunctionPOST = `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-function
spec:
  build:  # build.dev/v1alpha1.BuildTemplateSpec
    source:
      # oneof git|gcs|custom
      git:
        url: https://...
        commit: ...
    template:  # defines build template
      name: go_1_9_fn  # function builder
      namespace: build-templates
      arguments:
      - name: _IMAGE
        value: gcr.io/...  # destination for image
      - name: _ENTRY_POINT
        value: index  # language dependent, function-only entrypoint

  revisionTemplate:  # template for building Revision
    metadata:
      labels:
        # One-of "function" or "app", convention for CLI/UI clients to list/select
        elafros.dev/type: "function"
    spec:
      container:  # k8s core.v1.Container
        image: gcr.io/...  # Promise of a future build. Same as supplied in
                           # build.template.arguments[_IMAGE]
        env:
        - name: FOO
          value: bar
        - name: HELLO
          value: world
      
      # serializes requests for function. Default value for functions
      concurrencyModel: SingleThreaded
      # max time allowed to respond to request
      timeoutSeconds: 20
`
)

// Run runs every scenario, each on a fresh backend.
func Run(t *testing.T, nb NewBackend) {
	t.Run("scenarios-2-1-3", func(t *testing.T) { scenarios213(t, nb) })
	t.Run("scenario-1-gradual", func(t *testing.T) { scenario1Gradual(t, nb) })
	t.Run("scenario-4-build", func(t *testing.T) { scenario4(t, nb) })
	t.Run("scenario-5-function", func(t *testing.T) { scenario5(t, nb) })
	t.Run("errors", func(t *testing.T) { errorScenarios(t, nb) })
}

// scenarios213 walks the seed's narrative on one service: scenario 2
// creates it, scenario 1 rolls out a new image, scenario 3 rolls out a
// config change by hand.
func scenarios213(t *testing.T, nb NewBackend) {
	e := newEnv(t, nb, reconcile.Options{})
	r1, r2, r3 := rev("my-service", 1), rev("my-service", 2), rev("my-service", 3)
	var routeGen int64

	t.Run("2/POST route and configuration", func(t *testing.T) {
		e.b.Hold(ns, r1)
		e.create(seedRoutePOST)
		e.create(seedConfigPOST)
		e.settle()
	})
	t.Run("2/GET revision: generated name, labels, Starting Instances", func(t *testing.T) {
		r := e.revision(r1)
		diff(t, "labels", map[string]string{v1alpha1.ConfigurationLabelKey: "my-service", v1alpha1.ConfigurationGenerationLabelKey: "1"}, r.Labels)
		diff(t, "Ready", [3]string{"False", v1alpha1.ReasonDeploying, "Starting Instances"}, cond(r.Status.Conditions, v1alpha1.ConditionReady))
		diff(t, "env", []corev1.EnvVar{{Name: "FOO", Value: "bar"}, {Name: "HELLO", Value: "world"}}, r.Spec.Container.Env)
		if len(r.OwnerReferences) != 1 || r.OwnerReferences[0].Kind != "Configuration" || r.OwnerReferences[0].Name != "my-service" {
			t.Errorf("ownerReferences = %+v", r.OwnerReferences)
		}
	})
	t.Run("2/GET configuration: latestCreated before it is ready", func(t *testing.T) {
		c := e.config("my-service")
		diff(t, "status", [3]any{r1, "", c.Generation}, [3]any{c.Status.LatestCreatedRevisionName, c.Status.LatestReadyRevisionName, c.Status.ObservedGeneration})
		if c.Generation != 1 {
			t.Errorf("generation = %d, want 1", c.Generation)
		}
	})
	t.Run("2/no traffic to a revision that is not Ready", func(t *testing.T) {
		rt := e.route("my-service")
		if len(rt.Status.Traffic) != 0 {
			t.Errorf("status.traffic = %+v before any revision is Ready", rt.Status.Traffic)
		}
		if got := cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete); got[0] != "False" {
			t.Errorf("RolloutComplete = %v, want False", got)
		}
	})
	t.Run("2/GET configuration: latestReady once Ready", func(t *testing.T) {
		e.b.Release(ns, r1)
		e.converge()
		c := e.config("my-service")
		diff(t, "status", [3]any{r1, r1, int64(1)}, [3]any{c.Status.LatestReadyRevisionName, c.Status.LatestCreatedRevisionName, c.Status.ObservedGeneration})
	})
	t.Run("2/GET route: serving the revision", func(t *testing.T) {
		rt := e.route("my-service")
		routeGen = rt.Generation
		diff(t, "domain", "my-service.default."+e.b.DomainSuffix, rt.Status.Domain)
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(r1, "", 100)}, rt.Status.Traffic)
		diff(t, "RolloutComplete", status(corev1.ConditionTrue), cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
		diff(t, "observedGeneration", rt.Generation, rt.Status.ObservedGeneration)
		e.checkPlan("my-service", []reconcile.Backend{{Revision: r1, Percent: 100, Ready: true}}, nil)
	})

	t.Run("1/PATCH configuration with a new image", func(t *testing.T) {
		e.b.Hold(ns, r2)
		if err := e.patch(reconcile.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
			t.Fatal(err)
		}
		e.settle()
		c := e.config("my-service")
		diff(t, "generation", int64(2), c.Generation)
		diff(t, "status", [3]any{r1, r2, int64(2)}, [3]any{c.Status.LatestReadyRevisionName, c.Status.LatestCreatedRevisionName, c.Status.ObservedGeneration})
	})
	t.Run("1/GET revision: new image, same config, new generation label", func(t *testing.T) {
		r := e.revision(r2)
		diff(t, "generation label", "2", r.Labels[v1alpha1.ConfigurationGenerationLabelKey])
		diff(t, "image", "gcr.io/elafros-samples/my-service:v2", r.Spec.Container.Image)
		diff(t, "env", []corev1.EnvVar{{Name: "FOO", Value: "bar"}, {Name: "HELLO", Value: "world"}}, r.Spec.Container.Env)
		diff(t, "the route still serves the old revision", []v1alpha1.TrafficTarget{target(r1, "", 100)}, e.route("my-service").Status.Traffic)
	})
	t.Run("1/GET route: the new revision serves 100% once Ready", func(t *testing.T) {
		e.b.Release(ns, r2)
		e.converge()
		rt := e.route("my-service")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(r2, "", 100)}, rt.Status.Traffic)
		diff(t, "RolloutComplete", "True", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
		diff(t, "route generation unchanged", routeGen, rt.Generation)
		e.checkPlan("my-service", []reconcile.Backend{{Revision: r2, Percent: 100, Ready: true}}, nil)
	})

	t.Run("3/PATCH route: pin the current revision", func(t *testing.T) {
		if err := e.patch(reconcile.KindRoute, "my-service", types.MergePatchType, seedRoutePATCHPin); err != nil {
			t.Fatal(err)
		}
		e.converge()
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(r2, "", 100)}, e.route("my-service").Status.Traffic)
	})
	t.Run("3/PATCH configuration env: FOO kept, HELLO changed", func(t *testing.T) {
		if err := e.patch(reconcile.KindConfiguration, "my-service", types.StrategicMergePatchType, seedConfigPATCHEnv); err != nil {
			t.Fatal(err)
		}
		e.converge()
		r := e.revision(r3)
		diff(t, "env", []corev1.EnvVar{{Name: "FOO", Value: "bar"}, {Name: "HELLO", Value: "blurg"}}, r.Spec.Container.Env)
		diff(t, "image (same code)", "gcr.io/elafros-samples/my-service:v2", r.Spec.Container.Image)
		diff(t, "Ready", "True", cond(r.Status.Conditions, v1alpha1.ConditionReady)[0])
		diff(t, "pinned: no traffic moved", []v1alpha1.TrafficTarget{target(r2, "", 100)}, e.route("my-service").Status.Traffic)
		diff(t, "latestReady", r3, e.config("my-service").Status.LatestReadyRevisionName)
	})
	t.Run("3/PATCH route: current and next, next at 0%", func(t *testing.T) {
		if err := e.patch(reconcile.KindRoute, "my-service", types.MergePatchType, seedRoutePATCHNext); err != nil {
			t.Fatal(err)
		}
		e.converge()
		rt := e.route("my-service")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(r2, "current", 100), target(r3, "next", 0)}, rt.Status.Traffic)
		diff(t, "RolloutComplete", "True", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
		e.checkPlan("my-service", []reconcile.Backend{{Revision: r2, Percent: 100, Ready: true}},
			map[string]string{e.host("current", "my-service"): r2, e.host("next", "my-service"): r3})
	})
	t.Run("3/PATCH route with Traffic: is refused and changes nothing", func(t *testing.T) {
		before := e.route("my-service")
		err := e.patch(reconcile.KindRoute, "my-service", types.MergePatchType, seedRoutePATCHTypo)
		// Every backend refuses it naming the field; elafros serve also
		// suggests "traffic" (checked in the apiserver's own tests).
		if err == nil || !strings.Contains(err.Error(), "unknown field") || !strings.Contains(err.Error(), "Traffic") {
			t.Fatalf("err = %v, want an unknown-field error naming Traffic", err)
		}
		after := e.route("my-service")
		diff(t, "route", before, after)
	})
	t.Run("3/PATCH route: next at 100%", func(t *testing.T) {
		if err := e.patch(reconcile.KindRoute, "my-service", types.MergePatchType, seedRoutePATCHAll); err != nil {
			t.Fatal(err)
		}
		e.converge()
		rt := e.route("my-service")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(r2, "current", 0), target(r3, "next", 100)}, rt.Status.Traffic)
		diff(t, "RolloutComplete", "True", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
	})
	t.Run("3/PATCH route: current = next", func(t *testing.T) {
		if err := e.patch(reconcile.KindRoute, "my-service", types.MergePatchType, seedRoutePATCHFinish); err != nil {
			t.Fatal(err)
		}
		e.converge()
		rt := e.route("my-service")
		diff(t, "traffic", []v1alpha1.TrafficTarget{target(r3, "current", 100), target(r3, "next", 0)}, rt.Status.Traffic)
		e.checkPlan("my-service", []reconcile.Backend{{Revision: r3, Percent: 100, Ready: true}},
			map[string]string{e.host("current", "my-service"): r3, e.host("next", "my-service"): r3})
	})
}

// scenario1Gradual shows the seed's intermediate 75/25 split through the
// migration hook (timed gradual migration itself is a later issue).
func scenario1Gradual(t *testing.T, nb NewBackend) {
	e := newEnv(t, nb, reconcile.Options{Migrate: StepMigrator(25)})
	e.create(seedRoutePOST)
	e.create(seedConfigPOST)
	e.converge()
	r1, r2 := rev("my-service", 1), rev("my-service", 2)
	if err := e.patch(reconcile.KindConfiguration, "my-service", types.MergePatchType, seedConfigPATCHImage); err != nil {
		t.Fatal(err)
	}
	seen := [][]v1alpha1.TrafficTarget{e.route("my-service").Status.Traffic}
	// Passes until the route is done, with a pause when one changed
	// nothing (a real workload takes a while to become Ready).
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if _, errs := e.r.Pass(e.ctx, ns); len(errs) > 0 {
			t.Fatal(errs)
		}
		rt := e.route("my-service")
		if slices.Equal(seen[len(seen)-1], rt.Status.Traffic) {
			if len(rt.Status.Traffic) == 1 && rt.Status.Traffic[0].RevisionName == r2 {
				break
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		seen = append(seen, rt.Status.Traffic)
		if len(rt.Status.Traffic) == 2 && rt.Status.Traffic[0].Percent == 75 {
			diff(t, "mid-rollout", []v1alpha1.TrafficTarget{target(r1, "", 75), target(r2, "", 25)}, rt.Status.Traffic)
			diff(t, "RolloutComplete while migrating", "False", cond(rt.Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
		}
	}
	want := [][]v1alpha1.TrafficTarget{
		{target(r1, "", 100)},
		{target(r1, "", 75), target(r2, "", 25)},
		{target(r1, "", 50), target(r2, "", 50)},
		{target(r1, "", 25), target(r2, "", 75)},
		{target(r2, "", 100)},
	}
	diff(t, "splits the route went through", want, seen)
	diff(t, "RolloutComplete at the end", "True", cond(e.route("my-service").Status.Conditions, v1alpha1.ConditionRolloutComplete)[0])
}

func scenario4(t *testing.T, nb NewBackend) {
	e := newEnv(t, nb, reconcile.Options{})
	r1, r2 := rev("my-built", 1), rev("my-built", 2)
	t.Run("POST configuration with a build", func(t *testing.T) {
		e.create(seedConfigBuildPOST)
		e.settle()
		r := e.revision(r1)
		diff(t, "buildName", r1, r.Spec.BuildName)
		diff(t, "BuildComplete while building", "Unknown", cond(r.Status.Conditions, v1alpha1.ConditionBuildComplete)[0])
		diff(t, "Ready while building", [2]string{"False", v1alpha1.ReasonBuilding}, [2]string{cond(r.Status.Conditions, v1alpha1.ConditionReady)[0], cond(r.Status.Conditions, v1alpha1.ConditionReady)[1]})
		diff(t, "latestReady", "", e.config("my-built").Status.LatestReadyRevisionName)
	})
	t.Run("GET revision: build complete, Ready, provenance", func(t *testing.T) {
		if err := e.b.CompleteBuild(ns, r1); err != nil {
			t.Fatal(err)
		}
		e.converge()
		r := e.revision(r1)
		diff(t, "Ready", "True", cond(r.Status.Conditions, v1alpha1.ConditionReady)[0])
		diff(t, "BuildComplete", "True", cond(r.Status.Conditions, v1alpha1.ConditionBuildComplete)[0])
		diff(t, "imageSource", &v1alpha1.ImageSource{Repository: "https://github.com/elafros/sample-app", Commit: "a6f92d1"}, r.Status.ImageSource)
		if !strings.HasPrefix(r.Status.ImageDigest, "gcr.io/elafros-samples/my-built@sha256:") {
			t.Errorf("imageDigest = %q, want the built image by digest", r.Status.ImageDigest)
		}
		diff(t, "latestReady", r1, e.config("my-built").Status.LatestReadyRevisionName)
	})
	t.Run("a failed build never becomes latestReady", func(t *testing.T) {
		if err := e.patch(reconcile.KindConfiguration, "my-built", types.StrategicMergePatchType,
			`{"spec":{"revisionTemplate":{"spec":{"container":{"env":[{"name":"HELLO","value":"again"}]}}}}}`); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if err := e.b.FailBuild(ns, r2, "BuildStepFailed", "Step build failed with error message: main.go:3:1: syntax error"); err != nil {
			t.Fatal(err)
		}
		e.converge()
		r := e.revision(r2)
		diff(t, "Ready", [3]string{"False", v1alpha1.ReasonBuildFailed, "Unable to start because the build failed: Step build failed with error message: main.go:3:1: syntax error"}, cond(r.Status.Conditions, v1alpha1.ConditionReady))
		diff(t, "BuildFailed", [3]string{"True", "BuildStepFailed", "Step build failed with error message: main.go:3:1: syntax error"}, cond(r.Status.Conditions, v1alpha1.ConditionBuildFailed))
		c := e.config("my-built")
		diff(t, "latestReady stays", [2]string{r1, r2}, [2]string{c.Status.LatestReadyRevisionName, c.Status.LatestCreatedRevisionName})
		diff(t, "LatestRevisionReady", [2]string{"False", v1alpha1.ReasonBuildFailed}, [2]string{cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady)[0], cond(c.Status.Conditions, v1alpha1.ConditionLatestRevisionReady)[1]})
	})
}

func scenario5(t *testing.T, nb NewBackend) {
	e := newEnv(t, nb, reconcile.Options{})
	e.create(seedFunctionPOST)
	e.settle()
	if err := e.b.CompleteBuild(ns, rev("my-function", 1)); err != nil {
		t.Fatal(err)
	}
	e.converge()
	r := e.revision(rev("my-function", 1))
	diff(t, "labels", map[string]string{
		v1alpha1.ConfigurationLabelKey: "my-function", v1alpha1.ConfigurationGenerationLabelKey: "1", v1alpha1.TypeLabelKey: "function",
	}, r.Labels)
	diff(t, "concurrencyModel", v1alpha1.ConcurrencySingleThreaded, r.Spec.ConcurrencyModel)
	diff(t, "timeoutSeconds", int64(20), *r.Spec.TimeoutSeconds)
	diff(t, "buildName", rev("my-function", 1), r.Spec.BuildName)
	diff(t, "Ready", "True", cond(r.Status.Conditions, v1alpha1.ConditionReady)[0])
	diff(t, "latestReady", rev("my-function", 1), e.config("my-function").Status.LatestReadyRevisionName)
}
