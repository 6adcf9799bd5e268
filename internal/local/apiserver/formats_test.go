package apiserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi3"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
)

// seedRoute creates the seed's route with a status of two targets.
func seedRoute(t *testing.T, st *client.Store) {
	t.Helper()
	ctx := t.Context()
	rt := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "my-service", Namespace: "default"},
		Spec: v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: []v1alpha1.TrafficTarget{{ConfigurationName: "my-service", Percent: 100}}}}}
	o, err := st.Create(ctx, rt)
	if err != nil {
		t.Fatal(err)
	}
	rt = o.(*v1alpha1.Route)
	rt.Status.Domain = "my-service.default.example.com"
	rt.Status.Traffic = []v1alpha1.TrafficTarget{{RevisionName: "my-service-00001", Percent: 75}, {RevisionName: "my-service-00002", Percent: 25, Name: "next"}}
	rt.Status.Conditions.Set(v1alpha1.Condition{Type: "RolloutComplete", Status: "True"}, metav1.Now())
	if _, err := st.UpdateStatus(ctx, rt); err != nil {
		t.Fatal(err)
	}
}

func getWithAccept(t *testing.T, url, accept string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	return res.StatusCode, res.Header.Get("Content-Type"), []byte(b.String())
}

// kubectl's Accept header for get.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

// TestTable checks the rows kubectl get prints: the Route CRD's printer
// columns evaluated as kube-apiserver evaluates them for custom resources
// (a [*] column shows the first match), a missing value as an empty
// cell, and row objects as PartialObjectMetadata.
func TestTable(t *testing.T) {
	st, url := newServer(t)
	seedRoute(t, st)
	rt := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "default"},
		Spec: v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: []v1alpha1.TrafficTarget{{ConfigurationName: "bare", Percent: 100}}}}}
	if _, err := st.Create(t.Context(), rt); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, includeObject string
		wantRows                  [][]any
	}{
		{"list", base + "/routes", "", [][]any{
			{"bare", nil, nil, nil, nil, "0s"},
			{"my-service", "my-service.default.example.com", "my-service-00001", "75", "True", "0s"},
		}},
		{"one object", base + "/routes/my-service", "", [][]any{
			{"my-service", "my-service.default.example.com", "my-service-00001", "75", "True", "0s"},
		}},
		{"all namespaces, by name", "/apis/elafros.dev/v1alpha1/routes?fieldSelector=metadata.name%3Dbare", "", [][]any{
			{"bare", nil, nil, nil, nil, "0s"},
		}},
		{"full objects", base + "/routes?fieldSelector=metadata.name%3Dbare&includeObject=Object", "Object", [][]any{
			{"bare", nil, nil, nil, nil, "0s"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ct, body := getWithAccept(t, url+tc.path, tableAccept)
			if code != 200 || ct != "application/json" {
				t.Fatalf("%d %s: %s", code, ct, body)
			}
			var tbl metav1.Table
			if err := json.Unmarshal(body, &tbl); err != nil {
				t.Fatal(err)
			}
			if tbl.Kind != "Table" || tbl.APIVersion != "meta.k8s.io/v1" || tbl.ResourceVersion == "" {
				t.Errorf("table type %s %s, resourceVersion %q", tbl.APIVersion, tbl.Kind, tbl.ResourceVersion)
			}
			var cols []string
			for _, c := range tbl.ColumnDefinitions {
				cols = append(cols, c.Name+":"+c.Type)
			}
			if d := cmp.Diff([]string{"Name:string", "Domain:string", "Revisions:string", "Percents:string", "Ready:string", "Age:date"}, cols); d != "" {
				t.Errorf("columns (-want +got):\n%s", d)
			}
			var rows [][]any
			for _, r := range tbl.Rows {
				// Age is relative to now: an object created in this test
				// is seconds old.
				if age, _ := r.Cells[len(r.Cells)-1].(string); strings.HasSuffix(age, "s") {
					r.Cells[len(r.Cells)-1] = "0s"
				}
				rows = append(rows, r.Cells)
				var meta struct {
					Kind     string            `json:"kind"`
					Metadata metav1.ObjectMeta `json:"metadata"`
					Spec     json.RawMessage   `json:"spec"`
				}
				if err := json.Unmarshal(r.Object.Raw, &meta); err != nil {
					t.Fatal(err)
				}
				wantKind := "PartialObjectMetadata"
				if tc.includeObject == "Object" {
					wantKind = "Route"
					if len(meta.Spec) == 0 {
						t.Errorf("row object has no spec with includeObject=Object")
					}
				}
				if meta.Kind != wantKind || meta.Metadata.Name != r.Cells[0] || meta.Metadata.UID == "" {
					t.Errorf("row object: kind %q name %q uid %q; want %s of %v", meta.Kind, meta.Metadata.Name, meta.Metadata.UID, wantKind, r.Cells[0])
				}
			}
			if d := cmp.Diff(tc.wantRows, rows); d != "" {
				t.Errorf("rows (-want +got):\n%s", d)
			}
		})
	}
	t.Run("plain JSON first", func(t *testing.T) {
		_, _, body := getWithAccept(t, url+base+"/routes/my-service", "application/json,"+tableAccept)
		if !strings.Contains(string(body), `"kind": "Route"`) {
			t.Errorf("Accept that prefers JSON got: %.200s", body)
		}
	})
	for _, bad := range []string{"?includeObject=Everything", "?fieldSelector=spec.domain%3Dx"} {
		t.Run("bad "+bad, func(t *testing.T) {
			code, _, body := getWithAccept(t, url+base+"/routes"+bad, tableAccept)
			if code != 400 || !strings.Contains(string(body), "accepted") {
				t.Errorf("%d %s; want 400 naming what is accepted", code, body)
			}
		})
	}
}

// TestTableWatch checks kubectl get -w's stream: each event is a one-row
// Table.
func TestTableWatch(t *testing.T) {
	st, url := newServer(t)
	seedRoute(t, st)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+base+"/routes?watch=true&fieldSelector=metadata.name%3Dmy-service", nil)
	req.Header.Set("Accept", tableAccept)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	var ev struct {
		Type   string       `json:"type"`
		Object metav1.Table `json:"object"`
	}
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "ADDED" || ev.Object.Kind != "Table" || len(ev.Object.Rows) != 1 || ev.Object.Rows[0].Cells[1] != "my-service.default.example.com" {
		t.Fatalf("first event: %+v", ev)
	}
	if err := st.Delete(ctx, "Route", "default", "my-service"); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "DELETED" || len(ev.Object.Rows) != 1 || ev.Object.Rows[0].Cells[0] != "my-service" {
		t.Errorf("second event: %+v", ev)
	}
}

// TestOpenAPI reads the documents as kubectl does, with client-go: the v3
// group document has, for every kind that can be patched, a PATCH
// operation carrying the kind and the fieldValidation parameter (so
// kubectl apply validates on the server), and schemas named as on a
// cluster; the v2 document parses as protobuf.
func TestOpenAPI(t *testing.T) {
	_, url := newServer(t)
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: url})
	if err != nil {
		t.Fatal(err)
	}
	root := openapi3.NewRoot(dc.OpenAPIV3())
	gv, err := root.GVSpec(v1alpha1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range v1alpha1.Kinds {
		s, ok := gv.Components.Schemas["dev.elafros.v1alpha1."+k.Kind]
		if !ok {
			t.Errorf("no schema for %s", k.Kind)
			continue
		}
		if _, ok := s.Properties["spec"]; !ok {
			t.Errorf("%s schema has no spec", k.Kind)
		}
		if md := s.Properties["metadata"]; len(md.AllOf) != 1 || !strings.HasSuffix(md.AllOf[0].Ref.String(), "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta") {
			t.Errorf("%s metadata is not ObjectMeta: %+v", k.Kind, md)
		}
		path := "/apis/elafros.dev/v1alpha1/namespaces/{namespace}/" + k.Plural + "/{name}"
		item, ok := gv.Paths.Paths[path]
		if !ok {
			t.Errorf("no path %s", path)
			continue
		}
		patchable := k.Kind != "Revision"
		if (item.Patch != nil) != patchable {
			t.Errorf("%s: PATCH operation present=%v, want %v (as discovery's verbs)", path, item.Patch != nil, patchable)
		}
		if item.Patch == nil {
			continue
		}
		var gvk map[string]string
		if err := item.Patch.Extensions.GetObject("x-kubernetes-group-version-kind", &gvk); err != nil || gvk["kind"] != k.Kind {
			t.Errorf("%s PATCH: gvk %v (%v)", path, gvk, err)
		}
		found := false
		for _, p := range item.Patch.Parameters {
			found = found || (p.Name == "fieldValidation" && p.In == "query")
		}
		if !found {
			t.Errorf("%s PATCH lacks the fieldValidation query parameter", path)
		}
		var types []string
		for ct := range item.Patch.RequestBody.Content {
			types = append(types, ct)
		}
		if strings.Contains(strings.Join(types, ","), "strategic") {
			t.Errorf("%s PATCH offers %v: a cluster offers no strategic merge patch for custom resources", path, types)
		}
	}
	if _, ok := gv.Components.Schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]; !ok {
		t.Error("no ObjectMeta schema")
	}
	doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatalf("v2 (protobuf): %v", err)
	}
	names := map[string]bool{}
	for _, d := range doc.GetDefinitions().GetAdditionalProperties() {
		names[d.GetName()] = true
	}
	for _, want := range []string{"dev.elafros.v1alpha1.Route", "dev.elafros.v1alpha1.RouteList", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"} {
		if !names[want] {
			t.Errorf("v2 definitions lack %s", want)
		}
	}
	if code, ct, body := getWithAccept(t, url+"/openapi/v2", "application/json"); code != 200 || ct != "application/json" || !strings.Contains(string(body), `"swagger":"2.0"`) {
		t.Errorf("v2 as JSON: %d %s %.100s", code, ct, body)
	}
}
