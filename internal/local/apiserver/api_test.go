package apiserver_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const base = "/apis/elafros.dev/v1alpha1/namespaces/default"

type resp struct {
	code int
	body string
	obj  map[string]any
}

func do(t *testing.T, url, method, path, contentType, body string) resp {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{code: res.StatusCode, body: string(b)}
	_ = json.Unmarshal(b, &r.obj)
	return r
}

func field(o map[string]any, path ...string) any {
	var v any = o
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// The seed's scenario-2 and scenario-3 requests, verbatim bodies, as curl
// sends them (--data-binary @body.yaml).
func TestSeedRequestsVerbatim(t *testing.T) {
	_, url := newServer(t)
	route := `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - configurationName: my-service  # named reference to Configuration
      percent: 100  # automatically activate new Revisions from the configuration
`
	if r := do(t, url, "POST", base+"/routes", "application/yaml", route); r.code != 201 || field(r.obj, "metadata", "generation") != float64(1) {
		t.Fatalf("POST route: %d %s", r.code, r.body)
	}
	cfg := `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service
spec:
  revisionTemplate:
    spec:
      container:
        image: gcr.io/elafros-samples/hello:v1
        env:
        - name: FOO
          value: bar
        - name: HELLO
          value: world
`
	if r := do(t, url, "POST", base+"/configurations", "application/yaml", cfg); r.code != 201 {
		t.Fatalf("POST configuration: %d %s", r.code, r.body)
	}
	patch := `apiVersion: elafros.dev/v1alpha1
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
	r := do(t, url, "PATCH", base+"/configurations/my-service", "application/strategic-merge-patch+json", patch)
	if r.code != 200 {
		t.Fatalf("PATCH: %d %s", r.code, r.body)
	}
	env, _ := json.Marshal(field(r.obj, "spec", "revisionTemplate", "spec", "container", "env"))
	if string(env) != `[{"name":"FOO","value":"bar"},{"name":"HELLO","value":"blurg"}]` || field(r.obj, "metadata", "generation") != float64(2) {
		t.Errorf("after the env PATCH: env %s generation %v", env, field(r.obj, "metadata", "generation"))
	}
	typo := `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    Traffic: # percentages must total 100%
    - revisionName: def
      name: current
      percent: 0
`
	r = do(t, url, "PATCH", base+"/routes/my-service", "application/merge-patch+json", typo)
	if r.code != 400 || field(r.obj, "kind") != "Status" || !strings.Contains(r.body, `spec.rollout.Traffic: unknown field, did you mean \"traffic\"?`) {
		t.Errorf("typo PATCH: %d %s", r.code, r.body)
	}
	if g := do(t, url, "GET", base+"/routes/my-service", "", ""); field(g.obj, "metadata", "generation") != float64(1) {
		t.Errorf("the refused PATCH changed the route: %s", g.body)
	}
}

func TestErrorsAreStatusObjects(t *testing.T) {
	_, url := newServer(t)
	bad := `{"apiVersion":"elafros.dev/v1alpha1","kind":"Route","metadata":{"name":"r"},"spec":{"rollout":{"traffic":[{"revisionName":"a","percent":60},{"revisionName":"b","percent":30}]}}}`
	r := do(t, url, "POST", base+"/routes", "application/json", bad)
	if r.code != 422 || field(r.obj, "reason") != "Invalid" || !strings.Contains(r.body, "the route must have traffic percent sum equal to 100, got 90") {
		t.Errorf("invalid route: %d %s", r.code, r.body)
	}
	causes, _ := field(r.obj, "details", "causes").([]any)
	if len(causes) != 1 || field(causes[0].(map[string]any), "field") != "spec.rollout.traffic" {
		t.Errorf("causes = %v", causes)
	}
	r = do(t, url, "POST", base+"/routes", "application/yaml", "apiVersion: elafros.dev/v1alpha1\nkind: Route\nmetadata:\n  name: r\nspec:\n  traffic: []\n")
	if r.code != 400 || !strings.Contains(r.body, "request body:6:3: spec.traffic: unknown field; traffic lives at spec.rollout.traffic") {
		t.Errorf("spec.traffic: %d %s", r.code, r.body)
	}
	if r := do(t, url, "GET", base+"/routes/nope", "", ""); r.code != 404 || field(r.obj, "reason") != "NotFound" {
		t.Errorf("missing: %d %s", r.code, r.body)
	}
	if r := do(t, url, "GET", base+"/widgets", "", ""); r.code != 404 {
		t.Errorf("unknown resource: %d", r.code)
	}
	rev := `{"apiVersion":"elafros.dev/v1alpha1","kind":"Revision","metadata":{"name":"x-00001"},"spec":{"container":{"image":"img"}}}`
	if r := do(t, url, "POST", base+"/revisions", "application/json", rev); r.code != 403 || !strings.Contains(r.body, "revisions are created by configurations") {
		t.Errorf("revision POST by a person: %d %s", r.code, r.body)
	}
	if r := do(t, url, "PATCH", base+"/routes/r", "text/plain", "{}"); r.code != 415 {
		t.Errorf("bad patch type: %d %s", r.code, r.body)
	}
}

func TestOptimisticConcurrencyAndGenerateName(t *testing.T) {
	_, url := newServer(t)
	body := `{"apiVersion":"elafros.dev/v1alpha1","kind":"Configuration","metadata":{"generateName":"web-","labels":{"team":"a"}},"spec":{"revisionTemplate":{"spec":{"container":{"image":"img:1"}}}}}`
	r := do(t, url, "POST", base+"/configurations", "application/json", body)
	name, _ := field(r.obj, "metadata", "name").(string)
	if r.code != 201 || !strings.HasPrefix(name, "web-") || len(name) != len("web-")+5 {
		t.Fatalf("generateName: %d %q", r.code, name)
	}
	put := func(image string, rv any) resp {
		o := r.obj
		o["spec"].(map[string]any)["revisionTemplate"].(map[string]any)["spec"].(map[string]any)["container"].(map[string]any)["image"] = image
		o["metadata"].(map[string]any)["resourceVersion"] = rv
		b, _ := json.Marshal(o)
		return do(t, url, "PUT", base+"/configurations/"+name, "application/json", string(b))
	}
	rv := field(r.obj, "metadata", "resourceVersion")
	first := put("img:2", rv)
	if first.code != 200 || field(first.obj, "metadata", "generation") != float64(2) {
		t.Fatalf("PUT: %d %s", first.code, first.body)
	}
	if stale := put("img:3", rv); stale.code != 409 || field(stale.obj, "reason") != "Conflict" {
		t.Errorf("stale PUT: %d %s", stale.code, stale.body)
	}
	list := do(t, url, "GET", base+"/configurations?labelSelector=team%3Da", "", "")
	if items, _ := field(list.obj, "items").([]any); list.code != 200 || len(items) != 1 || field(list.obj, "kind") != "ConfigurationList" {
		t.Errorf("list by label: %d %s", list.code, list.body)
	}
	if none := do(t, url, "GET", base+"/configurations?labelSelector=team%3Db", "", ""); !strings.Contains(none.body, `"items": []`) {
		t.Errorf("empty list: %s", none.body)
	}
	if del := do(t, url, "DELETE", base+"/configurations/"+name, "", ""); del.code != 200 || field(del.obj, "status") != "Success" {
		t.Errorf("DELETE: %d %s", del.code, del.body)
	}
}

func TestWatchStreams(t *testing.T) {
	_, url := newServer(t)
	do(t, url, "POST", base+"/configurations", "application/json",
		`{"apiVersion":"elafros.dev/v1alpha1","kind":"Configuration","metadata":{"name":"a"},"spec":{"revisionTemplate":{"spec":{"container":{"image":"img:1"}}}}}`)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url+base+"/configurations?watch=true&timeoutSeconds=10", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(res.Body))
	next := func() (string, string) {
		t.Helper()
		var e struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"object"`
		}
		done := make(chan error, 1)
		go func() { done <- dec.Decode(&e) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event")
		}
		return e.Type, e.Object.Metadata.Name
	}
	if ty, n := next(); ty != "ADDED" || n != "a" {
		t.Errorf("first event %s %s, want the existing object as ADDED", ty, n)
	}
	do(t, url, "PATCH", base+"/configurations/a", "application/merge-patch+json", `{"metadata":{"labels":{"x":"y"}}}`)
	if ty, n := next(); ty != "MODIFIED" || n != "a" {
		t.Errorf("event %s %s, want MODIFIED a", ty, n)
	}
	do(t, url, "DELETE", base+"/configurations/a", "", "")
	if ty, _ := next(); ty != "DELETED" {
		t.Errorf("event %s, want DELETED", ty)
	}
}

func TestDiscovery(t *testing.T) {
	_, url := newServer(t)
	r := do(t, url, "GET", "/apis/elafros.dev/v1alpha1", "", "")
	if r.code != 200 || !strings.Contains(r.body, `"name": "routes"`) || !strings.Contains(r.body, `"name": "services/status"`) {
		t.Errorf("resource list: %d %s", r.code, r.body)
	}
	if r := do(t, url, "GET", "/apis", "", ""); !strings.Contains(r.body, `"elafros.dev/v1alpha1"`) {
		t.Errorf("groups: %s", r.body)
	}
}
