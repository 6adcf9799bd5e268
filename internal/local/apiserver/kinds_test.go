package apiserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
)

// TestKindsAgree checks that the three places kubectl and elafros learn
// a kind's names from say the same thing: the table (v1alpha1.Kinds), the
// CRDs generated from the types' markers (what a cluster serves), and
// this server's discovery document (what elafros serve serves).
func TestKindsAgree(t *testing.T) {
	defs, err := crds()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	New(nil, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/apis/elafros.dev/v1alpha1", nil))
	var list metav1.APIResourceList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatalf("discovery: %v\n%s", err, rec.Body)
	}
	discovered := map[string]metav1.APIResource{}
	for _, r := range list.APIResources {
		discovered[r.Name] = r
	}
	if len(defs) != len(v1alpha1.Kinds) {
		t.Errorf("%d CRDs, %d kinds in the table", len(defs), len(v1alpha1.Kinds))
	}
	for _, k := range v1alpha1.Kinds {
		t.Run(k.Kind, func(t *testing.T) {
			want := apiextensionsv1.CustomResourceDefinitionNames{
				Kind: k.Kind, ListKind: k.ListKind, Plural: k.Plural, Singular: k.Singular,
				ShortNames: k.ShortNames, Categories: k.Categories,
			}
			c := defs[k.Kind]
			if c == nil {
				t.Fatalf("no CRD for %s", k.Kind)
			}
			if d := cmp.Diff(want, c.Spec.Names); d != "" {
				t.Errorf("CRD names differ from v1alpha1.Kinds (-table +CRD; fix the +kubebuilder:resource marker and run make generate):\n%s", d)
			}
			if got := c.Spec.Scope == apiextensionsv1.NamespaceScoped; got != k.Namespaced {
				t.Errorf("CRD scope %s, table says namespaced=%v", c.Spec.Scope, k.Namespaced)
			}
			if c.Name != k.Plural+"."+v1alpha1.GroupName {
				t.Errorf("CRD name %s, want %s.%s", c.Name, k.Plural, v1alpha1.GroupName)
			}
			r, ok := discovered[k.Plural]
			if !ok {
				t.Fatalf("discovery lacks %s", k.Plural)
			}
			got := apiextensionsv1.CustomResourceDefinitionNames{
				Kind: r.Kind, ListKind: k.ListKind, Plural: r.Name, Singular: r.SingularName,
				ShortNames: r.ShortNames, Categories: r.Categories,
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("discovery differs from v1alpha1.Kinds (-table +discovery):\n%s", d)
			}
			if r.Namespaced != k.Namespaced {
				t.Errorf("discovery namespaced=%v, table %v", r.Namespaced, k.Namespaced)
			}
			if _, ok := discovered[k.Plural+"/status"]; !ok {
				t.Errorf("discovery lacks %s/status", k.Plural)
			}
		})
	}
}
