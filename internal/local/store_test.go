package local

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "elafros.db")
	s, err := Open(path, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func config(name, image string) *v1alpha1.Configuration {
	c := &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	c.Spec.RevisionTemplate.Spec.Container = corev1.Container{Image: image, Env: []corev1.EnvVar{{Name: "FOO", Value: "bar"}}}
	return c
}

func rv(o store.Object) int {
	n, _ := strconv.Atoi(o.GetResourceVersion())
	return n
}

func TestCreateGetConflictGeneration(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	in := config("my-service", "img:1")
	in.Status.LatestReadyRevisionName = "ignored"
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	c := created.(*v1alpha1.Configuration)
	if c.Namespace != "default" || c.Generation != 1 || c.UID == "" || c.CreationTimestamp.IsZero() || rv(c) == 0 {
		t.Fatalf("create metadata: %+v", c.ObjectMeta)
	}
	if c.Status.LatestReadyRevisionName != "" {
		t.Error("create kept status; a status subresource ignores it")
	}
	if _, err := s.Create(ctx, config("my-service", "img:1")); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}

	// A label change is not a spec change: generation stays.
	l := c.DeepCopy()
	l.Labels = map[string]string{"team": "a"}
	lo, err := s.Update(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if lo.GetGeneration() != 1 || rv(lo) <= rv(c) {
		t.Errorf("label update: generation %d rv %d (was %d)", lo.GetGeneration(), rv(lo), rv(c))
	}
	// A stale write conflicts and changes nothing.
	stale := c.DeepCopy()
	stale.Spec.RevisionTemplate.Spec.Container.Image = "img:stale"
	if _, err := s.Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v, want Conflict", err)
	}
	// A spec change bumps generation; status written with it is ignored.
	sp := lo.(*v1alpha1.Configuration).DeepCopy()
	sp.Spec.RevisionTemplate.Spec.Container.Image = "img:2"
	sp.Status.LatestCreatedRevisionName = "ignored"
	so, err := s.Update(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if so.GetGeneration() != 2 || so.(*v1alpha1.Configuration).Status.LatestCreatedRevisionName != "" {
		t.Errorf("spec update: generation %d status %+v", so.GetGeneration(), so.(*v1alpha1.Configuration).Status)
	}
	// A no-op update writes nothing, not even a new resourceVersion.
	same, err := s.Update(ctx, so)
	if err != nil || rv(same) != rv(so) {
		t.Errorf("no-op update: rv %d -> %d, err %v", rv(so), rv(same), err)
	}
	// Status is written separately, and never bumps generation.
	st := so.(*v1alpha1.Configuration).DeepCopy()
	st.Status.LatestCreatedRevisionName = "my-service-00002"
	st.Spec.RevisionTemplate.Spec.Container.Image = "ignored"
	sto, err := s.UpdateStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	got := sto.(*v1alpha1.Configuration)
	if got.Status.LatestCreatedRevisionName != "my-service-00002" || got.Spec.RevisionTemplate.Spec.Container.Image != "img:2" || got.Generation != 2 {
		t.Errorf("status update: %+v / image %s / gen %d", got.Status, got.Spec.RevisionTemplate.Spec.Container.Image, got.Generation)
	}
	if _, err := s.Update(ctx, &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: "my-service", Namespace: "default"}}); !apierrors.IsInvalid(err) {
		t.Errorf("update without resourceVersion: %v, want Invalid", err)
	}
	if _, err := s.Get(ctx, store.KindConfiguration, "default", "nope"); !apierrors.IsNotFound(err) {
		t.Errorf("get missing: %v", err)
	}
}

func TestPatchKeepsEnvByName(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	c := config("my-service", "img:1")
	c.Spec.RevisionTemplate.Spec.Container.Env = append(c.Spec.RevisionTemplate.Spec.Container.Env, corev1.EnvVar{Name: "HELLO", Value: "world"})
	if _, err := s.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	out, err := s.Patch(ctx, store.KindConfiguration, "default", "my-service", types.StrategicMergePatchType,
		[]byte("spec:\n  revisionTemplate:\n    spec:\n      container:\n        env:\n        - name: HELLO\n          value: blurg\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := out.(*v1alpha1.Configuration).Spec.RevisionTemplate.Spec.Container.Env
	if len(env) != 2 || env[0] != (corev1.EnvVar{Name: "FOO", Value: "bar"}) || env[1] != (corev1.EnvVar{Name: "HELLO", Value: "blurg"}) {
		t.Errorf("env after patch = %+v, want FOO=bar HELLO=blurg", env)
	}
	if out.GetGeneration() != 2 {
		t.Errorf("generation = %d, want 2", out.GetGeneration())
	}
	if _, err := s.Patch(ctx, store.KindConfiguration, "default", "my-service", types.MergePatchType, []byte(`{"metadata":{"name":"other"}}`)); !apierrors.IsBadRequest(err) {
		t.Errorf("renaming patch: %v, want BadRequest", err)
	}
	if _, err := s.Patch(ctx, store.KindConfiguration, "default", "my-service", types.MergePatchType, []byte(`{"metadata":{"resourceVersion":"1"}}`)); !apierrors.IsConflict(err) {
		t.Errorf("patch with a stale resourceVersion: %v, want Conflict", err)
	}
	if _, err := s.Patch(ctx, store.KindConfiguration, "default", "my-service", types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/spec/revisionTemplate/spec/container/image","value":"img:3"}]`)); err != nil {
		t.Errorf("json patch: %v", err)
	}
}

func TestRevisionsAreImmutable(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	r := &v1alpha1.Revision{ObjectMeta: metav1.ObjectMeta{Name: "r-00001"}}
	r.Spec.Container.Image = "img:1"
	o, err := s.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	c := o.(*v1alpha1.Revision).DeepCopy()
	c.Spec.Container.Image = "img:2"
	if _, err := s.Update(ctx, c); !apierrors.IsInvalid(err) {
		t.Errorf("spec change on a revision: %v, want Invalid", err)
	}
	c = o.(*v1alpha1.Revision).DeepCopy()
	c.Annotations = map[string]string{"note": "metadata may change"}
	if _, err := s.Update(ctx, c); err != nil {
		t.Errorf("metadata change on a revision: %v", err)
	}
}

func TestDeleteCascadesAndWatch(t *testing.T) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	co, err := s.Create(ctx, config("my-service", "img:1"))
	if err != nil {
		t.Fatal(err)
	}
	r := &v1alpha1.Revision{ObjectMeta: metav1.ObjectMeta{Name: "my-service-00001", Namespace: "default",
		Labels:          map[string]string{v1alpha1.ConfigurationLabelKey: "my-service"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.APIVersion, Kind: "Configuration", Name: "my-service", UID: co.GetUID()}}}}
	r.Spec.Container.Image = "img:1"
	if _, err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	other := r.DeepCopy()
	other.Name, other.OwnerReferences, other.Labels = "unowned", nil, nil
	if _, err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	sel := labels.SelectorFromSet(labels.Set{v1alpha1.ConfigurationLabelKey: "my-service"})
	if got, _ := s.List(ctx, store.KindRevision, "default", sel); len(got) != 1 {
		t.Errorf("selector list = %d, want 1", len(got))
	}
	if err := s.Delete(ctx, store.KindConfiguration, "default", "my-service"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, store.KindRevision, "default", "my-service-00001"); !apierrors.IsNotFound(err) {
		t.Errorf("owned revision survived its configuration: %v", err)
	}
	if _, err := s.Get(ctx, store.KindRevision, "default", "unowned"); err != nil {
		t.Errorf("unowned revision was deleted: %v", err)
	}
	want := []string{"ADDED Configuration my-service", "ADDED Revision my-service-00001", "ADDED Revision unowned",
		"DELETED Configuration my-service", "DELETED Revision my-service-00001"}
	deadline := time.After(5 * time.Second)
	for i, w := range want {
		select {
		case e := <-events:
			if got := string(e.Type) + " " + string(store.KindOf(e.Object)) + " " + e.Object.GetName(); got != w {
				t.Errorf("event %d = %q, want %q", i, got, w)
			}
		case <-deadline:
			t.Fatalf("timed out waiting for event %d (%s)", i, w)
		}
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	s, path := open(t)
	ctx := t.Context()
	o, err := s.Create(ctx, config("my-service", "img:1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Get(ctx, store.KindConfiguration, "default", "my-service")
	if err != nil || got.GetUID() != o.GetUID() {
		t.Fatalf("after reopen: %v %v", got, err)
	}
	// The resourceVersion counter is monotonic across restarts.
	n, err := s2.Create(ctx, config("second", "img:1"))
	if err != nil || rv(n) <= rv(o) {
		t.Errorf("resourceVersion after reopen = %v (first was %d), err %v", n.GetResourceVersion(), rv(o), err)
	}
}

func TestLabelIndexFollowsChanges(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	mk := func(name, cfg string) {
		r := &v1alpha1.Revision{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.ConfigurationLabelKey: cfg, "tier": "web"}}}
		r.Spec.Container.Image = "img"
		if _, err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mk("a-00001", "a")
	mk("a-00002", "a")
	mk("b-00001", "b")
	names := func(sel string) []string {
		t.Helper()
		ls, err := labels.Parse(sel)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := s.List(ctx, store.KindRevision, "default", ls)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.GetName())
		}
		return out
	}
	check := func(sel string, want ...string) {
		t.Helper()
		if got := names(sel); !slices.Equal(got, want) {
			t.Errorf("List(%s) = %v, want %v", sel, got, want)
		}
	}
	check("elafros.dev/configuration=a", "a-00001", "a-00002")
	check("elafros.dev/configuration=a,tier=web", "a-00001", "a-00002")
	check("elafros.dev/configuration in (b)", "b-00001")
	check("tier!=web")
	o, _ := s.Get(ctx, store.KindRevision, "default", "a-00002")
	c := o.(*v1alpha1.Revision).DeepCopy()
	c.Labels[v1alpha1.ConfigurationLabelKey] = "b"
	if _, err := s.Update(ctx, c); err != nil {
		t.Fatal(err)
	}
	check("elafros.dev/configuration=a", "a-00001")
	check("elafros.dev/configuration=b", "a-00002", "b-00001")
	// Each value of an "in" from the index, in name order as a scan gives
	// (the index gives a's c-00001 before b's a-00002).
	mk("c-00001", "a")
	check("elafros.dev/configuration in (b,a)", "a-00001", "a-00002", "b-00001", "c-00001")
	check("elafros.dev/configuration in (b,x),tier=web", "a-00002", "b-00001")
	if err := s.Delete(ctx, store.KindRevision, "default", "c-00001"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, store.KindRevision, "default", "b-00001"); err != nil {
		t.Fatal(err)
	}
	check("elafros.dev/configuration=b", "a-00002")
}
