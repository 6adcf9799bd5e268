package process

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one tar entry of a hand-made layer.
type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func file(name, body string, mode int64) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: mode}
}
func dir(name string, mode int64) entry { return entry{name: name, typ: tar.TypeDir, mode: mode} }
func symlink(name, target string) entry {
	return entry{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, target string) entry {
	return entry{name: name, link: target, typ: tar.TypeLink, mode: 0o644}
}

func makeTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackTarRejectsEscapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		entries []entry
		wantErr string // "" when the entry is confined instead
	}{
		{name: "parent", entries: []entry{file("../evil", "x", 0o644)}, wantErr: `tar entry "../evil" points outside the image root`},
		{name: "nested parent", entries: []entry{file("a/../../evil", "x", 0o644)}, wantErr: "points outside the image root"},
		{name: "parent dir", entries: []entry{dir("../evil", 0o755)}, wantErr: "points outside the image root"},
		{name: "hard link out", entries: []entry{hardlink("a", "../../etc/passwd")}, wantErr: "points outside the image root"},
		// Links are resolved inside the root, as if it were "/".
		{name: "through absolute symlink", entries: []entry{symlink("link", "/"), file("link/evil", "x", 0o644)}},
		{name: "through relative symlink", entries: []entry{symlink("link", "../../.."), file("link/evil", "x", 0o644)}},
		{name: "absolute name", entries: []entry{file("/evil", "x", 0o644)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			root := filepath.Join(base, "a", "b", "rootfs")
			err := unpackTar(bytes.NewReader(makeTar(t, tc.entries...)), root)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("unpackTar: %v, want an error with %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("unpackTar: %v", err)
				}
				if b, err := os.ReadFile(filepath.Join(root, "evil")); err != nil || string(b) != "x" {
					t.Errorf("rootfs/evil = %q, %v; want the entry confined to the root", b, err)
				}
			}
			// Nothing was written outside the root.
			err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.Name() == "evil" && filepath.Dir(p) != root {
					t.Errorf("%s written outside the root", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnpackTarKeepsFilesystem(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "rootfs")
	layer := makeTar(t,
		dir("./", 0o755),
		dir("bin/", 0o755),
		file("bin/tool", "#!tool\n", 0o750),
		hardlink("bin/tool2", "bin/tool"),
		file("bin/suid", "s", 0o4755),
		dir("usr/bin", 0o755),
		symlink("usr/bin/tool", "/bin/tool"),
		symlink("usr/bin/rel", "../../bin/tool"),
		dir("ro", 0o555),
		file("ro/f", "read only", 0o444),
		file("replaced", "old", 0o644),
		file("replaced", "new", 0o600),
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
	)
	if err := unpackTar(bytes.NewReader(layer), root); err != nil {
		t.Fatalf("unpackTar: %v", err)
	}
	modes := map[string]fs.FileMode{
		"bin/tool":  0o750,
		"bin/suid":  0o755 | fs.ModeSetuid,
		"ro":        0o755 | fs.ModeDir, // owner rwx kept, so that the cache can be removed
		"ro/f":      0o444,
		"replaced":  0o600,
		"usr/bin":   0o755 | fs.ModeDir,
		"bin/tool2": 0o750,
	}
	for p, want := range modes {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if got := fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	for link, want := range map[string]string{"usr/bin/tool": "/bin/tool", "usr/bin/rel": "../../bin/tool"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	a, _ := os.Stat(filepath.Join(root, "bin/tool"))
	b, _ := os.Stat(filepath.Join(root, "bin/tool2"))
	if !os.SameFile(a, b) {
		t.Error("bin/tool2 is not a hard link of bin/tool")
	}
	if got, _ := os.ReadFile(filepath.Join(root, "replaced")); string(got) != "new" {
		t.Errorf("replaced = %q, want the later entry", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); err == nil {
		t.Error("a device was created")
	}
}

func TestSecureJoin(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := unpackTar(bytes.NewReader(makeTar(t,
		file("app", "x", 0o755),
		symlink("abs", "/app"),
		symlink("up", "../../../app"),
		symlink("loop", "loop"),
		symlink("lib", "usr/lib"),
		dir("usr/lib", 0o755),
	)), root); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want, err string }{
		{in: "app", want: "app"},
		{in: "/abs", want: "app"},
		{in: "up", want: "app"},
		{in: "../../x", want: "x"},
		{in: "lib/libc.so", want: "usr/lib/libc.so"},
		{in: "missing/dir", want: "missing/dir"},
		{in: "loop", err: "too many levels of symbolic links"},
	} {
		got, err := secureJoin(root, tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("secureJoin(%q): %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if want := filepath.Join(root, tc.want); err != nil || got != want {
			t.Errorf("secureJoin(%q) = %q, %v; want %q", tc.in, got, err, want)
		}
	}
}

// layerImage is an image with one hand-made layer.
func layerImage(t *testing.T, layer []byte) v1.Image {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestUnpackImageRejectsTraversalAndCachesNothing(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	img := layerImage(t, makeTar(t, file("ok", "fine", 0o644), file("../evil", "x", 0o644)))
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.unpackImage(context.Background(), img, h, "test@"+h.String())
	if err == nil || !strings.Contains(err.Error(), "evil") {
		t.Fatalf("unpackImage: %v, want the traversal rejected", err)
	}
	entries, _ := os.ReadDir(rt.opts.CacheDir)
	if len(entries) != 0 {
		t.Errorf("cache holds %d entries after a failed unpack, want none (no half cache)", len(entries))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(rt.opts.CacheDir), "evil")); err == nil {
		t.Error("evil written next to the cache")
	}
}

func TestUnpackImageWhiteouts(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	lower, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(makeTar(t, file("keep", "k", 0o644), file("gone", "g", 0o644)))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	upper, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(makeTar(t, file(".wh.gone", "", 0o644), file("keep", "upper", 0o644)))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	p, err := rt.unpackImage(context.Background(), img, h, "test@"+h.String())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(p.rootfs, "keep")); string(b) != "upper" {
		t.Errorf("keep = %q, want the upper layer's", b)
	}
	if _, err := os.Lstat(filepath.Join(p.rootfs, "gone")); err == nil {
		t.Error("a whited-out file was unpacked")
	}
	// A second time: from the cache.
	if _, err := rt.unpackImage(context.Background(), img, h, "test@"+h.String()); err != nil {
		t.Fatal(err)
	}
	if n := rt.unpacks.Load(); n != 1 {
		t.Errorf("unpacked %d times, want 1", n)
	}
}
