package registry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/elafros/elafros/internal/local/registry"
)

func serve(t *testing.T, dir string) (host string, stop func()) {
	t.Helper()
	reg, err := registry.New(context.Background(), registry.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	return strings.TrimPrefix(srv.URL, "http://"), func() { srv.Close(); _ = reg.Close() }
}

// TestContentSurvivesRestart: what was pushed (manifest, tag, blobs) is
// served by a new registry over the same directory — the in-memory
// registry it replaces lost every manifest and tag.
func TestContentSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	host, stop := serve(t, dir)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host+"/acme/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	stop()

	host, stop = serve(t, dir)
	defer stop()
	for _, ref := range []string{host + "/acme/app:v1", host + "/acme/app@" + want.String()} {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r)
		if err != nil {
			t.Fatalf("after a restart, %s: %v", ref, err)
		}
		d, err := got.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if d != want {
			t.Errorf("after a restart, %s is %s, want %s", ref, d, want)
		}
		// Every layer's bytes, not only the manifest.
		layers, err := got.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Errorf("after a restart, a layer of %s: %v", ref, err)
			}
			_ = rc.Close()
		}
	}
}

func TestNewRefusesMissingDir(t *testing.T) {
	if _, err := registry.New(context.Background(), registry.Options{}); err == nil || !strings.Contains(err.Error(), "Options.Dir is required") {
		t.Errorf("New without a directory: err = %v, want one naming Options.Dir", err)
	}
}

// TestClientErrorsAtDebug: Distribution logs every error answer at error
// level, the 404s of a push's "does this blob exist?" probes too. A push
// leaves no error in the log; the 4xx answers are there at debug level.
// Not parallel: Distribution's logger is one per process.
func TestClientErrorsAtDebug(t *testing.T) {
	var out strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := registry.New(context.Background(), registry.Options{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Close() }()
	srv := httptest.NewServer(reg)
	defer srv.Close()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(strings.TrimPrefix(srv.URL, "http://")+"/acme/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(tag.Context().Tag("missing")); err == nil {
		t.Fatal("pulling a tag never pushed: no error")
	}
	mu.Lock()
	defer mu.Unlock()
	logged := out.String()
	if strings.Contains(logged, "level=ERROR") || strings.Contains(logged, "level=WARN") {
		t.Errorf("a push and a pull of a missing tag logged warnings or errors:\n%s", logged)
	}
	for _, want := range []string{"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "http.response.status=404"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the log at debug level has no %s:\n%s", want, logged)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
