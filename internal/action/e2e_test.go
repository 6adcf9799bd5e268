package action_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github/githubtest"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

var actionBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "elafros-action-bin-")
	if err != nil {
		panic(err)
	}
	actionBin = filepath.Join(dir, "action")
	cmd := exec.Command("go", "build", "-o", actionBin, "../../cmd/action")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cmd/action:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plane is elafros serve on loopback with a counting proxy in front of
// its API (what the action writes is counted there), and GitHub played by
// githubtest.
type plane struct {
	t      *testing.T
	srv    *serve.Server
	api    string // the proxy's URL
	writes atomic.Int64
	gh     *githubtest.Server
	store  store.Store
}

const repoName = "Codertocat/Hello-World"

func newPlane(t *testing.T) *plane {
	t.Helper()
	srv, err := serve.Start(context.Background(), serve.Options{
		DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	p := &plane{t: t, srv: srv, gh: githubtest.NewServer(t)}
	u, _ := url.Parse(srv.APIURL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			p.writes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ps.Close)
	p.api = ps.URL
	if p.store, err = client.ForServer(srv.APIURL); err != nil {
		t.Fatal(err)
	}
	p.gh.SetPermission(repoName, "Codertocat", "admin")
	return p
}

// workspace is a git repository holding the hello app and a manifest.
func workspace(t *testing.T, manifest string) (dir, sha string) {
	t.Helper()
	dir = t.TempDir()
	src, err := os.ReadFile("../../examples/hello/main.go")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"go.mod": "module example.com/hello\n\ngo 1.26\n", "main.go": string(src), "elafros.yaml": manifest}
	return dir, commit(t, dir, files)
}

func commit(t *testing.T, dir string, files map[string]string) string { return commitTB(t, dir, files) }

func commitTB(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(dir, false)
	}
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	h, err := wt.Commit("change", &git.CommitOptions{Author: &object.Signature{Name: "Codertocat", Email: "c@example.com", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

const helloManifest = `apiVersion: elafros.dev/v1alpha1
kind: Service
metadata:
  name: hello
spec:
  build:
    template:
      name: go
      arguments:
      - name: _PLATFORMS
        value: linux/amd64
  revisionTemplate:
    spec:
      container:
        env:
        - name: TARGET
          value: %s
      timeoutSeconds: 30
  rollout:
    strategy: %s
    interval: 1s
`

// result is what one run of the action left: exit code, stdout (the
// runner's commands), outputs and the job summary.
type result struct {
	code    int
	stdout  string
	outputs map[string]string
	summary string
}

// runAction runs the action binary as a runner runs a container action:
// inputs as INPUT_* variables, the event file, GITHUB_OUTPUT and
// GITHUB_STEP_SUMMARY files, the workspace.
func (p *plane) runAction(ws, event, eventFile string, inputs map[string]string, edit func(map[string]any)) result {
	p.t.Helper()
	in := map[string]string{"server": p.api}
	for k, v := range inputs {
		in[k] = v
	}
	return runAction(p.t, p.gh, ws, event, eventFile, in, edit)
}

func runAction(t *testing.T, gh *githubtest.Server, ws, event, eventFile string, inputs map[string]string, edit func(map[string]any)) result {
	t.Helper()
	files := t.TempDir()
	payload, err := os.ReadFile(filepath.Join("../../../shared/testdata/github-webhooks", eventFile))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		payload, _ = json.Marshal(m)
	}
	eventPath := filepath.Join(files, "event.json")
	must(t, os.WriteFile(eventPath, payload, 0o644))
	out, summary := filepath.Join(files, "output"), filepath.Join(files, "summary")
	must(t, os.WriteFile(out, nil, 0o644))
	must(t, os.WriteFile(summary, nil, 0o644))
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GOCACHE=" + goenv(t, "GOCACHE"), "GOMODCACHE=" + goenv(t, "GOMODCACHE"),
		"GOFLAGS=-mod=mod", "GITHUB_ACTIONS=true", "CI=true",
		"GITHUB_EVENT_NAME=" + event, "GITHUB_EVENT_PATH=" + eventPath, "GITHUB_WORKSPACE=" + ws,
		"GITHUB_REPOSITORY=" + repoName, "GITHUB_SHA=" + headSHA(t, ws), "GITHUB_ACTOR=Codertocat",
		"GITHUB_API_URL=" + strings.TrimSuffix(gh.URL, "/"), "GITHUB_SERVER_URL=https://github.com", "GITHUB_RUN_ID=4242",
		"GITHUB_OUTPUT=" + out, "GITHUB_STEP_SUMMARY=" + summary,
		"INPUT_GITHUB-TOKEN=" + gh.Token, "INPUT_TIMEOUT=4m",
	}
	for k, v := range inputs {
		env = append(env, "INPUT_"+strings.ToUpper(k)+"="+v)
	}
	cmd := exec.Command(actionBin)
	cmd.Env, cmd.Dir = env, ws
	code, stdout := runCommand(t, cmd)
	outputs := parseOutputs(t, out)
	s, _ := os.ReadFile(summary)
	secrets := []string{gh.Token}
	for _, line := range strings.Split(inputs["kubeconfig"], "\n") {
		if line = strings.TrimSpace(line); len(line) >= 4 {
			secrets = append(secrets, line)
		}
	}
	masked := map[string]bool{}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if m, ok := strings.CutPrefix(line, "::add-mask::"); ok {
			masked[m] = true // the runner reads the mask and hides the value from then on
			continue
		}
		for _, sec := range secrets {
			if strings.Contains(line, sec) {
				t.Errorf("a secret was printed: %q", line)
			}
		}
	}
	for _, sec := range secrets {
		if !masked[sec] || strings.Contains(string(s), sec) {
			t.Errorf("secret %q was not masked first, or is in the summary", sec)
		}
	}
	if r := gh.Refusals(); len(r) > 0 {
		t.Errorf("requests GitHub would refuse: %v", r)
	}
	return result{code: code, stdout: stdout.String(), outputs: outputs, summary: string(s)}
}

// runCommand runs cmd and returns its exit status and combined output; a
// command that cannot start fails the test.
func runCommand(t *testing.T, cmd *exec.Cmd) (int, fmt.Stringer) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), &out
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, &out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func goenv(t *testing.T, k string) string {
	out, err := exec.Command("go", "env", k).Output()
	must(t, err)
	return strings.TrimSpace(string(out))
}

func headSHA(t *testing.T, dir string) string {
	repo, err := git.PlainOpen(dir)
	must(t, err)
	h, err := repo.Head()
	must(t, err)
	return h.Hash().String()
}

// parseOutputs reads GITHUB_OUTPUT's name<<delimiter blocks.
func parseOutputs(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, delim, ok := strings.Cut(sc.Text(), "<<")
		if !ok {
			t.Fatalf("output line %q is not name<<delimiter", sc.Text())
		}
		if !strings.HasPrefix(delim, "ghadelimiter_") || len(delim) < 20 {
			t.Errorf("output %s: delimiter %q is not random", name, delim)
		}
		var lines []string
		for sc.Scan() && sc.Text() != delim {
			lines = append(lines, sc.Text())
		}
		out[name] = strings.Join(lines, "\n")
	}
	return out
}

func (p *plane) get(host string) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.srv.HTTPAddr+"/", nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (p *plane) route(name string) *v1alpha1.Route {
	o, err := p.store.Get(context.Background(), store.KindRoute, "default", name)
	must(p.t, err)
	return o.(*v1alpha1.Route)
}

func TestDeployPreviewRolloutPromote(t *testing.T) {
	p := newPlane(t)
	ws, sha := workspace(t, fmt.Sprintf(helloManifest, "world", "canary"))

	// push → deploy: built from the commit, pushed to serve's registry, deployed.
	r := p.runAction(ws, "push", "push.json", nil, nil)
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stdout)
	}
	if r.outputs["revision"] != "hello-00001" || !strings.Contains(r.outputs["image"], "@sha256:") || !strings.HasPrefix(r.outputs["url"], "http://hello.default.localhost:") {
		t.Errorf("outputs = %v", r.outputs)
	}
	var traffic []v1alpha1.TrafficTarget
	must(t, json.Unmarshal([]byte(r.outputs["traffic"]), &traffic))
	if len(traffic) != 1 || traffic[0].RevisionName != "hello-00001" || traffic[0].Percent != 100 {
		t.Errorf("traffic output = %s", r.outputs["traffic"])
	}
	for _, want := range []string{"| service/hello | created |", "```mermaid", "hello-00001", r.outputs["image"]} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
	if code, body := p.get("hello.default.localhost"); code != 200 || body != "Hello world!\n" {
		t.Errorf("GET hello = %d %q", code, body)
	}
	deps := p.gh.Deployments(repoName)
	if len(deps) != 1 || deps[0].Ref != sha || deps[0].Environment != "production" {
		t.Fatalf("deployments = %+v", deps)
	}
	var states []string
	for _, st := range deps[0].Statuses {
		states = append(states, st.State)
	}
	if strings.Join(states, ",") != "in_progress,success" || deps[0].Statuses[1].EnvironmentURL != r.outputs["url"] ||
		deps[0].Statuses[1].LogURL != "https://github.com/"+repoName+"/actions/runs/4242" {
		t.Errorf("deployment statuses = %+v", deps[0].Statuses)
	}
	if r.outputs["deployment-id"] != fmt.Sprint(deps[0].ID) {
		t.Errorf("deployment-id = %q, want %d", r.outputs["deployment-id"], deps[0].ID)
	}
	rev, err := p.store.Get(context.Background(), store.KindRevision, "default", "hello-00001")
	must(t, err)
	if rev.GetAnnotations()[v1alpha1.GitCommitAnnotationKey] != sha || rev.GetLabels()[v1alpha1.RepositoryLabelKey] != "codertocat.hello-world" {
		t.Errorf("revision provenance: %v %v", rev.GetAnnotations(), rev.GetLabels())
	}

	// The same commit again (a re-run): the same image (the builds are
	// reproducible), no new revision. Another commit of the same code is a
	// new image: it carries its commit in its OCI labels.
	r = p.runAction(ws, "push", "push.json", nil, nil)
	if r.code != 0 || r.outputs["revision"] != "hello-00001" || !strings.Contains(r.summary, "unchanged: no new revision") {
		t.Fatalf("an unchanged push: exit %d outputs %v\n%s\n%s", r.code, r.outputs, r.stdout, r.summary)
	}

	// A change, merged by pull request #5: a canary at the first step,
	// whose revision remembers the pull request.
	merged := commit(t, ws, map[string]string{"elafros.yaml": fmt.Sprintf(helloManifest, "canary", "canary")})
	p.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 5, State: "closed", Merged: true, MergeCommitSHA: merged,
		HeadSHA: strings.Repeat("5", 40), HeadRef: "canary", BaseRef: "main", User: "Codertocat"})
	r = p.runAction(ws, "push", "push.json", nil, nil)
	if r.code != 0 {
		t.Fatalf("second deploy: exit %d\n%s", r.code, r.stdout)
	}
	want := []v1alpha1.TrafficTarget{{Name: "current", RevisionName: "hello-00001", Percent: 95}, {Name: "next", RevisionName: "hello-00002", Percent: 5}}
	if got := p.route("hello").Status.Traffic; !equalTraffic(got, want) {
		t.Errorf("canary traffic = %+v, want %+v", got, want)
	}
	rev2, err := p.store.Get(context.Background(), store.KindRevision, "default", "hello-00002")
	must(t, err)
	if got := rev2.GetAnnotations()[v1alpha1.PullRequestAnnotationKey]; got != "5" || !strings.Contains(r.stdout, "merged pull request #5") {
		t.Errorf("the merged revision's pull request = %q, want 5\n%s", got, r.stdout)
	}

	// A bad manifest: annotated on its line, the step fails, nothing changes.
	commit(t, ws, map[string]string{"elafros.yaml": strings.Replace(fmt.Sprintf(helloManifest, "x", "canary"), "timeoutSeconds: 30", "timeoutSeconds: 9000", 1)})
	writes := p.writes.Load()
	r = p.runAction(ws, "push", "push.json", nil, nil)
	if r.code != 1 || !strings.Contains(r.stdout, "::error col=23,file=elafros.yaml,line=18::spec.revisionTemplate.spec.timeoutSeconds") {
		t.Errorf("bad manifest: exit %d\n%s", r.code, r.stdout)
	}
	if w := p.writes.Load() - writes; w != 0 {
		t.Errorf("a bad manifest made %d writes", w)
	}

	// Dry run: the plan in the summary, zero writes.
	commit(t, ws, map[string]string{"elafros.yaml": fmt.Sprintf(helloManifest, "dry", "canary")})
	writes = p.writes.Load()
	r = p.runAction(ws, "push", "push.json", map[string]string{"dry-run": "true"}, nil)
	if r.code != 0 || !strings.Contains(r.summary, "**Dry run**") || !strings.Contains(r.summary, "| service/hello | configured |") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.code, r.stdout, r.summary)
	}
	if w := p.writes.Load() - writes; w != 0 {
		t.Errorf("a dry run made %d writes", w)
	}

	// workflow_dispatch with a rollout: 50%, then a refusal.
	r = p.runAction(ws, "workflow_dispatch", "workflow_dispatch.json", map[string]string{"service": "hello", "rollout": "50"}, nil)
	if r.code != 0 {
		t.Fatalf("rollout 50: exit %d\n%s", r.code, r.stdout)
	}
	h, err := deploy.History(p.route("hello"))
	must(t, err)
	if last := h[len(h)-1]; last.Actor != "Codertocat" || !strings.Contains(last.Reason, "rollout") || last.To[1].Percent != 50 {
		t.Errorf("audit history's last move = %+v", last)
	}
	r = p.runAction(ws, "workflow_dispatch", "workflow_dispatch.json", map[string]string{"service": "hello", "rollout": "150"}, nil)
	if r.code != 2 || !strings.Contains(r.stdout, "input rollout") {
		t.Errorf("rollout 150: exit %d\n%s", r.code, r.stdout)
	}

	// A pull request: previewed at 0% as pr-2, one sticky comment.
	r = p.runAction(ws, "pull_request", "pull_request.opened.json", nil, nil)
	if r.code != 0 {
		t.Fatalf("preview: exit %d\n%s", r.code, r.stdout)
	}
	if !strings.HasPrefix(r.outputs["preview-url"], "http://pr-2.hello.default.localhost:") || r.outputs["revision"] != "hello-pr-2-00001" {
		t.Errorf("preview outputs = %v", r.outputs)
	}
	if code, body := p.get("pr-2.hello.default.localhost"); code != 200 || body != "Hello dry!\n" {
		t.Errorf("GET pr-2 = %d %q", code, body)
	}
	if got := p.route("hello").Status.Traffic; totalOf(got, "hello-pr-2-00001") != 0 {
		t.Errorf("the preview got traffic: %+v", got)
	}
	cs := p.gh.Comments(repoName, 2)
	if len(cs) != 1 || !strings.Contains(cs[0].Body, "pr-2.hello.default.localhost") {
		t.Errorf("comments = %+v", cs)
	}
	if deps := p.gh.Deployments(repoName); deps[len(deps)-1].Environment != "pr-2" {
		t.Errorf("preview deployment = %+v", deps[len(deps)-1])
	}
	// Synchronize again: still one comment.
	r = p.runAction(ws, "pull_request", "pull_request.synchronize.json", nil, nil)
	if r.code != 0 || len(p.gh.Comments(repoName, 2)) != 1 {
		t.Errorf("synchronize: exit %d, %d comments\n%s", r.code, len(p.gh.Comments(repoName, 2)), r.stdout)
	}
	// From a fork: refused with the reason.
	r = p.runAction(ws, "pull_request", "pull_request.opened.json", nil, func(m map[string]any) {
		m["pull_request"].(map[string]any)["head"].(map[string]any)["repo"].(map[string]any)["full_name"] = "mallory/Hello-World"
	})
	if r.code != 1 || !strings.Contains(r.stdout, "fork") {
		t.Errorf("fork: exit %d\n%s", r.code, r.stdout)
	}
	// Closed: the target goes.
	r = p.runAction(ws, "pull_request", "pull_request.closed.json", nil, nil)
	if r.code != 0 || totalOf(p.route("hello").Spec.Rollout.Traffic, "hello-pr-2-00001") != -1 {
		t.Errorf("closed: exit %d, route %+v\n%s", r.code, p.route("hello").Spec.Rollout.Traffic, r.stdout)
	}

	// Schedule: promotion moves the canary one step once its interval passed.
	testutil.Eventually(t, 30*time.Second, "scheduled promotion moves next to 100", func() (bool, string) {
		r = p.runAction(ws, "schedule", "push.json", nil, nil)
		if r.code != 0 {
			t.Fatalf("promote: exit %d\n%s", r.code, r.stdout)
		}
		return strings.Contains(r.summary, "| finished |"), r.summary
	})
	// The pull request that merged the canary heard of each step.
	var told []string
	for _, c := range p.gh.Comments(repoName, 5) {
		if strings.HasPrefix(c.Body, "Scheduled promotion: `hello`") {
			told = append(told, c.Body)
		}
	}
	if len(told) == 0 || !strings.Contains(told[len(told)-1], "finished") || !strings.Contains(told[len(told)-1], "hello-00002") {
		t.Errorf("pull request #5 was told %q; want each step, ending with finished", told)
	}
}

func equalTraffic(a, b []v1alpha1.TrafficTarget) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].RevisionName != b[i].RevisionName || a[i].Percent != b[i].Percent {
			return false
		}
	}
	return true
}

// totalOf is a revision's share (-1 when the traffic does not name it).
func totalOf(t []v1alpha1.TrafficTarget, rev string) int {
	n := -1
	for _, x := range t {
		if x.RevisionName == rev {
			n = max(n, 0) + x.Percent
		}
	}
	return n
}
