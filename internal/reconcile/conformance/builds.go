package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// RunBuilds runs scenarios 4 and 5 with the backend's real Builder (not
// the test double): the sources are git repositories made here, and
// images go to registry. Scenario 5's go_1_9_fn builds a function;
// scenario 4's nodejs_8_9_4 has no builder here and no Dockerfile, and is
// refused as errors.md's "Build failed" says.
func RunBuilds(t *testing.T, nb NewBackend, registry string) {
	t.Run("scenario-5-function-real-build", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		url, sha := gitRepo(t, map[string]string{
			"go.mod": "module example.com/fn\n\ngo 1.22\n",
			// The seed's entry point is "index"; a Go function must be
			// exported, so it is Index here.
			"fn/fn.go": "package fn\n\nimport \"net/http\"\n\n// Index answers hello.\nfunc Index(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(\"hello\")) }\n",
		})
		image := registry + "/elafros-samples/my-function"
		body := strings.NewReplacer(
			"url: https://...", "url: "+url,
			"commit: ...", "commit: "+sha,
			"value: index", "value: Index\n      - name: _PACKAGE\n        value: fn\n      - name: _PLATFORMS\n        value: linux/amd64",
			"gcr.io/...", image,
		).Replace(seedFunctionPOST)
		e.create(body)
		r1 := rev("my-function", 1)
		e.untilBuilt(r1)
		r := e.revision(r1)
		diff(t, "Ready", [3]string{"True", "", ""}, cond(r.Status.Conditions, v1alpha1.ConditionReady))
		diff(t, "BuildComplete", [3]string{"True", "", ""}, cond(r.Status.Conditions, v1alpha1.ConditionBuildComplete))
		diff(t, "imageSource", &v1alpha1.ImageSource{Repository: url, Commit: sha, Context: "."}, r.Status.ImageSource)
		if !strings.HasPrefix(r.Status.ImageDigest, image+"@sha256:") {
			t.Errorf("imageDigest = %q, want %s@sha256:…", r.Status.ImageDigest, image)
		}
		diff(t, "concurrencyModel", v1alpha1.ConcurrencySingleThreaded, r.Spec.ConcurrencyModel)
		diff(t, "latestReady", r1, e.config("my-function").Status.LatestReadyRevisionName)
	})
	t.Run("scenario-4-nodejs-refused", func(t *testing.T) {
		e := newEnv(t, nb, reconcile.Options{})
		url, sha := gitRepo(t, map[string]string{"package.json": "{\"name\": \"my-built\"}\n", "index.js": "require('http').createServer((q, s) => s.end('hi')).listen(process.env.PORT)\n"})
		body := strings.NewReplacer(
			"https://github.com/elafros/sample-app", url,
			"commit: a6f92d1", "commit: "+sha,
			"gcr.io/elafros-samples/my-built", registry+"/elafros-samples/my-built",
		).Replace(seedConfigBuildPOST)
		e.create(body)
		r1 := rev("my-built", 1)
		e.untilBuilt(r1)
		r := e.revision(r1)
		ready, failed := cond(r.Status.Conditions, v1alpha1.ConditionReady), cond(r.Status.Conditions, v1alpha1.ConditionBuildFailed)
		if ready[0] != "False" || ready[1] != v1alpha1.ReasonContainerMissing || !strings.HasPrefix(ready[2], v1alpha1.MessageBuildFailed+" ") {
			t.Errorf("Ready = %q, want False ContainerMissing %q…", ready, v1alpha1.MessageBuildFailed)
		}
		if failed[0] != "True" || failed[1] != "UnknownBuilder" ||
			!strings.Contains(failed[2], `build template "nodejs_8_9_4" needs a nodejs builder`) || !strings.Contains(failed[2], "Add a Dockerfile") {
			t.Errorf("BuildFailed = %q, want True UnknownBuilder naming nodejs_8_9_4, the builders and what to write", failed)
		}
		diff(t, "latestReady", "", e.config("my-built").Status.LatestReadyRevisionName)
	})
}

// untilBuilt runs passes until the revision's build is over (a real build
// takes a while on a busy machine).
func (e *env) untilBuilt(name string) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, errs := e.r.Pass(e.ctx, ns); len(errs) > 0 {
			e.t.Fatal(errs)
		}
		o, err := e.b.Store.Get(e.ctx, store.KindRevision, ns, name)
		if err == nil {
			c := o.(*v1alpha1.Revision).Status.Conditions
			if b := c.Get(v1alpha1.ConditionBuildComplete); b != nil && b.Status != "Unknown" && c.Get(v1alpha1.ConditionReady).Reason != v1alpha1.ReasonDeploying {
				e.settle()
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the build of %s did not finish within 10 minutes", name)
		}
	}
}

// gitRepo commits files into a new repository and returns its file://
// URL and the commit.
func gitRepo(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("seed sample", &git.CommitOptions{Author: &object.Signature{Name: "user1", Email: "user1@example.com", When: time.Unix(1516364160, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("file://%s", dir), h.String()
}
