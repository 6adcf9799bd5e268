package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/process/processtest"
)

// TestGoBuilderRebuild builds one working tree again and again, as
// elafros up and up --watch do: an unchanged tree keeps its binary (go
// build does not link it again) and its layer (nothing is compressed),
// from a new Builder on the same work directory too, and gives the image
// that a fresh work directory gives; a registry that lacks the layers
// still gets them whole; a change is linked and served.
func TestGoBuilderRebuild(t *testing.T) {
	t.Parallel()
	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	r.commit("app", map[string]string{"go.mod": appGoMod, "main.go": appMain})
	work := t.TempDir()
	spec := v1alpha1.BuildSpec{Template: v1alpha1.TemplateInstantiationSpec{Name: TemplateGo,
		Arguments: []v1alpha1.ArgumentSpec{{Name: ArgPlatforms, Value: "linux/amd64"}}}}
	build := func(b *Builder, name, dest string) (image, digest, log string) {
		t.Helper()
		state, err := b.Build(context.Background(), "default", name, spec, dest)
		if err != nil {
			t.Fatalf("Build %s: %v\n%s", name, err, b.Log("default", name))
		}
		_, digest, _ = strings.Cut(state.Image, "@")
		return state.Image, digest, b.Log("default", name)
	}
	// kept opens the kept binary. go build touches an up-to-date target
	// (so that its mtime says "just built") but links a stale one into a
	// new file: a binary held open keeps its inode, so the same file after
	// a build is a binary that was not linked again.
	kept := func() *os.File {
		t.Helper()
		bins, err := filepath.Glob(filepath.Join(work, "bin", "*", "app-linux-amd64"))
		if err != nil || len(bins) != 1 {
			t.Fatalf("kept binaries: %v (%v), want one", bins, err)
		}
		f, err := os.Open(bins[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	same := func(a, b *os.File) bool {
		t.Helper()
		ai, err := a.Stat()
		if err != nil {
			t.Fatal(err)
		}
		bi, err := b.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return os.SameFile(ai, bi)
	}
	opts := Options{WorkDir: work, DefaultSource: r.dir, AllowDirty: true}

	_, first, log := build(newBuilder(t, opts), "app-1", reg+"/app")
	if !strings.Contains(log, "compressed") {
		t.Errorf("the first build's log does not say that it compressed the layer:\n%s", log)
	}
	before := kept()

	// A new Builder (a new process) on the same work directory.
	b := newBuilder(t, opts)
	_, second, log := build(b, "app-2", reg+"/app")
	if second != first {
		t.Errorf("the rebuild of an unchanged tree gave %s, want %s", second, first)
	}
	if !same(before, kept()) {
		t.Error("the kept binary was written again: go build linked it again")
	}
	if !strings.Contains(log, "known from the layer cache") {
		t.Errorf("the rebuild's log does not say that the layer was known:\n%s", log)
	}

	// A fresh work directory links and compresses everything: the same image.
	if _, fresh, log := build(newBuilder(t, Options{DefaultSource: r.dir, AllowDirty: true}), "app-3", reg+"/fresh"); fresh != first {
		t.Errorf("a fresh work directory gave %s, the kept one %s\n%s", fresh, first, log)
	}

	// A registry that has none of the blobs gets the cached layer's bytes.
	other := processtest.StartRegistry(t)
	ref, got, _ := build(b, "app-4", other+"/app")
	if got != first {
		t.Errorf("the push to another registry gave %s, want %s", got, first)
	}
	if err := validate.Index(pullIndex(t, ref)); err != nil {
		t.Errorf("the image pushed to a registry without its blobs: %v", err)
	}

	// A change is linked again, and the new binary is what the image runs.
	r.write(map[string]string{"main.go": strings.Replace(appMain, "hello from", "hi from", 1)})
	ref, changed, _ := build(b, "app-5", reg+"/app")
	if changed == first {
		t.Errorf("a changed tree gave the image %s of the unchanged one", first)
	}
	if same(before, kept()) {
		t.Error("a changed tree did not link the binary again")
	}
	url, _ := runApp(t, extractApp(t, imageFor(t, pullIndex(t, ref), "amd64")), "GREETING=elafros")
	if code, body := get(t, url+"/"); code != 200 || body != "hi from elafros\n" {
		t.Errorf("GET / = %d %q, want 200 %q", code, body, "hi from elafros\n")
	}
}
