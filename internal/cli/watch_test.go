package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// syncBuffer is an output that the watch writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// helloRepo is a git repository holding examples/hello (with a go.mod of
// its own, as a user's repository has), committed; edit replaces the
// manifest's text old with new before the commit.
func helloRepo(t *testing.T, edits ...string) (dir, sha string) {
	t.Helper()
	dir = t.TempDir()
	files := map[string]string{
		"go.mod":     "module example.com/hello\n\ngo 1.22\n",
		".gitignore": "/hello\n*.log\n",
	}
	for _, f := range []string{"elafros.yaml", "main.go", "main_test.go"} {
		b, err := os.ReadFile(filepath.Join("../../examples/hello", f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(b)
	}
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(files["elafros.yaml"], edits[i]) {
			t.Fatalf("examples/hello/elafros.yaml no longer holds %q", edits[i])
		}
		files["elafros.yaml"] = strings.Replace(files["elafros.yaml"], edits[i], edits[i+1], 1)
	}
	for name, body := range files {
		writeFile(t, dir, name, body)
	}
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("hello", &git.CommitOptions{Author: &object.Signature{Name: "Ada Lovelace", Email: "ada@example.com", When: time.Unix(1500000000, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, h.String()
}

// editGreeting rewrites main.go's greeting ("Hello %s!") to greeting.
func editGreeting(t *testing.T, dir, greeting string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	if !strings.Contains(src, `"Hello %s!\n"`) {
		t.Fatalf("main.go no longer greets with %q", `"Hello %s!\n"`)
	}
	writeFile(t, dir, "main.go", strings.Replace(src, `"Hello %s!\n"`, `"`+greeting+`\n"`, 1))
}

// startWatch deploys dir with Up and watches it; stop cancels the watch
// and waits for Watch to return, which must be nil (Ctrl-C is clean).
func startWatch(t *testing.T, dir string) (srv *serve.Server, out *syncBuffer, stop func()) {
	t.Helper()
	o := upOptions(t)
	o.BuildSource = dir
	s, upOut, errOut := streams()
	srv, err := Up(t.Context(), dir, o, 5*time.Minute, s)
	if err != nil {
		t.Fatalf("up: %v\n%s\n%s", err, upOut, errOut)
	}
	t.Cleanup(srv.Close)
	out = &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, srv, dir, WatchOptions{Debounce: 100 * time.Millisecond, Timeout: 5 * time.Minute}, IOStreams{Out: out, ErrOut: out})
	}()
	testutil.Eventually(t, 30*time.Second, "the watcher is armed", func() (bool, string) {
		return strings.Contains(out.String(), "Watching "+dir), out.String()
	})
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch after Ctrl-C = %v, want nil", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("Watch did not return within a minute of Ctrl-C")
		}
	}
	t.Cleanup(stop)
	return srv, out, stop
}

// get asks the router for host's /.
func getHost(t *testing.T, srv *serve.Server, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr+"/", nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func revisionNames(t *testing.T, srv *serve.Server) []string {
	t.Helper()
	revs, err := srv.Store.List(t.Context(), store.KindRevision, v1alpha1.DefaultNamespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range revs {
		names = append(names, r.GetName())
	}
	return names
}

// TestUpWatch is the inner loop: up --watch on a git repository holding
// examples/hello. Changing the greeting deploys a new revision that the
// router serves; a file .gitignore excludes is not a change; a broken edit
// prints the compiler's message, applies nothing, and the last good
// revision keeps serving; Ctrl-C ends the watch cleanly.
func TestUpWatch(t *testing.T) {
	t.Parallel()
	dir, sha := helloRepo(t)
	srv, out, stop := startWatch(t, dir)
	const host = "hello.default.localhost"
	if code, body := getHost(t, srv, host); code != 200 || body != "Hello world!\n" {
		t.Fatalf("GET after up = %d %q, want 200 %q", code, body, "Hello world!\n")
	}

	// An ignored file and an edit in one save burst: only the edit counts.
	writeFile(t, dir, "notes.log", "not a source\n")
	editGreeting(t, dir, "Howdy %s!")
	testutil.Eventually(t, 4*time.Minute, "the edited greeting is served", func() (bool, string) {
		code, body := getHost(t, srv, host)
		return code == 200 && body == "Howdy world!\n", body + "\n" + out.String()
	})
	testutil.Eventually(t, 10*time.Second, "the traffic is printed", func() (bool, string) {
		return strings.Contains(out.String(), "Deployed in"), out.String()
	})
	got := out.String()
	for _, want := range []string{"main.go changed: rebuilding.", "✓ Building", "✓ Promoting", "hello-00002"} {
		if !strings.Contains(got, want) {
			t.Errorf("watch output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "notes.log") {
		t.Errorf("a file .gitignore excludes was taken for a change:\n%s", got)
	}
	if diff := cmp.Diff([]string{"hello-00001", "hello-00002"}, revisionNames(t, srv)); diff != "" {
		t.Errorf("revisions (-want +got):\n%s", diff)
	}
	rev, err := srv.Store.Get(t.Context(), store.KindRevision, v1alpha1.DefaultNamespace, "hello-00002")
	if err != nil {
		t.Fatal(err)
	}
	// The working tree is dirty: the revision names the commit it started
	// from and the tree's own digest.
	if a := rev.GetAnnotations(); a[v1alpha1.GitCommitAnnotationKey] != sha || a[v1alpha1.SourceDigestAnnotationKey] == "" {
		t.Errorf("hello-00002 annotations = %v, want gitCommit %s and a sourceDigest", a, sha)
	}

	// A broken edit: the compiler's message, nothing applied.
	mark := len(out.String())
	writeFile(t, dir, "main.go", "package main\n\nfunc main() {\n\tprintln(\"hi\"\n}\n")
	// What still serves is printed after "Nothing applied.", once read
	// from the store: wait for all of it.
	testutil.Eventually(t, 2*time.Minute, "the compile error and what still serves are printed", func() (bool, string) {
		broken := out.String()[mark:]
		for _, want := range []string{"✗ Building hello", "main.go:4:14: syntax error", "Nothing applied.", "Still serving:", "hello-00002  100%"} {
			if !strings.Contains(broken, want) {
				return false, fmt.Sprintf("output of a broken edit lacks %q:\n%s", want, broken)
			}
		}
		return true, ""
	})
	if code, body := getHost(t, srv, host); code != 200 || body != "Howdy world!\n" {
		t.Errorf("GET after a broken edit = %d %q, want the last good revision's 200 %q", code, body, "Howdy world!\n")
	}
	if diff := cmp.Diff([]string{"hello-00001", "hello-00002"}, revisionNames(t, srv)); diff != "" {
		t.Errorf("a broken edit made a revision (-want +got):\n%s", diff)
	}
	stop()
	t.Logf("up --watch printed:\n%s", out)
}

// TestUpWatchCanary: with strategy canary, an edit's revision gets the
// first step, and the router sends requests to both.
func TestUpWatchCanary(t *testing.T) {
	t.Parallel()
	dir, _ := helloRepo(t,
		"strategy: automatic", "strategy: canary\n    steps: [20, 100]",
		"name: go\n", "name: go\n      arguments:\n      - name: _PLATFORMS\n        value: linux/amd64\n")
	srv, out, stop := startWatch(t, dir)
	const host = "hello.default.localhost"
	editGreeting(t, dir, "Howdy %s!")
	testutil.Eventually(t, 4*time.Minute, "the canary is deployed", func() (bool, string) {
		return strings.Contains(out.String(), "Deployed in"), out.String()
	})
	rt, err := srv.Store.Get(t.Context(), store.KindRoute, v1alpha1.DefaultNamespace, "hello")
	if err != nil {
		t.Fatal(err)
	}
	split := map[string]int{}
	for _, tt := range rt.(*v1alpha1.Route).Status.Traffic {
		split[tt.RevisionName] += tt.Percent
	}
	if diff := cmp.Diff(map[string]int{"hello-00001": 80, "hello-00002": 20}, split); diff != "" {
		t.Errorf("traffic after an edit under a canary (-want +got):\n%s\n%s", diff, out)
	}
	if !strings.Contains(out.String(), "20%") {
		t.Errorf("the printed traffic lacks the first step (20%%):\n%s", out)
	}
	seen := map[string]bool{}
	testutil.Eventually(t, 30*time.Second, "both revisions answer through the router", func() (bool, string) {
		if code, body := getHost(t, srv, host); code == 200 {
			seen[body] = true
		}
		return seen["Hello world!\n"] && seen["Howdy world!\n"], strings.Join(cmpKeys(seen), ", ")
	})
	stop()
}

func cmpKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestIgnorer: what the watch and the digest skip, from .gitignore files
// at and above the directory and from its .dockerignore.
func TestIgnorer(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if _, err := git.PlainInit(root, false); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "svc")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, ".gitignore", "*.log\n/svc/bin/\n")
	writeFile(t, dir, ".gitignore", "# build output\n/app\n")
	writeFile(t, dir, "sub/.gitignore", "*.tmp\n!keep.tmp\n")
	writeFile(t, dir, ".dockerignore", "testdata/**\n")
	ign, err := newIgnorer(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		isDir bool
		want  bool
	}{
		{"main.go", false, false},
		{"debug.log", false, true},           // the root's *.log
		{"sub/x.log", false, true},           // at any depth
		{"bin", true, true},                  // the root's /svc/bin/
		{"bin", false, false},                // only a directory
		{"app", false, true},                 // svc's /app
		{"sub/app", false, false},            // anchored at svc
		{"sub/a.tmp", false, true},           // sub's *.tmp
		{"sub/keep.tmp", false, false},       // and its negation
		{"a.tmp", false, false},              // sub's patterns stay in sub
		{"testdata/golden.txt", false, true}, // .dockerignore
	} {
		if got := ign.ignored(filepath.Join(dir, filepath.FromSlash(tc.path)), tc.isDir); got != tc.want {
			t.Errorf("ignored(%s, dir %v) = %v, want %v", tc.path, tc.isDir, got, tc.want)
		}
	}
}

// TestUpWatchCommand runs "elafros up --watch" as typed (flags and all) on
// a directory outside git, and stops it as Ctrl-C does: the command ends
// without an error and says so.
func TestUpWatchCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "go.mod", "module example.com/tiny\n\ngo 1.22\n")
	writeFile(t, dir, "main.go", "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n)\n\nfunc main() {\n\thttp.HandleFunc(\"/\", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, \"tiny\") })\n\t_ = http.ListenAndServe(\":\"+os.Getenv(\"PORT\"), nil)\n}\n")
	writeFile(t, dir, "elafros.yaml", "apiVersion: elafros.dev/v1alpha1\nkind: Service\nmetadata:\n  name: tiny\nspec:\n  build:\n    template:\n      name: go\n      arguments:\n      - name: _PLATFORMS\n        value: linux/amd64\n")
	out, errOut := &syncBuffer{}, &syncBuffer{}
	root := NewRootCommand(IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	root.SetArgs([]string{"up", dir, "--watch", "--debounce", "50ms", "--data-dir", t.TempDir(),
		"--api-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	testutil.Eventually(t, 4*time.Minute, "up --watch is watching", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("up --watch ended before watching: %v\n%s\n%s", err, out, errOut)
		default:
		}
		return strings.Contains(out.String(), "Watching "+dir), out.String()
	})
	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("up --watch after Ctrl-C = %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("up --watch did not stop within a minute of Ctrl-C")
	}
	if !strings.Contains(errOut.String(), "stopping") {
		t.Errorf("stderr lacks %q:\n%s", "stopping", errOut)
	}
}
