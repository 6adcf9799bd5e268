package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/apiserver"
)

// rawAPI sends requests as kubectl apply or a GitOps tool would: raw
// bodies, no client-side validation.
type rawAPI struct {
	name string
	base string
	c    *http.Client
}

func (a rawAPI) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestAPIServerEnforcesRules: every rule of api/v1alpha1's validation
// that CEL can express is in the CRDs, so the cluster's API server
// refuses what elafros serve refuses, with the same answer (422 and the
// rule's message), however the request is sent.
func TestAPIServerEnforcesRules(t *testing.T) {
	e := setup(t)
	hc, err := rest.HTTPClientFor(e.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(filepath.Join(t.TempDir(), "elafros.db"), local.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv := httptest.NewServer(apiserver.New(st, nil))
	t.Cleanup(srv.Close)
	apis := []rawAPI{{"cluster", strings.TrimSuffix(e.c.Config.Host, "/"), hc}, {"elafros serve", srv.URL, srv.Client()}}

	const routes = "/apis/elafros.dev/v1alpha1/namespaces/default/routes"
	const configs = "/apis/elafros.dev/v1alpha1/namespaces/default/configurations"
	route := func(name, traffic string) string {
		return fmt.Sprintf(`{"apiVersion":"elafros.dev/v1alpha1","kind":"Route","metadata":{"name":%q},"spec":{"rollout":{"traffic":%s}}}`, name, traffic)
	}
	config := func(name, container string, extra string) string {
		return fmt.Sprintf(`{"apiVersion":"elafros.dev/v1alpha1","kind":"Configuration","metadata":{"name":%q},"spec":{"revisionTemplate":{"spec":{"container":%s%s}}}}`, name, container, extra)
	}
	cases := []struct {
		name, path, body string
		want             int
		// says is what both answers contain.
		says string
	}{
		{"percents total 90", routes, route("r-90", `[{"configurationName":"a","percent":90}]`), 422, "percent sum equal to 100"},
		{"percent over 100", routes, route("r-110", `[{"configurationName":"a","percent":110},{"revisionName":"b","percent":-10}]`), 422, "percent"},
		{"both configurationName and revisionName", routes, route("r-both", `[{"configurationName":"a","revisionName":"b","percent":100}]`), 422, "exactly one of revisionName or configurationName"},
		{"neither configurationName nor revisionName", routes, route("r-none", `[{"name":"x","percent":100}]`), 422, "exactly one of revisionName or configurationName"},
		{"a name for two targets", routes, route("r-dup", `[{"name":"x","configurationName":"a","percent":50},{"name":"x","revisionName":"b","percent":50}]`), 422, "must be unique"},
		{"no targets", routes, route("r-empty", `[]`), 422, "traffic"},
		{"a name repeated for the same target", routes, route("r-same", `[{"name":"current","revisionName":"b","percent":100},{"name":"current","revisionName":"b","percent":0}]`), 201, ""},
		{"the seed's route", routes, route("r-ok", `[{"configurationName":"my-service","percent":100}]`), 201, ""},
		{"timeoutSeconds 0", configs, config("c-t0", `{"image":"gcr.io/x"}`, `,"timeoutSeconds":0`), 422, "timeoutSeconds"},
		{"timeoutSeconds 3601", configs, config("c-t3601", `{"image":"gcr.io/x"}`, `,"timeoutSeconds":3601`), 422, "timeoutSeconds"},
		{"container ports", configs, config("c-ports", `{"image":"gcr.io/x","ports":[{"containerPort":8080}]}`, ""), 422, "ports"},
		{"container resources", configs, config("c-res", `{"image":"gcr.io/x","resources":{"limits":{"cpu":"1"}}}`, ""), 422, "resources"},
		{"container volumeMounts", configs, config("c-vm", `{"image":"gcr.io/x","volumeMounts":[{"name":"v","mountPath":"/v"}]}`, ""), 422, "volumeMounts"},
		{"container lifecycle", configs, config("c-lc", `{"image":"gcr.io/x","lifecycle":{"preStop":{"sleep":{"seconds":1}}}}`, ""), 422, "lifecycle"},
		{"container stdin", configs, config("c-stdin", `{"image":"gcr.io/x","stdin":true}`, ""), 422, "stdin"},
		{"container tty", configs, config("c-tty", `{"image":"gcr.io/x","tty":true}`, ""), 422, "tty"},
		{"PORT in env", configs, config("c-port", `{"image":"gcr.io/x","env":[{"name":"PORT","value":"1"}]}`, ""), 422, "PORT"},
		{"the seed's configuration", configs, config("c-ok", `{"image":"gcr.io/x","env":[{"name":"FOO","value":"bar"}]}`, ""), 201, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range apis {
				code, body := a.do(t, http.MethodPost, tc.path, tc.body)
				if code != tc.want || !strings.Contains(body, tc.says) {
					t.Errorf("%s answered %d %s\nwant %d saying %q", a.name, code, body, tc.want, tc.says)
				}
			}
		})
	}

	t.Run("a Revision's spec is immutable", func(t *testing.T) {
		ctx := context.Background()
		for _, a := range apis {
			rev := &v1alpha1.Revision{
				TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: "Revision"},
				ObjectMeta: metav1.ObjectMeta{Name: "imm-00001", Namespace: "default"},
				Spec:       v1alpha1.RevisionSpec{Container: corev1.Container{Image: "gcr.io/x:v1"}},
			}
			rev.SetDefaults()
			if a.name == "cluster" {
				body, _ := json.Marshal(rev)
				if code, out := a.do(t, http.MethodPost, "/apis/elafros.dev/v1alpha1/namespaces/default/revisions", string(body)); code != 201 {
					t.Fatalf("%s: creating the revision: %d %s", a.name, code, out)
				}
			} else {
				// elafros serve takes revisions only from configurations:
				// made as a Configuration makes it, owned by one.
				own := true
				rev.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.APIVersion, Kind: "Configuration", Name: "imm",
					UID: "0b3c2a9e-0000-4000-8000-000000000001", Controller: &own}}
				if _, err := st.Create(ctx, rev); err != nil {
					t.Fatal(err)
				}
			}
			code, out := a.do(t, http.MethodGet, "/apis/elafros.dev/v1alpha1/namespaces/default/revisions/imm-00001", "")
			if code != 200 {
				t.Fatalf("%s: GET %d %s", a.name, code, out)
			}
			var cur v1alpha1.Revision
			if err := json.Unmarshal([]byte(out), &cur); err != nil {
				t.Fatal(err)
			}
			cur.Spec.Container.Image = "gcr.io/x:edited"
			body, _ := json.Marshal(&cur)
			code, out = a.do(t, http.MethodPut, "/apis/elafros.dev/v1alpha1/namespaces/default/revisions/imm-00001", string(body))
			if code != 422 || !strings.Contains(out, "immutable") {
				t.Errorf("%s: PUT with a changed spec answered %d %s, want 422 saying immutable", a.name, code, out)
			}
			// A change outside spec (what the reconciler writes) is fine.
			cur.Spec.Container.Image = "gcr.io/x:v1"
			cur.Annotations = map[string]string{"elafros.dev/routes": "r"}
			body, _ = json.Marshal(&cur)
			if code, out = a.do(t, http.MethodPut, "/apis/elafros.dev/v1alpha1/namespaces/default/revisions/imm-00001", string(body)); code != 200 {
				t.Errorf("%s: PUT with the same spec answered %d %s, want 200", a.name, code, out)
			}
			if !bytes.Contains([]byte(out), []byte("gcr.io/x:v1")) {
				t.Errorf("%s: the spec changed: %s", a.name, out)
			}
		}
	})
}
