package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/elafros/elafros/internal/registryhost"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ociPrefix marks an image given as an OCI layout directory.
const ociPrefix = "oci:"

// platform is what a process runs as here: Linux, on this machine's
// architecture. An index without an image for it gives its linux/amd64
// one (emulated, where an emulator is registered with binfmt_misc, as in
// Docker Desktop's VM on Apple silicon).
var platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// prepared is an image unpacked in the cache.
type prepared struct {
	// digestRef is the image by digest: <repo>@sha256:… or
	// oci:<dir>@sha256:….
	digestRef string
	rootfs    string
	config    *v1.ConfigFile
}

// prepare fetches image and unpacks it into the cache (once per digest).
func (r *Runtime) prepare(ctx context.Context, image string) (*prepared, error) {
	if dir, ok := strings.CutPrefix(image, ociPrefix); ok {
		return r.prepareLayout(ctx, dir)
	}
	ref, err := r.parseReference(image)
	if err != nil {
		return nil, err
	}
	if d, ok := ref.(name.Digest); ok {
		// A digest names the same bytes forever: a cached unpack needs no
		// registry.
		if h, err := v1.NewHash(d.DigestStr()); err == nil {
			if p, ok := r.cached(h, d.String()); ok {
				return p, nil
			}
		}
	}
	// Logged, so that a restart that runs only from the cache can be
	// seen to pull nothing.
	r.log.Info("pulling image", "image", ref.String())
	r.pulls.Add(1)
	opts := append([]remote.Option{remote.WithContext(ctx)}, r.opts.RemoteOptions(ref)...)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		ii, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		if img, err = platformImage(ii, platform); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	} else if img, err = desc.Image(); err != nil {
		return nil, err
	}
	h, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return r.unpackImage(ctx, img, h, ref.Context().Digest(h.String()).String())
}

// parseReference parses a registry reference; registries on loopback are
// reached over plain HTTP.
func (r *Runtime) parseReference(image string) (name.Reference, error) {
	var opts []name.Option
	if r.opts.DefaultRegistry != "" {
		opts = append(opts, name.WithDefaultRegistry(r.opts.DefaultRegistry))
	}
	ref, err := name.ParseReference(image, opts...)
	if err != nil {
		return nil, err
	}
	if registryhost.Loopback(ref.Context().RegistryStr()) {
		return name.ParseReference(image, append(opts, name.Insecure)...)
	}
	return ref, nil
}

// prepareLayout reads an image from an OCI layout: dir, or dir@sha256:….
// Without a digest the layout must hold one image, or an index with one
// for platform.
func (r *Runtime) prepareLayout(ctx context.Context, spec string) (*prepared, error) {
	dir, digest, hasDigest := strings.Cut(spec, "@")
	if dir == "" {
		return nil, fmt.Errorf("OCI layout reference %q has no directory (want oci:<dir> or oci:<dir>@sha256:…)", ociPrefix+spec)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if hasDigest {
		h, err := v1.NewHash(digest)
		if err != nil {
			return nil, fmt.Errorf("OCI layout reference %q: %w", ociPrefix+spec, err)
		}
		if p, ok := r.cached(h, ociPrefix+dir+"@"+h.String()); ok {
			return p, nil
		}
		if img, err = imageByDigest(ii, h); err != nil {
			return nil, err
		}
	} else if img, err = platformImage(ii, platform); err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	h, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return r.unpackImage(ctx, img, h, ociPrefix+dir+"@"+h.String())
}

// imageByDigest finds h in ii: an image, or an index whose image for
// platform is taken.
func imageByDigest(ii v1.ImageIndex, h v1.Hash) (v1.Image, error) {
	m, err := ii.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Digest == h {
			if d.MediaType.IsIndex() {
				child, err := ii.ImageIndex(h)
				if err != nil {
					return nil, err
				}
				return platformImage(child, platform)
			}
			return ii.Image(h)
		}
	}
	for _, d := range m.Manifests {
		if d.MediaType.IsIndex() {
			child, err := ii.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := imageByDigest(child, h); err == nil {
				return img, nil
			}
		}
	}
	return nil, fmt.Errorf("manifest %s not found in the OCI layout", h)
}

// errNoPlatform is what an index without the image looked for gives; any
// other error (a manifest that could not be fetched) is returned as it is,
// never taken as a reason to run another platform's image.
var errNoPlatform = errors.New("no image for the platform")

// platformImage picks the image to run from ii: its image for native, or
// else its linux/amd64 one, or else its only image if that says no
// platform (looking into nested indexes).
func platformImage(ii v1.ImageIndex, native v1.Platform) (v1.Image, error) {
	wants := []v1.Platform{native}
	if amd64 := (v1.Platform{OS: "linux", Architecture: "amd64"}); native.OS != amd64.OS || native.Architecture != amd64.Architecture {
		wants = append(wants, amd64)
	}
	for _, want := range wants {
		img, err := imageFor(ii, want)
		if !errors.Is(err, errNoPlatform) {
			return img, err
		}
	}
	img, err := untypedImage(ii)
	if !errors.Is(err, errNoPlatform) {
		return img, err
	}
	m, err := ii.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := native.OS + "/" + native.Architecture
	if len(wants) > 1 {
		want += " or linux/amd64"
	}
	return nil, fmt.Errorf("no %s image among %d manifests (%s): build it for %s/%s too (the go builders' _PLATFORMS, or docker buildx --platform)",
		want, len(m.Manifests), strings.Join(platformsIn(ii), ", "), native.OS, native.Architecture)
}

// imageFor finds want's image in ii, looking into nested indexes.
func imageFor(ii v1.ImageIndex, want v1.Platform) (v1.Image, error) {
	m, err := ii.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.OS == want.OS && d.Platform.Architecture == want.Architecture {
			return ii.Image(d.Digest)
		}
	}
	return inChildren(ii, m, func(child v1.ImageIndex) (v1.Image, error) { return imageFor(child, want) })
}

// untypedImage is ii's only image when it names no platform (or a nested
// index's).
func untypedImage(ii v1.ImageIndex) (v1.Image, error) {
	m, err := ii.IndexManifest()
	if err != nil {
		return nil, err
	}
	var images []v1.Descriptor
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() {
			images = append(images, d)
		}
	}
	if len(images) == 1 && (images[0].Platform == nil || images[0].Platform.OS == "") {
		return ii.Image(images[0].Digest)
	}
	return inChildren(ii, m, untypedImage)
}

// inChildren is the first image find gives from ii's nested indexes, or
// errNoPlatform when none has one.
func inChildren(ii v1.ImageIndex, m *v1.IndexManifest, find func(v1.ImageIndex) (v1.Image, error)) (v1.Image, error) {
	for _, d := range m.Manifests {
		if !d.MediaType.IsIndex() {
			continue
		}
		child, err := ii.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		if img, err := find(child); !errors.Is(err, errNoPlatform) {
			return img, err
		}
	}
	return nil, errNoPlatform
}

// platformsIn lists the platforms ii has images for, nested indexes
// included, leaving out attestations (unknown/unknown); for a message.
func platformsIn(ii v1.ImageIndex) []string {
	m, err := ii.IndexManifest()
	if err != nil {
		return nil
	}
	var has []string
	for _, d := range m.Manifests {
		switch {
		case d.MediaType.IsImage() && d.Platform != nil && d.Platform.OS != "" && d.Platform.OS != "unknown":
			has = append(has, d.Platform.OS+"/"+d.Platform.Architecture)
		case d.MediaType.IsIndex():
			if child, err := ii.ImageIndex(d.Digest); err == nil {
				has = append(has, platformsIn(child)...)
			}
		}
	}
	return has
}

// cacheDir is where the image with digest h is unpacked.
func (r *Runtime) cacheDir(h v1.Hash) string {
	return filepath.Join(r.opts.CacheDir, h.String())
}

// cached returns the unpacked image h if the cache has it.
func (r *Runtime) cached(h v1.Hash, digestRef string) (*prepared, bool) {
	dir := r.cacheDir(h)
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, false
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, false
	}
	if fi, err := os.Stat(filepath.Join(dir, "rootfs")); err != nil || !fi.IsDir() {
		return nil, false
	}
	return &prepared{digestRef: digestRef, rootfs: filepath.Join(dir, "rootfs"), config: &cf}, true
}

// flight is an unpack in progress; others asking for the same digest wait
// for it.
type flight struct {
	done chan struct{}
	err  error
}

// unpackImage unpacks img (digest h) into the cache unless it is there:
// into a temporary directory renamed into place, so that the cache never
// holds half an image.
func (r *Runtime) unpackImage(ctx context.Context, img v1.Image, h v1.Hash, digestRef string) (*prepared, error) {
	key := h.String()
	for {
		if p, ok := r.cached(h, digestRef); ok {
			return p, nil
		}
		r.unpackMu.Lock()
		f := r.flights[key]
		if f == nil {
			f = &flight{done: make(chan struct{})}
			r.flights[key] = f
			r.unpackMu.Unlock()
			f.err = r.unpack(img, h)
			r.unpackMu.Lock()
			delete(r.flights, key)
			r.unpackMu.Unlock()
			close(f.done)
			if f.err != nil {
				return nil, f.err
			}
			continue
		}
		r.unpackMu.Unlock()
		select {
		case <-f.done:
			if f.err != nil {
				return nil, f.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (r *Runtime) unpack(img v1.Image, h v1.Hash) error {
	start := time.Now()
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image config: %w", err)
	}
	cfg, err := json.Marshal(cf)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(r.opts.CacheDir, tmpPrefix+h.Hex[:12]+"-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	if err := unpackTar(rc, filepath.Join(tmp, "rootfs")); err != nil {
		return fmt.Errorf("unpacking %s: %w", h, err)
	}
	// mutate.Extract ends its tar stream before it reports a failure
	// (a bad layer, an unsafe entry): only reading on shows it.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("unpacking %s: %w", h, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	final := r.cacheDir(h)
	if err := os.Rename(tmp, final); err != nil {
		// Another runtime sharing the cache may have won the race.
		if _, ok := r.cached(h, ""); ok {
			return nil
		}
		return fmt.Errorf("caching %s: %w", h, err)
	}
	r.unpacks.Add(1)
	r.log.Info("unpacked image", "digest", h.String(), "dir", final, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// tmpPrefix starts the name of an unpack in progress in the cache.
const tmpPrefix = ".tmp-"

// staleUnpackAge: an unpack in progress older than this was left by a
// crash (a live one could belong to another runtime sharing the cache).
const staleUnpackAge = time.Hour

func removeStaleUnpacks(cacheDir string, log *slog.Logger) {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleUnpackAge {
			continue
		}
		p := filepath.Join(cacheDir, e.Name())
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("removing a stale unpack", "dir", p, "error", err)
		}
	}
}
