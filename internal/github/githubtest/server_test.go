package githubtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-cmp/cmp"
)

// do sends one request with the server's token and returns the status and
// decoded body.
func do(t *testing.T, s *Server, method, path, body string) (int, http.Header, any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(s.URL, "/")+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Accept", "application/vnd.github+json")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
		}
	}
	return resp.StatusCode, resp.Header, out
}

func TestRefusesWhatGitHubRefuses(t *testing.T) {
	s := NewServer(t)
	s.RefuseQuietly()
	s.AddComment("o/r", 1, "octocat", "hi")
	cid := s.Comments("o/r", 1)[0].ID
	dep := do2(t, s, "POST", "/repos/o/r/deployments", `{"ref":"main","auto_merge":false,"required_contexts":[]}`)
	tests := []struct {
		name, method, path, body string
		want                     int
		wantIn                   string
	}{
		{"deployment without ref", "POST", "/repos/o/r/deployments", `{"environment":"production"}`, 422, "ref"},
		{"deployment ref not a string", "POST", "/repos/o/r/deployments", `{"ref":5}`, 422, "ref"},
		{"status state outside the enum", "POST", "/repos/o/r/deployments/" + dep + "/statuses", `{"state":"done"}`, 422, "state"},
		{"status without state", "POST", "/repos/o/r/deployments/" + dep + "/statuses", `{}`, 422, "state"},
		{"reaction GitHub does not offer", "POST", "/repos/o/r/issues/comments/" + itoa(cid) + "/reactions", `{"content":"thumbsup"}`, 422, "content"},
		{"comment without body", "POST", "/repos/o/r/issues/1/comments", `{}`, 422, "body"},
		{"issue number not a number", "GET", "/repos/o/r/issues/one/comments", ``, 422, "issue_number"},
		{"path GitHub does not have", "GET", "/repos/o/r/rollouts", ``, 404, "not in GitHub's REST description"},
		{"method GitHub does not have", "PUT", "/repos/o/r/deployments", `{"ref":"main"}`, 404, "not in GitHub's REST description"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Refusals())
			got, _, body := do(t, s, tc.method, tc.path, tc.body)
			if got != tc.want {
				t.Errorf("status %d, want %d (%v)", got, tc.want, body)
			}
			refs := s.Refusals()
			if len(refs) != before+1 {
				t.Fatalf("refusals %d → %d, want one more", before, len(refs))
			}
			if !strings.Contains(refs[len(refs)-1], tc.wantIn) {
				t.Errorf("refusal %q does not name %q", refs[len(refs)-1], tc.wantIn)
			}
			if m, _ := body.(map[string]any)["message"].(string); m == "" {
				t.Errorf("answer %v has no GitHub message", body)
			}
		})
	}
	if n := len(s.Deployments("o/r")); n != 1 {
		t.Errorf("deployments %d, want only the well-formed one", n)
	}
}

func do2(t *testing.T, s *Server, method, path, body string) string {
	t.Helper()
	code, _, out := do(t, s, method, path, body)
	if code/100 != 2 {
		t.Fatalf("%s %s: %d %v", method, path, code, out)
	}
	return itoa(int64(out.(map[string]any)["id"].(float64)))
}

func itoa(n int64) string { return strings.TrimSpace(string(must(json.Marshal(n)))) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestAuth(t *testing.T) {
	s := NewServer(t)
	s.RefuseQuietly()
	req, _ := http.NewRequest("GET", s.URL+"repos/o/r/deployments", nil)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
	req.Header.Set("Authorization", "token nope")
	resp, err = s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unknown token: %d, want 401", resp.StatusCode)
	}
	if got := len(s.Refusals()); got != 2 {
		t.Errorf("refusals %d, want 2", got)
	}
}

func TestDeployments(t *testing.T) {
	s := NewServer(t)
	d1 := do2(t, s, "POST", "/repos/o/r/deployments", `{"ref":"main","auto_merge":false,"required_contexts":[],"environment":"production"}`)
	do2(t, s, "POST", "/repos/o/r/deployments/"+d1+"/statuses", `{"state":"success","environment_url":"http://a","log_url":"http://l"}`)
	d2 := do2(t, s, "POST", "/repos/o/r/deployments", `{"ref":"main","auto_merge":false,"required_contexts":[],"environment":"production"}`)
	do2(t, s, "POST", "/repos/o/r/deployments/"+d2+"/statuses", `{"state":"in_progress"}`)
	do2(t, s, "POST", "/repos/o/r/deployments/"+d2+"/statuses", `{"state":"success","environment_url":"http://b"}`)

	var got [][]string
	for _, d := range s.Deployments("o/r") {
		var states []string
		for _, st := range d.Statuses {
			states = append(states, st.State)
		}
		got = append(got, states)
	}
	// auto_inactive: the second success retires the first deployment.
	want := [][]string{{"success", "inactive"}, {"in_progress", "success"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}

	// GitHub's defaults: auto_merge merges the default branch instead
	// (202), and all contexts are required.
	s.SetDefaultBranchAhead("o/r", true)
	if code, _, body := do(t, s, "POST", "/repos/o/r/deployments", `{"ref":"topic"}`); code != 202 {
		t.Errorf("auto_merge with the default branch ahead: %d %v, want 202", code, body)
	}
	s.SetDefaultBranchAhead("o/r", false)
	s.SetCommitStatus("o/r", shaOf("topic"), CommitStatus{Context: "ci", State: "failure"})
	if code, _, _ := do(t, s, "POST", "/repos/o/r/deployments", `{"ref":"topic"}`); code != 409 {
		t.Errorf("failing contexts required by default: %d, want 409", code)
	}
	if code, _, _ := do(t, s, "POST", "/repos/o/r/deployments", `{"ref":"topic","required_contexts":[]}`); code != 201 {
		t.Errorf("required_contexts []: %d, want 201", code)
	}
	// Deleting an active deployment that is not alone is refused.
	if code, _, _ := do(t, s, "DELETE", "/repos/o/r/deployments/"+d2, ""); code != 422 {
		t.Errorf("delete active: %d, want 422", code)
	}
	if code, _, _ := do(t, s, "DELETE", "/repos/o/r/deployments/"+d1, ""); code != 204 {
		t.Errorf("delete inactive: %d, want 204", code)
	}
}

func TestCommentsReactionsAndPages(t *testing.T) {
	s := NewServer(t)
	for i := range 45 {
		s.AddComment("o/r", 7, "octocat", "c"+itoa(int64(i)))
	}
	code, h, body := do(t, s, "GET", "/repos/o/r/issues/7/comments?per_page=20&page=2", "")
	if code != 200 || len(body.([]any)) != 20 || !strings.Contains(h.Get("Link"), "page=3") {
		t.Errorf("page 2: %d, %d comments, Link %q", code, len(body.([]any)), h.Get("Link"))
	}
	_, h, body = do(t, s, "GET", "/repos/o/r/issues/7/comments?per_page=20&page=3", "")
	if len(body.([]any)) != 5 || h.Get("Link") != "" {
		t.Errorf("last page: %d comments, Link %q", len(body.([]any)), h.Get("Link"))
	}
	id := do2(t, s, "POST", "/repos/o/r/issues/7/comments", `{"body":"hello"}`)
	do2(t, s, "PATCH", "/repos/o/r/issues/comments/"+id, `{"body":"edited"}`)
	if code, _, _ := do(t, s, "POST", "/repos/o/r/issues/comments/"+id+"/reactions", `{"content":"eyes"}`); code != 201 {
		t.Errorf("first reaction: %d, want 201", code)
	}
	if code, _, _ := do(t, s, "POST", "/repos/o/r/issues/comments/"+id+"/reactions", `{"content":"eyes"}`); code != 200 {
		t.Errorf("same reaction again: %d, want 200", code)
	}
	cs := s.Comments("o/r", 7)
	last := cs[len(cs)-1]
	if last.Body != "edited" || len(last.Reactions) != 1 || last.Reactions[0].Content != "eyes" {
		t.Errorf("comment %+v", last)
	}
	if code, _, _ := do(t, s, "DELETE", "/repos/o/r/issues/comments/"+id, ""); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if n := len(s.Comments("o/r", 7)); n != 45 {
		t.Errorf("%d comments after delete, want 45", n)
	}
}

func TestPermissionsTeamsPullsChecks(t *testing.T) {
	s := NewServer(t)
	s.SetPermission("o/r", "mai", "maintain")
	s.SetTeamMember("o/release", "tea", "active")
	s.SetPullRequest("o/r", PullRequest{Number: 3, HeadSHA: "abc", HeadRef: "topic", HeadRepo: "fork/r", Merged: true, MergeCommitSHA: "def", State: "closed"})
	s.SetCheckRun("o/r", "abc", CheckRun{Name: "test", Status: "completed", Conclusion: "success"})
	s.SetCommitStatus("o/r", "abc", CommitStatus{Context: "ci", State: "pending"})

	_, _, p := do(t, s, "GET", "/repos/o/r/collaborators/mai/permission", "")
	_, _, none := do(t, s, "GET", "/repos/o/r/collaborators/stranger/permission", "")
	code, _, _ := do(t, s, "GET", "/orgs/o/teams/release/memberships/nobody", "")
	_, _, team := do(t, s, "GET", "/orgs/o/teams/release/memberships/tea", "")
	_, _, pr := do(t, s, "GET", "/repos/o/r/pulls/3", "")
	_, _, runs := do(t, s, "GET", "/repos/o/r/commits/abc/check-runs", "")
	_, _, st := do(t, s, "GET", "/repos/o/r/commits/abc/status", "")
	got := []any{
		p.(map[string]any)["permission"], p.(map[string]any)["role_name"],
		none.(map[string]any)["permission"], code, team.(map[string]any)["state"],
		pr.(map[string]any)["merge_commit_sha"], pr.(map[string]any)["head"].(map[string]any)["repo"].(map[string]any)["fork"],
		runs.(map[string]any)["total_count"], st.(map[string]any)["state"],
	}
	want := []any{"write", "maintain", "none", 404, "active", "def", true, float64(1), "pending"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFaults(t *testing.T) {
	s := NewServer(t)
	s.FailNext(1, 502)
	if code, _, _ := do(t, s, "GET", "/repos/o/r/deployments", ""); code != 502 {
		t.Errorf("first: %d, want 502", code)
	}
	if code, _, _ := do(t, s, "GET", "/repos/o/r/deployments", ""); code != 200 {
		t.Errorf("second: %d, want 200", code)
	}
	s.SecondaryRateLimitNext(3 * time.Second)
	code, h, _ := do(t, s, "GET", "/repos/o/r/deployments", "")
	if code != 403 || h.Get("Retry-After") != "3" {
		t.Errorf("secondary: %d Retry-After %q", code, h.Get("Retry-After"))
	}
	s.Inject(Fault{Operation: "issues/create-comment", Status: 500})
	if code, _, _ := do(t, s, "GET", "/repos/o/r/deployments", ""); code != 200 {
		t.Errorf("fault for another operation applied to list-deployments: %d", code)
	}
	if code, _, _ := do(t, s, "POST", "/repos/o/r/issues/1/comments", `{"body":"x"}`); code != 500 {
		t.Errorf("create-comment fault: %d", code)
	}
	want := []string{"repos/list-deployments", "repos/list-deployments", "repos/list-deployments",
		"repos/list-deployments", "issues/create-comment"}
	if diff := cmp.Diff(want, s.Operations()); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
}

func TestAppTokensAndDeliveries(t *testing.T) {
	s := NewServer(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.SetApp(42, &key.PublicKey, 7)
	atr := ghinstallation.NewAppsTransportFromPrivateKey(http.DefaultTransport, 42, key)
	atr.BaseURL = strings.TrimSuffix(s.URL, "/")
	itr := ghinstallation.NewFromAppsTransport(atr, 7)
	itr.BaseURL = atr.BaseURL
	tok, err := itr.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "ghs_") {
		t.Errorf("token %q", tok)
	}
	// The installation token works on repository endpoints.
	req, _ := http.NewRequest("GET", s.URL+"repos/o/r/deployments", nil)
	resp, err := (&http.Client{Transport: itr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with installation token: %d", resp.StatusCode)
	}

	ok := s.AddDelivery(Delivery{GUID: "g1", Event: "issue_comment", Action: "created", StatusCode: 200})
	failed := s.AddDelivery(Delivery{GUID: "g2", Event: "issue_comment", Action: "created", StatusCode: 503, Payload: json.RawMessage(`{"x":1}`)})
	_ = ok
	got := make(chan Delivery, 1)
	s.OnRedeliver(func(d Delivery) int { got <- d; return 200 })
	app := &http.Client{Transport: atr}
	resp, err = app.Get(s.URL + "app/hook/deliveries?per_page=1&status=failure")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 1 || list[0]["guid"] != "g2" || list[0]["status_code"] != float64(503) {
		t.Errorf("failed deliveries: %v", list)
	}
	resp, err = app.Post(s.URL+"app/hook/deliveries/"+itoa(failed)+"/attempts", "application/json", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("redeliver: %d", resp.StatusCode)
	}
	select {
	case d := <-got:
		if d.GUID != "g2" || string(d.Payload) != `{"x":1}` {
			t.Errorf("redelivered %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no redelivery")
	}
	if diff := cmp.Diff([]int64{failed}, s.Redeliveries()); diff != "" {
		t.Errorf("redeliveries (-want +got):\n%s", diff)
	}

	// A JWT from another key is refused.
	s.RefuseQuietly()
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	bad := ghinstallation.NewAppsTransportFromPrivateKey(http.DefaultTransport, 42, other)
	resp, err = (&http.Client{Transport: bad}).Get(s.URL + "app")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("JWT from another key: %d, want 401", resp.StatusCode)
	}
}

func TestSignature(t *testing.T) {
	// GitHub's documented test vector ("Validating webhook deliveries").
	got := Signature([]byte("It's a Secret to Everybody"), []byte("Hello, World!"))
	want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Errorf("Signature = %s, want %s", got, want)
	}
	body := Payload(t, "ping.json")
	req, err := NewWebhookRequest("http://x/webhook", "ping", "d-1", []byte("s"), body)
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("X-Hub-Signature-256") != Signature([]byte("s"), body) || req.Header.Get("X-GitHub-Event") != "ping" {
		t.Errorf("headers %v", req.Header)
	}
}
