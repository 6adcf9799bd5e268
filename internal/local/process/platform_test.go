package process

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/elafros/elafros/internal/reconcile"
)

// imageAs is an image whose config says os/arch, with the files of tar.
func imageAs(t *testing.T, tar []byte, os, arch string) v1.Image {
	t.Helper()
	base := layerImage(t, tar)
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	cf.Config.Entrypoint = []string{"/app"}
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// An index gives its image for this machine's architecture, or else its
// linux/amd64 one (which an emulator may run); nothing else is taken.
func TestPlatformImage(t *testing.T) {
	t.Parallel()
	arm64, amd64 := v1.Platform{OS: "linux", Architecture: "arm64"}, v1.Platform{OS: "linux", Architecture: "amd64"}
	s390x := v1.Platform{OS: "linux", Architecture: "s390x"}
	imgs := map[string]v1.Image{}
	for _, p := range []v1.Platform{arm64, amd64, s390x} {
		imgs[p.Architecture] = imageAs(t, makeTar(t, file("app", p.Architecture, 0o755)), p.OS, p.Architecture)
	}
	index := func(ps ...v1.Platform) v1.ImageIndex {
		var adds []mutate.IndexAddendum
		for _, p := range ps {
			adds = append(adds, mutate.IndexAddendum{Add: imgs[p.Architecture], Descriptor: v1.Descriptor{Platform: &p}})
		}
		return mutate.AppendManifests(empty.Index, adds...)
	}
	nested := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: index(s390x, arm64)})
	untyped := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: imgs["s390x"]})
	// An attestation manifest (unknown/unknown, as buildx writes) beside a
	// nested index of another machine's image.
	unknown := v1.Platform{OS: "unknown", Architecture: "unknown"}
	attested := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: imageAs(t, makeTar(t, file("att", "{}", 0o644)), "unknown", "unknown"), Descriptor: v1.Descriptor{Platform: &unknown}},
		mutate.IndexAddendum{Add: index(s390x)})
	armDigest, err := imgs["arm64"].Digest()
	if err != nil {
		t.Fatal(err)
	}
	// This machine's image is there, but fetching it fails: the error, not
	// the amd64 image.
	unreachable := failingIndex{index(amd64, arm64), armDigest}
	for _, tc := range []struct {
		name   string
		ii     v1.ImageIndex
		native v1.Platform
		want   string // the architecture of the image taken
		err    string
	}{
		{"both, on arm64", index(amd64, arm64), arm64, "arm64", ""},
		{"both, on amd64", index(arm64, amd64), amd64, "amd64", ""},
		{"amd64 only, on arm64: emulated", index(amd64), arm64, "amd64", ""},
		{"nested", nested, arm64, "arm64", ""},
		{"one image that names no platform", untyped, arm64, "s390x", ""},
		{"another machine's only, on arm64", index(s390x), arm64, "",
			"no linux/arm64 or linux/amd64 image among 1 manifests (linux/s390x): build it for linux/arm64 too (the go builders' _PLATFORMS"},
		{"another machine's only, on amd64", index(s390x, arm64), amd64, "",
			"no linux/amd64 image among 2 manifests (linux/s390x, linux/arm64): build it for linux/amd64 too"},
		{"attested, nested, on amd64", attested, amd64, "",
			"no linux/amd64 image among 2 manifests (linux/s390x): build it for linux/amd64 too"},
		{"this machine's image unreachable, on arm64", unreachable, arm64, "", "fetching " + armDigest.String() + ": connection reset"},
		{"this machine's image unreachable in a nested index", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: unreachable}), arm64, "",
			"fetching " + armDigest.String() + ": connection reset"},
	} {
		img, err := platformImage(tc.ii, tc.native)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got, _ := img.Digest()
		want, _ := imgs[tc.want].Digest()
		if got != want {
			t.Errorf("%s: took %s, want the %s image %s", tc.name, got, tc.want, want)
		}
	}
}

// failingIndex is an index whose image fail cannot be fetched (a registry
// that drops the connection).
type failingIndex struct {
	index
	fail v1.Hash
}

// index lets failingIndex embed an index, whose ImageIndex method would
// clash with the field's name.
type index = v1.ImageIndex

func (f failingIndex) Image(h v1.Hash) (v1.Image, error) {
	if h == f.fail {
		return nil, fmt.Errorf("fetching %s: connection reset", h)
	}
	return f.index.Image(h)
}

// A binary for another machine fails at exec with what to do, not only
// the kernel's "exec format error".
func TestExecFormatError(t *testing.T) {
	t.Parallel()
	img := imageAs(t, makeTar(t, file("app", "\x7fELF not for this machine", 0o755)), "linux", "s390x")
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	st := waitFor(t, rt, revision("s390x-00001"), ociPrefix+dir+"@"+h.String(), "failed", func(st reconcile.WorkloadState) bool { return st.Reason != "" })
	want := "exec format error: the image is for linux/s390x, and this machine runs linux/" + platform.Architecture +
		" processes: build it for linux/" + platform.Architecture + " too (the go builders' _PLATFORMS, or docker buildx --platform), or register an emulator for s390x (binfmt_misc)"
	if st.Reason != "ExitCode:126" || !strings.Contains(st.Message, want) {
		t.Errorf("state = %+v, want ExitCode:126 and %q", st, want)
	}
}
