package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// config is the seed's scenario 3 starting point: a Configuration whose
// container has FOO=bar.
func config() *v1alpha1.Configuration {
	c := &v1alpha1.Configuration{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: "Configuration"},
		ObjectMeta: metav1.ObjectMeta{Name: "my-service", Namespace: "default", ResourceVersion: "7"},
	}
	c.Spec.RevisionTemplate.Spec.Container = corev1.Container{
		Image: "gcr.io/elafros-samples/my-service:v1",
		Env:   []corev1.EnvVar{{Name: "FOO", Value: "bar"}},
	}
	return c
}

func TestApplyPatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pt      types.PatchType
		body    string
		wantEnv []corev1.EnvVar
		// wantErr is a part of the error's message; the error must also
		// be a 400 (or, for an unknown patch type, a 415).
		wantErr  string
		wantCode int32
	}{{
		// The seed's scenario 3: the env list is keyed by name, so FOO
		// survives a patch that only mentions HELLO.
		name:    "strategic merge keeps env entries it does not mention (YAML body)",
		pt:      types.StrategicMergePatchType,
		body:    "spec:\n  revisionTemplate:\n    spec:\n      container:\n        env:\n        - name: HELLO\n          value: world\n",
		wantEnv: []corev1.EnvVar{{Name: "HELLO", Value: "world"}, {Name: "FOO", Value: "bar"}},
	}, {
		name:    "merge patch replaces the list",
		pt:      types.MergePatchType,
		body:    `{"spec":{"revisionTemplate":{"spec":{"container":{"env":[{"name":"HELLO","value":"world"}]}}}}}`,
		wantEnv: []corev1.EnvVar{{Name: "HELLO", Value: "world"}},
	}, {
		name:    "JSON patch adds one entry",
		pt:      types.JSONPatchType,
		body:    `[{"op":"add","path":"/spec/revisionTemplate/spec/container/env/-","value":{"name":"HELLO","value":"world"}}]`,
		wantEnv: []corev1.EnvVar{{Name: "FOO", Value: "bar"}, {Name: "HELLO", Value: "world"}},
	}, {
		// encoding/json would take "Traffic" for "traffic"; the strict
		// decoder names the field instead.
		name:     "an unknown field is refused with its path",
		pt:       types.MergePatchType,
		body:     `{"spec":{"revisionTemplate":{"spec":{"Container":{}}}}}`,
		wantErr:  "spec.revisionTemplate.spec.Container",
		wantCode: 400,
	}, {
		name:     "a body that is neither JSON nor YAML",
		pt:       types.MergePatchType,
		body:     "spec: [unclosed",
		wantErr:  "not valid JSON or YAML",
		wantCode: 400,
	}, {
		name:     "a JSON patch that does not apply",
		pt:       types.JSONPatchType,
		body:     `[{"op":"replace","path":"/spec/nothing/here","value":1}]`,
		wantErr:  "applying application/json-patch+json",
		wantCode: 400,
	}, {
		name:     "an unsupported patch type names the accepted ones",
		pt:       types.ApplyYAMLPatchType,
		body:     `{}`,
		wantErr:  "accepted: application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json",
		wantCode: 415,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			orig := config()
			got, err := store.ApplyPatch(orig, tc.pt, []byte(tc.body))
			if diff := cmp.Diff(config(), orig); diff != "" {
				t.Errorf("ApplyPatch changed its input (-before +after):\n%s", diff)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ApplyPatch error = %v, want one containing %q", err, tc.wantErr)
				}
				var se apierrors.APIStatus
				if !errors.As(err, &se) || se.Status().Code != tc.wantCode {
					t.Fatalf("ApplyPatch error %v is not a status error with code %d", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, ok := got.(*v1alpha1.Configuration)
			if !ok {
				t.Fatalf("ApplyPatch returned a %T, want a *v1alpha1.Configuration", got)
			}
			if diff := cmp.Diff(tc.wantEnv, c.Spec.RevisionTemplate.Spec.Container.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			// Metadata the patch does not touch is kept.
			if c.Name != "my-service" || c.ResourceVersion != "7" {
				t.Errorf("metadata = %s rv %s, want my-service rv 7", c.Name, c.ResourceVersion)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	// Dependency order (owners first), as v1alpha1.Kinds has it.
	want := []store.Kind{store.KindService, store.KindConfiguration, store.KindRoute, store.KindRevision}
	if diff := cmp.Diff(want, store.Kinds); diff != "" {
		t.Fatalf("Kinds (-want +got):\n%s", diff)
	}
	for _, k := range store.Kinds {
		t.Run(string(k), func(t *testing.T) {
			o, err := store.NewObject(k)
			if err != nil {
				t.Fatal(err)
			}
			if got := store.KindOf(o); got != k {
				t.Errorf("KindOf(NewObject(%s)) = %s", k, got)
			}
			if store.SpecOf(o) == nil {
				t.Errorf("SpecOf(%s) is nil; generation would not track its spec", k)
			}
			if gr := store.Resource(k); gr.Group != v1alpha1.GroupName || gr.Resource != strings.ToLower(string(k))+"s" {
				t.Errorf("Resource(%s) = %v", k, gr)
			}
		})
	}
	if _, err := store.NewObject("Build"); err == nil || !strings.Contains(err.Error(), `unknown kind "Build"`) {
		t.Errorf("NewObject(Build) error = %v, want unknown kind", err)
	}
}
