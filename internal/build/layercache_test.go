package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestLayerCache makes the /app layer of a binary through a cache in a
// directory: the first time compressed, then known (in memory, and from
// the directory in a new cache), and its bytes, made only when asked for,
// are the ones the cached digest names. A broken entry is a miss; a stale
// one is refused when its bytes are needed.
func TestLayerCache(t *testing.T) {
	t.Parallel()
	bin := bytes.Repeat([]byte("a Go binary, or near enough\n"), 4096)
	want, err := layerAt(layerCompression, tarFile{path: "app", mode: 0o755, content: bin})
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := layerMeta{Digest: want.digest, DiffID: want.diffID, Size: int64(len(want.compressed))}

	// entry is the one file of a cache directory after a first build.
	entry := func(t *testing.T, dir string) string {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil || len(files) != 1 {
			t.Fatalf("cache directory holds %v (%v), want one entry", files, err)
		}
		return files[0]
	}
	tests := []struct {
		name string
		// between runs after the first build, with the cache directory's
		// entry; it returns the cache the second build uses.
		between func(t *testing.T, first *layerCache, entry string) *layerCache
		// wantCached is whether the second build finds the layer.
		wantCached bool
		// wantErr is in the error of the second layer's bytes, if any.
		wantErr string
	}{{
		name:       "same cache: known in memory",
		between:    func(t *testing.T, first *layerCache, _ string) *layerCache { return first },
		wantCached: true,
	}, {
		name:       "new cache on the same directory: known from the entry",
		between:    func(t *testing.T, first *layerCache, _ string) *layerCache { return newLayerCache(first.dir) },
		wantCached: true,
	}, {
		name: "entry that does not parse: a miss, made again",
		between: func(t *testing.T, first *layerCache, entry string) *layerCache {
			if err := os.WriteFile(entry, []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
			return newLayerCache(first.dir)
		},
	}, {
		name: "entry without hashes: a miss",
		between: func(t *testing.T, first *layerCache, entry string) *layerCache {
			if err := os.WriteFile(entry, []byte(`{"size": 12}`), 0o644); err != nil {
				t.Fatal(err)
			}
			return newLayerCache(first.dir)
		},
	}, {
		name: "stale entry: its bytes are refused, naming it",
		between: func(t *testing.T, first *layerCache, entry string) *layerCache {
			b, err := os.ReadFile(entry)
			if err != nil {
				t.Fatal(err)
			}
			stale := strings.Replace(string(b), want.digest.Hex, strings.Repeat("0", 64), 1)
			if err := os.WriteFile(entry, []byte(stale), 0o644); err != nil {
				t.Fatal(err)
			}
			return newLayerCache(first.dir)
		},
		wantCached: true,
		wantErr:    "delete the entry",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			first := newLayerCache(t.TempDir())
			l, cached, err := first.appLayer(bin)
			if err != nil {
				t.Fatal(err)
			}
			if cached {
				t.Error("the first build found the layer in an empty cache")
			}
			checkLayer(t, l, wantMeta, bin)
			file := entry(t, first.dir)

			second := tc.between(t, first, file)
			l, cached, err = second.appLayer(bin)
			if err != nil {
				t.Fatal(err)
			}
			if cached != tc.wantCached {
				t.Errorf("second build: cached = %v, want %v", cached, tc.wantCached)
			}
			if tc.wantErr != "" {
				_, err := l.Compressed()
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), file) {
					t.Errorf("Compressed() of a stale entry: error %v, want one naming %s and saying %q", err, file, tc.wantErr)
				}
				return
			}
			checkLayer(t, l, wantMeta, bin)
			// Whatever the second build found, the directory now knows
			// the layer.
			if _, cached, _ := newLayerCache(first.dir).appLayer(bin); !cached {
				t.Error("a third cache on the directory did not find the layer")
			}
		})
	}

	t.Run("another binary is another layer", func(t *testing.T) {
		t.Parallel()
		c := newLayerCache("")
		if _, _, err := c.appLayer(bin); err != nil {
			t.Fatal(err)
		}
		other := append(bytes.Clone(bin), '!')
		l, cached, err := c.appLayer(other)
		if err != nil {
			t.Fatal(err)
		}
		if cached {
			t.Error("a changed binary was found in the cache")
		}
		if d, _ := l.Digest(); d == want.digest {
			t.Errorf("a changed binary has the digest %s of the first", d)
		}
	})
}

// checkLayer checks what a layer says of itself against want, and that
// its bytes are what it says: the compressed bytes hash to the digest and
// have its size, the tar stream hashes to the diff ID and holds bin at
// /app.
func checkLayer(t *testing.T, l v1.Layer, want layerMeta, bin []byte) {
	t.Helper()
	var said layerMeta
	var err1, err2, err3 error
	said.Digest, err1 = l.Digest()
	said.DiffID, err2 = l.DiffID()
	said.Size, err3 = l.Size()
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, said); diff != "" {
		t.Errorf("the layer's hashes and size (-want +got):\n%s", diff)
	}
	compressed := readAll(t, l.Compressed)
	raw := readAll(t, l.Uncompressed)
	got := layerMeta{Digest: v1.Hash{Algorithm: "sha256", Hex: sha256Hex(compressed)},
		DiffID: v1.Hash{Algorithm: "sha256", Hex: sha256Hex(raw)}, Size: int64(len(compressed))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the layer's bytes (-want +got):\n%s", diff)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no app in the layer: %v", err)
		}
		if h.Name != "app" {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(content, bin) || h.Mode != 0o755 {
			t.Errorf("app: %d bytes, mode %o; want the binary's %d bytes, mode 755", len(content), h.Mode, len(bin))
		}
		return
	}
}

func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
