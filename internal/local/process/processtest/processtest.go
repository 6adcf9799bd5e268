// Package processtest helps tests run revisions with the process runtime:
// an in-process registry, and images holding one Go program built from a
// directory (such as the test server of ServerDir).
package processtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ServerDir is the absolute directory of the test server program: it
// listens on $PORT; GET / answers "<$ELAFROS_REVISION> <$MESSAGE>\n";
// GET /sleep?ms=N sleeps N ms; GET /concurrency answers {"max": N}, the
// most requests it served at once; GET /crash prints "crashing on
// request" and exits with code 3; SIGTERM drains and exits 0.
func ServerDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("processtest: cannot locate its own source")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata", "server")
}

// StartRegistry starts an in-process registry, closed when t ends, and
// returns its host ("127.0.0.1:port").
func StartRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// BuildImage builds the main package in mainDir (absolute) for
// Linux on this machine's architecture, pushes an image running it to registryHost/repo:latest and
// returns the image by digest: registryHost/repo@sha256:….
func BuildImage(t testing.TB, registryHost, repo, mainDir string) string {
	t.Helper()
	img := Image(t, mainDir)
	ref, err := name.ParseReference(registryHost+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatalf("image reference: %v", err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref.Context().Digest(digest(t, img)).String()
}

// BuildLayout writes the image of mainDir (see Image) into a new OCI
// layout at dir and returns it by digest: oci:<dir>@sha256:….
func BuildLayout(t testing.TB, dir, mainDir string) string {
	t.Helper()
	img := Image(t, mainDir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatalf("OCI layout %s: %v", dir, err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})); err != nil {
		t.Fatalf("OCI layout %s: %v", dir, err)
	}
	return "oci:" + dir + "@" + digest(t, img)
}

// Image is an image holding the program built from mainDir at /app
// (mode 0755), with entrypoint ["/app"] and env PATH=/. The same mainDir
// gives the same digest within a test binary.
func Image(t testing.TB, mainDir string) v1.Image {
	t.Helper()
	data := layerBytes(t, mainDir)
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		t.Fatalf("image layer: %v", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("image config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.Env = []string{"PATH=/"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("image config: %v", err)
	}
	return img
}

func digest(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatalf("image digest: %v", err)
	}
	return h.String()
}

// builds caches each directory's compressed layer for the test binary's
// lifetime: building and compressing (slow under -race) happen once.
var builds sync.Map // mainDir -> *build

type build struct {
	once  sync.Once
	layer []byte
	err   error
	out   string
}

// layerBytes is the gzipped tar of a layer holding the program built from
// mainDir at /app, built once per test binary.
func layerBytes(t testing.TB, mainDir string) []byte {
	t.Helper()
	if !filepath.IsAbs(mainDir) {
		t.Fatalf("processtest: main package directory %q must be absolute", mainDir)
	}
	v, _ := builds.LoadOrStore(filepath.Clean(mainDir), &build{})
	b := v.(*build)
	b.once.Do(func() {
		var bin []byte
		bin, b.out, b.err = goBuild(mainDir)
		if b.err == nil {
			b.layer, b.err = gzipTar("app", bin)
		}
	})
	if b.err != nil {
		t.Fatalf("building an image of %s: %v\n%s", mainDir, b.err, b.out)
	}
	return b.layer
}

// goBuild builds the main package in dir for Linux on this machine's
// architecture; out is the
// compiler's output when it fails.
func goBuild(dir string) (bin []byte, out string, err error) {
	tmp, err := os.MkdirTemp("", "processtest-")
	if err != nil {
		return nil, "", err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	exe := filepath.Join(tmp, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	output, err := cmd.CombinedOutput()
	if err != nil {
		return nil, string(output), fmt.Errorf("go build: %w", err)
	}
	bin, err = os.ReadFile(exe)
	return bin, "", err
}

// gzipTar is a gzipped tar holding one executable file, reproducibly.
func gzipTar(name string, content []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{
		Name:     name,
		Typeflag: tar.TypeReg,
		Mode:     0o755,
		Size:     int64(len(content)),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
