package build

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/process/processtest"
)

func gitSpec(url, commit, template string, args ...string) v1alpha1.BuildSpec {
	spec := v1alpha1.BuildSpec{
		Source:   &v1alpha1.SourceSpec{Git: &v1alpha1.GitSourceSpec{URL: url, Commit: commit}},
		Template: v1alpha1.TemplateInstantiationSpec{Name: template},
	}
	for i := 0; i+1 < len(args); i += 2 {
		spec.Template.Arguments = append(spec.Template.Arguments, v1alpha1.ArgumentSpec{Name: args[i], Value: args[i+1]})
	}
	return spec
}

// TestGoBuilder builds a main package for both platforms, pulls the index
// and runs the amd64 binary.
func TestGoBuilder(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	sha := r.commit("app", map[string]string{"go.mod": appGoMod, "main.go": appMain})
	b := newBuilder(t, Options{Registry: reg})

	state, err := b.Build(context.Background(), "default", "app-00001", gitSpec(r.url(), sha, TemplateGo), "")
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, b.Log("default", "app-00001"))
	}
	wantPrefix := reg + "/default/app-00001@sha256:"
	if !strings.HasPrefix(state.Image, wantPrefix) || !state.Done || state.Failed {
		t.Fatalf("Build = %+v, want Done with an image %s…", state, wantPrefix)
	}
	if diff := cmp.Diff(&v1alpha1.ImageSource{Repository: r.url(), Commit: sha, Context: "."}, state.Source); diff != "" {
		t.Errorf("Source (-want +got):\n%s", diff)
	}
	if got, found, err := b.Status(context.Background(), "default", "app-00001"); err != nil || !found || got.Image != state.Image {
		t.Errorf("Status after Build = %+v, %v, %v; want the built state", got, found, err)
	}

	idx := pullIndex(t, state.Image)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type = %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	var plats []string
	for _, d := range m.Manifests {
		plats = append(plats, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, plats); diff != "" {
		t.Errorf("index platforms (-want +got):\n%s", diff)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		cf, err := imageFor(t, idx, arch).ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want := v1.Config{
			Entrypoint: []string{"/app"},
			Env:        []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			WorkingDir: "/",
			User:       "65532",
			Labels:     map[string]string{LabelSource: r.url(), LabelRevision: sha},
		}
		if diff := cmp.Diff(want, cf.Config); diff != "" {
			t.Errorf("linux/%s config (-want +got):\n%s", arch, diff)
		}
		if layers, err := imageFor(t, idx, arch).Layers(); err != nil || len(layers) != 2 {
			t.Errorf("linux/%s has %d layers (%v), want 2: the CA bundle and /app", arch, len(layers), err)
		}
		if cf.Architecture != arch || cf.OS != "linux" || cf.Created.Unix() != 0 {
			t.Errorf("linux/%s config: os/arch %s/%s created %v, want linux/%s at the epoch", arch, cf.OS, cf.Architecture, cf.Created, arch)
		}
	}

	base, _ := runApp(t, extractApp(t, imageFor(t, idx, "amd64")), "GREETING=elafros")
	if code, body := get(t, base+"/"); code != http.StatusOK || body != "hello from elafros\n" {
		t.Errorf("GET / = %d %q, want 200 %q", code, body, "hello from elafros\n")
	}
}

// TestGoBuilderReproducible builds one commit from two clones (two
// builders, two work directories) and a changed commit.
func TestGoBuilderReproducible(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	first := r.commit("app", map[string]string{"go.mod": appGoMod, "main.go": appMain})
	second := r.commit("change", map[string]string{"main.go": strings.Replace(appMain, "hello from", "hi from", 1)})

	build := func(commit, dest string) string {
		t.Helper()
		b := newBuilder(t, Options{})
		state, err := b.Build(context.Background(), "default", "app", gitSpec(r.url(), commit, TemplateGo, ArgPlatforms, "linux/amd64"), dest)
		if err != nil {
			t.Fatalf("Build of %s: %v\n%s", commit, err, b.Log("default", "app"))
		}
		if testing.Verbose() {
			t.Log(b.Log("default", "app"))
		}
		_, digest, _ := strings.Cut(state.Image, "@")
		return digest
	}
	a := build(first, reg+"/one/app")
	b := build(first, reg+"/two/app:v1")
	if a != b {
		t.Errorf("two builds of %s gave %s and %s, want the same digest", first, a, b)
	}
	if c := build(second, reg+"/one/app"); c == a {
		t.Errorf("a changed source gave the same digest %s", c)
	}
	// The tag was pushed as well.
	if got := pullIndex(t, reg+"/two/app:v1"); got == nil {
		t.Error("the tag v1 was not pushed")
	}
}

const fnGoMod = "module example.com/fn\n\ngo 1.22\n"

const fnSource = `// Package fn is a test function that reports the most requests it saw
// at once.
package fn

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

var current, most atomic.Int64

// Hello sleeps ?sleep=ms and answers the most concurrent calls seen.
func Hello(w http.ResponseWriter, r *http.Request) {
	n := current.Add(1)
	defer current.Add(-1)
	for {
		m := most.Load()
		if n <= m || most.CompareAndSwap(m, n) {
			break
		}
	}
	if ms, _ := strconv.Atoi(r.URL.Query().Get("sleep")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	fmt.Fprintf(w, "max=%d\n", most.Load())
}

// Other is exported but not a handler.
func Other() int { return 1 }

func unexported(w http.ResponseWriter, r *http.Request) {}
`

// TestGoFunctionBuilder builds a function, runs it SingleThreaded with a
// 1s timeout: requests never overlap and a slow one gets 504.
func TestGoFunctionBuilder(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	sha := r.commit("fn", map[string]string{
		"go.mod":         fnGoMod,
		"fn/fn.go":       fnSource,
		"fn/fn_test.go":  "package fn\n\nfunc ExampleNothing() {}\n",
		"fn/README.md":   "a function\n",
		"other/other.go": "package other\n",
	})
	b := newBuilder(t, Options{Registry: reg})
	// The seed's scenario 5 template name: the go-function builder.
	spec := gitSpec(r.url(), sha, "go_1_9_fn", ArgPackage, "fn", v1alpha1.ArgEntryPoint, "Hello", ArgPlatforms, "linux/amd64")
	state, err := b.Build(context.Background(), "default", "fn-00001", spec, "")
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, b.Log("default", "fn-00001"))
	}
	img := imageFor(t, pullIndex(t, state.Image), "amd64")
	base, stop := runApp(t, extractApp(t, img), "ELAFROS_CONCURRENCY_MODEL=SingleThreaded", "ELAFROS_TIMEOUT_SECONDS=1")

	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(base + "/?sleep=20")
			if err != nil {
				errs <- err
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("GET /?sleep=20 = %d, want 200", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if code, body := get(t, base+"/"); code != http.StatusOK || body != "max=1\n" {
		t.Errorf("GET / after 10 concurrent requests = %d %q, want 200 %q (one at a time)", code, body, "max=1\n")
	}
	if code, body := get(t, base+"/?sleep=2000"); code != http.StatusGatewayTimeout || !strings.Contains(body, "timeout") {
		t.Errorf("GET /?sleep=2000 = %d %q, want 504 with a timeout message", code, body)
	}
	if err := stop(); err != nil {
		t.Errorf("the function's exit on SIGTERM: %v, want a clean exit", err)
	}

	t.Run("reproducible", func(t *testing.T) {
		again := newBuilder(t, Options{})
		state2, err := again.Build(context.Background(), "default", "fn-00001", spec, reg+"/elsewhere/fn")
		if err != nil {
			t.Fatal(err)
		}
		_, d1, _ := strings.Cut(state.Image, "@")
		_, d2, _ := strings.Cut(state2.Image, "@")
		if d1 != d2 {
			t.Errorf("two builds of the function gave %s and %s, want the same digest", d1, d2)
		}
	})

	t.Run("missing entry point", func(t *testing.T) {
		spec := gitSpec(r.url(), sha, TemplateGoFunction, ArgPackage, "fn", v1alpha1.ArgEntryPoint, "Nope", ArgPlatforms, "linux/amd64")
		state, err := b.Build(context.Background(), "default", "fn-00002", spec, "")
		var be *BuildError
		if !errors.As(err, &be) || state.Reason != ReasonBuildStepFailed {
			t.Fatalf("Build with a missing entry point = %+v, %v; want BuildStepFailed", state, err)
		}
		for _, s := range []string{"example.com/fn/fn", "Nope", "Hello, Other"} {
			if !strings.Contains(state.Message, s) {
				t.Errorf("message %q does not mention %q", state.Message, s)
			}
		}
	})
}

func TestCheckEntryPoint(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write(map[string]string{
		"fn/fn.go":  fnSource,
		"fn/alt.go": "package fn\n\nimport web \"net/http\"\n\nfunc Alt(w web.ResponseWriter, r *web.Request) {}\n\nfunc Wrong(r *web.Request, w web.ResponseWriter) {}\n",
		"main/m.go": "package main\n\nimport \"net/http\"\n\nfunc H(w http.ResponseWriter, r *http.Request) {}\n",
	})
	for _, tc := range []struct {
		dir, entry, wantErr string
	}{
		{"fn", "Hello", ""},
		{"fn", "Alt", ""},
		{"fn", "Other", "Other is not a func(http.ResponseWriter, *http.Request)"},
		{"fn", "Wrong", "Wrong is not a func"},
		{"fn", "unexported", "its exported funcs: Alt, Hello, Other, Wrong"},
		{"fn", "", "needs _ENTRY_POINT"},
		{"main", "H", "is package main"},
	} {
		err := checkEntryPoint(r.dir+"/"+tc.dir, "example.com/"+tc.dir, tc.entry)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkEntryPoint(%s, %q) = %v, want %q", tc.dir, tc.entry, err, tc.wantErr)
		}
	}
}

// TestCompileError starts a build of a main.go with a syntax error.
func TestCompileError(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	sha := r.commit("broken", map[string]string{"go.mod": appGoMod, "main.go": "package main\n\nfunc main() {\n\tx := \n}\n"})
	b := newBuilder(t, Options{Registry: reg})
	ctx := context.Background()
	if _, found, err := b.Status(ctx, "default", "app-00001"); found || err != nil {
		t.Errorf("Status of an unknown build: found %v, %v; want not found", found, err)
	}
	spec := gitSpec(r.url(), sha, TemplateGo, ArgPlatforms, "linux/amd64")
	for range 2 { // idempotent
		if err := b.Start(ctx, "default", "app-00001", spec, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	state, found, err := b.Status(ctx, "default", "app-00001")
	if err != nil || !found {
		t.Fatalf("Status = %v, %v; want found", found, err)
	}
	if !state.Done || !state.Failed || state.Reason != ReasonBuildStepFailed {
		t.Fatalf("Status = %+v, want a failed build (BuildStepFailed)", state)
	}
	if !strings.Contains(state.Message, "main.go:5:1:") || !strings.Contains(state.Message, "go build for linux/amd64") {
		t.Errorf("message %q, want the step and the compiler's main.go:5:1: line", state.Message)
	}
	if log := b.Log("default", "app-00001"); strings.Count(log, "$ go build") != 1 || !strings.Contains(log, "main.go:5:1:") {
		t.Errorf("log (one build expected, with the compiler output):\n%s", log)
	}
}

func TestBuildFailures(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	sha := r.commit("app", map[string]string{"go.mod": appGoMod, "main.go": appMain, "Dockerfile": "FROM scratch\n"})
	bare := newRepo(t)
	bareSHA := bare.commit("app", map[string]string{"package.json": "{}\n", "index.js": "module.exports = () => {}\n"})
	for _, tc := range []struct {
		name    string
		opts    Options
		spec    v1alpha1.BuildSpec
		image   string
		reason  string
		message []string
	}{
		{
			name:    "unknown template",
			spec:    gitSpec(r.url(), sha, "kaniko"),
			image:   "127.0.0.1:1/x",
			reason:  ReasonUnknownBuilder,
			message: []string{`"kaniko"`, "go, go-function, docker"},
		},
		{
			name:   "the seed's nodejs_8_9_4 without a Dockerfile",
			spec:   gitSpec(bare.url(), bareSHA, "nodejs_8_9_4"),
			image:  "127.0.0.1:1/x",
			reason: ReasonUnknownBuilder,
			message: []string{`build template "nodejs_8_9_4" needs a nodejs builder`, "the source has no Dockerfile",
				"go (also go_1_9 or any go_<version>)", "go-function (also go_1_9_fn", "docker (any source with a Dockerfile)",
				"Add a Dockerfile to the source, or write template name: docker, go or go-function."},
		},
		{
			name:    "unknown commit",
			spec:    gitSpec(r.url(), "feedface", TemplateGo),
			image:   "127.0.0.1:1/x",
			reason:  ReasonSourceMissing,
			message: []string{"feedface", "commit not found"},
		},
		{
			name:    "no source",
			spec:    v1alpha1.BuildSpec{Template: v1alpha1.TemplateInstantiationSpec{Name: TemplateGo}},
			image:   "127.0.0.1:1/x",
			reason:  ReasonSourceMissing,
			message: []string{"no source"},
		},
		{
			name:    "no destination",
			spec:    gitSpec(r.url(), sha, TemplateGo),
			reason:  ReasonBuildStepFailed,
			message: []string{"no destination image"},
		},
		{
			name:    "bad platforms",
			spec:    gitSpec(r.url(), sha, TemplateGo, ArgPlatforms, "linux"),
			image:   "127.0.0.1:1/x",
			reason:  ReasonBuildStepFailed,
			message: []string{`platform "linux": want os/arch`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBuilder(t, tc.opts)
			state, err := b.Build(context.Background(), "default", "x", tc.spec, tc.image)
			var be *BuildError
			if !errors.As(err, &be) || !state.Done || !state.Failed || state.Reason != tc.reason {
				t.Fatalf("Build = %+v, %v; want a failed build (%s)", state, err, tc.reason)
			}
			for _, s := range tc.message {
				if !strings.Contains(state.Message, s) {
					t.Errorf("message %q does not mention %q", state.Message, s)
				}
			}
		})
	}

	t.Run("docker without a daemon", func(t *testing.T) {
		t.Parallel()
		// A socket nobody listens on, so this holds where a daemon runs too.
		noDaemon := "unix://" + filepath.Join(t.TempDir(), "no-docker.sock")
		// docker by name, and the seed's nodejs_8_9_4 with a Dockerfile.
		for _, tmpl := range []string{TemplateDocker, "nodejs_8_9_4"} {
			b := newBuilder(t, Options{DockerHost: noDaemon})
			state, err := b.Build(context.Background(), "default", "x", gitSpec(r.url(), sha, tmpl), "127.0.0.1:1/x")
			var be *BuildError
			if !errors.As(err, &be) || !state.Failed || state.Reason != ReasonBuildStepFailed {
				t.Fatalf("%s: Build = %+v, %v; want a failed build", tmpl, state, err)
			}
			for _, s := range []string{"the docker builder needs a Docker daemon; none answered (", "Use the go or go-function builder, or run where docker works"} {
				if !strings.Contains(state.Message, s) {
					t.Errorf("%s: message %q does not say %q", tmpl, state.Message, s)
				}
			}
		}
	})
}

func TestDefaultSource(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	sha := r.commit("app", map[string]string{"go.mod": appGoMod, "svc/main.go": appMain})
	r.write(map[string]string{"svc/notes.txt": "uncommitted\n"})
	ctx := context.Background()
	spec := v1alpha1.BuildSpec{Template: v1alpha1.TemplateInstantiationSpec{Name: TemplateGo, Arguments: []v1alpha1.ArgumentSpec{{Name: ArgPlatforms, Value: "linux/amd64"}}}}

	strict := newBuilder(t, Options{Registry: reg, DefaultSource: r.dir + "/svc"})
	state, _ := strict.Build(ctx, "default", "app", spec, "")
	if state.Reason != ReasonSourceMissing || !strings.Contains(state.Message, "svc/notes.txt") {
		t.Errorf("Build of a dirty default source = %+v, want SourceMissing naming svc/notes.txt", state)
	}
	// git status settles while go builds: the refusal still pushes nothing.
	regName, err := name.NewRegistry(reg)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(ctx, regName)
	if err != nil {
		t.Fatal(err)
	}
	if len(repos) != 0 {
		t.Errorf("the refused build pushed to %v, want nothing pushed", repos)
	}

	loose := newBuilder(t, Options{Registry: reg, DefaultSource: r.dir + "/svc", AllowDirty: true})
	state, err = loose.Build(ctx, "default", "app", spec, "")
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, loose.Log("default", "app"))
	}
	want := &v1alpha1.ImageSource{Repository: "file://" + r.dir, Commit: sha, Context: "svc"}
	if diff := cmp.Diff(want, state.Source); diff != "" {
		t.Errorf("Source (-want +got):\n%s", diff)
	}
	// The image says that it is not exactly the commit.
	cf, err := imageFor(t, pullIndex(t, state.Image), "amd64").ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cf.Config.Labels[LabelRevision], sha+"-dirty"; got != want {
		t.Errorf("label %s = %q, want %q", LabelRevision, got, want)
	}
}

// TestBaseImage builds onto a _BASE_IMAGE: an index, and a single image.
func TestBaseImage(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	extra, err := layer(tarFile{path: "etc/motd", mode: 0o644, content: []byte("base\n")})
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.AppendLayers(empty.Image, extra)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/bin", "LANG=C"}
	cf.Config.User = "1000"
	if base, err = mutate.ConfigFile(base, cf); err != nil {
		t.Fatal(err)
	}
	imgRef, _ := name.ParseReference(reg + "/base/image:amd64")
	if err := remote.Write(imgRef, base); err != nil {
		t.Fatal(err)
	}
	idxRef, _ := name.ParseReference(reg + "/base/index:latest")
	if err := remote.WriteIndex(idxRef, imageIndex([]platformImage{{platform{"linux", "amd64"}, base}})); err != nil {
		t.Fatal(err)
	}

	r := newRepo(t)
	sha := r.commit("app", map[string]string{"go.mod": appGoMod, "main.go": appMain})
	b := newBuilder(t, Options{Registry: reg})
	for _, ref := range []string{imgRef.String(), idxRef.String()} {
		spec := gitSpec(r.url(), sha, TemplateGo, ArgPlatforms, "linux/amd64", v1alpha1.ArgBaseImage, ref)
		state, err := b.Build(context.Background(), "default", "app", spec, "")
		if err != nil {
			t.Fatalf("Build on %s: %v", ref, err)
		}
		img := imageFor(t, pullIndex(t, state.Image), "amd64")
		layers, err := img.Layers()
		if err != nil || len(layers) != 2 {
			t.Errorf("on %s: %d layers (%v), want the base's and /app", ref, len(layers), err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"PATH=/usr/bin", "LANG=C"}, cf.Config.Env); diff != "" || cf.Config.User != "1000" {
			t.Errorf("on %s: user %q, env (-want +got):\n%s", ref, cf.Config.User, diff)
		}
	}
	spec := gitSpec(r.url(), sha, TemplateGo, ArgPlatforms, "linux/arm64", v1alpha1.ArgBaseImage, imgRef.String())
	if state, _ := b.Build(context.Background(), "default", "app", spec, ""); !strings.Contains(state.Message, "is for linux/amd64 only, not linux/arm64") {
		t.Errorf("Build for arm64 on an amd64 image = %+v, want a platform mismatch", state)
	}
}

func TestBuiltin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, builder string
		builtin       bool
	}{
		{"go", TemplateGo, true},
		{"go-function", TemplateGoFunction, true},
		{"docker", TemplateDocker, true},
		{"go_1_9", TemplateGo, true},
		{"go_1_22", TemplateGo, true},
		{"go_1_9_fn", TemplateGoFunction, true},
		{"go_1_26_fn", TemplateGoFunction, true},
		{"nodejs_8_9_4", "", false},
		{"python_3_fn", "", false},
		{"go_fn", "", false},
		{"go_latest", "", false},
		{"kaniko", "", false},
	} {
		b, ok := Builtin(tc.name)
		if b != tc.builder || ok != tc.builtin {
			t.Errorf("Builtin(%q) = %q, %v; want %q, %v", tc.name, b, ok, tc.builder, tc.builtin)
		}
	}
}
