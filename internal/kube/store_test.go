package kube_test

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/store"
)

// TestStore checks the Store semantics the reconciler relies on, as the
// real API server enforces them over the CRDs: optimistic concurrency,
// generation on spec changes only, status only through /status, env
// merged by name by strategic merge and by server-side apply, unknown
// fields refused, and a refused patch changing nothing.
func TestStore(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	s, err := client.New(e.action)
	if err != nil {
		t.Fatal(err)
	}
	app(t, ctx, s, "store")
	get := func() *v1alpha1.Configuration {
		t.Helper()
		o, err := s.Get(ctx, store.KindConfiguration, "default", "store")
		if err != nil {
			t.Fatal(err)
		}
		return o.(*v1alpha1.Configuration)
	}
	envOf := func(c *v1alpha1.Configuration) map[string]string {
		m := map[string]string{}
		for _, v := range c.Spec.RevisionTemplate.Spec.Container.Env {
			m[v.Name] = v.Value
		}
		return m
	}
	first := get()
	if first.Generation != 1 {
		t.Fatalf("generation %d after create, want 1", first.Generation)
	}

	// A stale write is refused.
	a, b := first.DeepCopy(), first.DeepCopy()
	a.Spec.RevisionTemplate.Spec.Container.Image = "gcr.io/elafros-samples/my-service:v2"
	if _, err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.Spec.RevisionTemplate.Spec.Container.Image = "gcr.io/elafros-samples/my-service:v3"
	if _, err := s.Update(ctx, b); !apierrors.IsConflict(err) {
		t.Fatalf("update with a stale resourceVersion: %v, want a Conflict", err)
	}
	if c := get(); c.Generation != 2 || c.Spec.RevisionTemplate.Spec.Container.Image != "gcr.io/elafros-samples/my-service:v2" {
		t.Fatalf("after the conflict: generation %d image %s", c.Generation, c.Spec.RevisionTemplate.Spec.Container.Image)
	}

	// Status through /status only, and it does not bump generation.
	st := get()
	st.Status.LatestCreatedRevisionName = "store-00002"
	st.Spec.RevisionTemplate.Spec.Container.Image = "ignored"
	if _, err := s.UpdateStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	if c := get(); c.Generation != 2 || c.Status.LatestCreatedRevisionName != "store-00002" || c.Spec.RevisionTemplate.Spec.Container.Image == "ignored" {
		t.Fatalf("after a status write: generation %d, latestCreated %q, image %q", c.Generation, c.Status.LatestCreatedRevisionName, c.Spec.RevisionTemplate.Spec.Container.Image)
	}

	// Strategic merge: env merged by name (the seed's scenario 3).
	if _, err := s.Patch(ctx, store.KindConfiguration, "default", "store", types.StrategicMergePatchType,
		[]byte(`{"spec":{"revisionTemplate":{"spec":{"container":{"env":[{"name":"HELLO","value":"world"}]}}}}}`)); err != nil {
		t.Fatal(err)
	}
	if env := envOf(get()); env["VERSION"] != "1" || env["HELLO"] != "world" {
		t.Fatalf("env after a strategic merge patch: %v, want VERSION kept and HELLO added", env)
	}

	// Server-side apply: the env list map is merged by the API server.
	if _, err := s.Patch(ctx, store.KindConfiguration, "default", "store", types.ApplyPatchType, []byte(`apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata: {name: store, namespace: default}
spec:
  revisionTemplate:
    spec:
      container:
        env:
        - {name: APPLIED, value: "yes"}
`)); err != nil {
		t.Fatal(err)
	}
	if env := envOf(get()); env["VERSION"] != "1" || env["HELLO"] != "world" || env["APPLIED"] != "yes" {
		t.Fatalf("env after server-side apply: %v, want VERSION and HELLO kept, APPLIED added", env)
	}

	// Unknown fields are refused, by either patch type, and change nothing.
	before := get()
	for _, pt := range []types.PatchType{types.MergePatchType, types.StrategicMergePatchType} {
		_, err := s.Patch(ctx, store.KindConfiguration, "default", "store", pt, []byte(`{"spec":{"revisionTemplate":{"spec":{"Container":{"image":"x"}}}}}`))
		if err == nil {
			t.Fatalf("%s with an unknown field was accepted", pt)
		}
		t.Logf("%s refused: %v", pt, err)
	}
	if after := get(); after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("a refused patch changed the object (resourceVersion %s → %s)", before.ResourceVersion, after.ResourceVersion)
	}
}
