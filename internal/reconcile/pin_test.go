package reconcile_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/store"
)

// TestRevisionPinnedOnce: a revision's first resolved digest goes into
// status.imageDigest and every later start runs it; a completed build is
// not started again. The "restart" is a new reconciler over the same
// store with a fresh runtime and a builder that has never heard of the
// build, as elafros serve has after it restarts.
func TestRevisionPinnedOnce(t *testing.T) {
	built := service("built", "registry.local/acme/built:latest", v1alpha1.StrategyAutomatic)
	built.Spec.Build = &v1alpha1.BuildSpec{
		Source:   &v1alpha1.SourceSpec{Git: &v1alpha1.GitSourceSpec{URL: "https://example.com/acme/built.git", Commit: "abc123"}},
		Template: v1alpha1.TemplateInstantiationSpec{Name: "go"},
	}
	for _, tc := range []struct {
		name string
		svc  *v1alpha1.Service
	}{
		{"image by tag", service("tagged", "registry.local/acme/tagged:v1", v1alpha1.StrategyAutomatic)},
		{"built from source", built},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, reconcile.Options{})
			f.create(tc.svc)
			f.converge()
			rev := tc.svc.Name + "-00001"
			before := f.revision(rev)
			if !before.Status.Conditions.IsTrue(v1alpha1.ConditionReady) || before.Status.ImageDigest == "" {
				t.Fatalf("first start: want Ready with an imageDigest, got %+v", before.Status)
			}

			// The restart.
			f.rt = reconciletest.NewRuntime()
			f.b = reconciletest.NewBuilder(false)
			f.r = f.newReconciler(f.rec)
			f.converge()

			after := f.revision(rev)
			if diff := cmp.Diff(before.Status, after.Status); diff != "" {
				t.Errorf("status changed across the restart (-before +after):\n%s", diff)
			}
			if img, _ := f.rt.Running("default", rev); img != before.Status.ImageDigest {
				t.Errorf("after the restart the runtime runs %q, want the pinned %q", img, before.Status.ImageDigest)
			}
			if _, started := f.b.Started("default", rev); started {
				t.Errorf("the completed build %s was started again", rev)
			}
		})
	}
}

func (f *fixture) revision(name string) *v1alpha1.Revision {
	f.t.Helper()
	o, err := f.store.Get(f.ctx, store.KindRevision, "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*v1alpha1.Revision)
}
