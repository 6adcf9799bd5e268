package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image layout of the daemonless builders.
const (
	// AppPath is where the binary lives in the image; it is the entrypoint.
	AppPath = "/app"
	// CACertsPath is where the default base image holds the CA bundle.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// LabelSource and LabelRevision are the OCI labels of provenance.
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	// appUser is the distroless "nonroot" user.
	appUser = "65532"
)

// hostCACerts is the host's CA bundle, copied into the default base.
var hostCACerts = "/etc/ssl/certs/ca-certificates.crt"

// epoch is the time of every file and of the image: it makes the digest
// depend on the content only.
var epoch = time.Unix(0, 0).UTC()

// platform is a target of a build, e.g. linux/arm64.
type platform struct{ OS, Arch string }

func (p platform) String() string { return p.OS + "/" + p.Arch }

func (p platform) v1() v1.Platform { return v1.Platform{OS: p.OS, Architecture: p.Arch} }

// parsePlatforms parses "linux/amd64,linux/arm64".
func parsePlatforms(s string) ([]platform, error) {
	var out []platform
	seen := map[platform]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		os, arch, ok := strings.Cut(f, "/")
		if !ok || os == "" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("platform %q: want os/arch, such as linux/amd64", f)
		}
		p := platform{os, arch}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no platform in %q: want a comma-separated list such as linux/amd64,linux/arm64", s)
	}
	return out, nil
}

// tarFile is one regular file of a layer.
type tarFile struct {
	path    string // without the leading slash
	mode    int64
	content []byte
}

// layerCompression is the gzip level of the layers built here: the
// fastest, as ko's (go-containerregistry's default). A Go binary shrinks
// little more at gzip's default level (about 5% for examples/hello) and
// takes about three times as long to compress, which a push to a
// registry on the same machine or network never wins back.
const layerCompression = gzip.BestSpeed

// layer is a reproducible gzipped layer holding files (and their parent
// directories): root-owned, epoch mtimes, in the given order. It is
// written once: the tar stream is hashed (the diff ID) as it is
// compressed, and the compressed bytes as they are kept, so neither hash
// reads the layer again.
func layer(files ...tarFile) (v1.Layer, error) { return layerAt(layerCompression, files...) }

// layerAt is layer at a gzip level (the benchmark compares levels).
func layerAt(level int, files ...tarFile) (*builtLayer, error) {
	var buf bytes.Buffer
	digest, diffID := sha256.New(), sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(&buf, digest), level)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, diffID))
	dirs := map[string]bool{}
	for _, f := range files {
		parts := strings.Split(f.path, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
				return nil, err
			}
		}
		hdr := &tar.Header{Name: f.path, Typeflag: tar.TypeReg, Mode: f.mode, Size: int64(len(f.content)), ModTime: epoch, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &builtLayer{
		compressed: buf.Bytes(),
		digest:     v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(digest.Sum(nil))},
		diffID:     v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffID.Sum(nil))},
	}, nil
}

// builtLayer is a layer made by layer: its bytes and both hashes known.
type builtLayer struct {
	compressed     []byte
	digest, diffID v1.Hash
}

var _ v1.Layer = (*builtLayer)(nil)

func (l *builtLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *builtLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *builtLayer) Size() (int64, error)     { return int64(len(l.compressed)), nil }
func (l *builtLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

func (l *builtLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}

func (l *builtLayer) Uncompressed() (io.ReadCloser, error) {
	return gzip.NewReader(bytes.NewReader(l.compressed))
}

// DefaultBase is the base image when _BASE_IMAGE is not set: empty plus
// the host's CA bundle (when the host has one), with zero times, the same
// on every build, so it does not spoil reproducibility.
func DefaultBase() (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	certs, err := os.ReadFile(hostCACerts)
	switch {
	case os.IsNotExist(err):
		return img, nil
	case err != nil:
		return nil, fmt.Errorf("reading the host's CA bundle: %w", err)
	}
	// The bundle is read on every build (the host may update it) but
	// compressed only when it changed: the layer is the same bytes each
	// time, and a process builds many times (serve, up --watch).
	sum := sha256.Sum256(certs)
	defaultBaseCache.mu.Lock()
	defer defaultBaseCache.mu.Unlock()
	if defaultBaseCache.img != nil && defaultBaseCache.sum == sum {
		return defaultBaseCache.img, nil
	}
	l, err := layer(tarFile{path: strings.TrimPrefix(CACertsPath, "/"), mode: 0o644, content: certs})
	if err != nil {
		return nil, fmt.Errorf("CA bundle layer: %w", err)
	}
	base, err := mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "elafros: CA certificates"}})
	if err != nil {
		return nil, err
	}
	defaultBaseCache.sum, defaultBaseCache.img = sum, base
	return base, nil
}

// defaultBaseCache is the last default base made, by the hash of the CA
// bundle it holds.
var defaultBaseCache struct {
	mu  sync.Mutex
	sum [sha256.Size]byte
	img v1.Image
}

// baseImages resolves the base of each platform: the default base, or
// ref (an index holding each platform, or an image of the one platform
// built).
func baseImages(ctx context.Context, ref string, plats []platform, kc authn.Keychain) (map[platform]v1.Image, bool, error) {
	out := map[platform]v1.Image{}
	if ref == "" {
		img, err := DefaultBase()
		if err != nil {
			return nil, false, err
		}
		for _, p := range plats {
			out[p] = img
		}
		return out, true, nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, false, fmt.Errorf("base image %q: %w", ref, err)
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return nil, false, fmt.Errorf("pulling base image %s: %w", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, false, fmt.Errorf("base image %s: %w", ref, err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, false, fmt.Errorf("base image %s: %w", ref, err)
		}
		for _, p := range plats {
			for _, d := range m.Manifests {
				if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Arch && d.MediaType.IsImage() {
					img, err := idx.Image(d.Digest)
					if err != nil {
						return nil, false, fmt.Errorf("base image %s for %s: %w", ref, p, err)
					}
					out[p] = img
					break
				}
			}
			if out[p] == nil {
				return nil, false, fmt.Errorf("base image %s has no image for %s", ref, p)
			}
		}
		return out, false, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, false, fmt.Errorf("base image %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, false, fmt.Errorf("base image %s: %w", ref, err)
	}
	for _, p := range plats {
		if cf.OS != p.OS || cf.Architecture != p.Arch {
			return nil, false, fmt.Errorf("base image %s is for %s/%s only, not %s: name an index (multi-platform image) or set _PLATFORMS", ref, cf.OS, cf.Architecture, p)
		}
		out[p] = img
	}
	return out, false, nil
}

// appImage puts the /app layer l on base and sets the config:
// entrypoint, environment, user, provenance labels, epoch times.
func appImage(base v1.Image, p platform, l v1.Layer, defaultBase bool, prov *Provenance) (v1.Image, error) {
	img, err := mutate.Append(base, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "elafros: go build"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{AppPath}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	if defaultBase {
		cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=" + CACertsPath}
		cf.Config.User = appUser
	} else if !hasEnv(cf.Config.Env, "PATH") {
		cf.Config.Env = append(cf.Config.Env, "PATH=/")
	}
	labels := map[string]string{}
	for k, v := range cf.Config.Labels {
		labels[k] = v
	}
	if prov != nil {
		labels[LabelSource] = prov.Repository
		labels[LabelRevision] = prov.revisionLabel()
	}
	cf.Config.Labels = labels
	return mutate.ConfigFile(img, cf)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// platformImage is one platform's image of an index.
type platformImage struct {
	platform platform
	image    v1.Image
}

// imageIndex is the OCI index of images, one per platform.
func imageIndex(images []platformImage) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, pi := range images {
		pl := pi.platform.v1()
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: pi.image, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	return idx
}

// push writes idx to dest (tagged when dest names a tag) and returns it
// by digest: repo@sha256:….
func push(ctx context.Context, dest string, idx v1.ImageIndex, kc authn.Keychain) (string, error) {
	ref, err := name.ParseReference(dest)
	if err != nil {
		return "", fmt.Errorf("destination image %q: %w", dest, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	byDigest := ref.Context().Digest(d.String())
	target := name.Reference(byDigest)
	if hasTag(dest) {
		target = ref
	}
	if err := remote.WriteIndex(target, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", target, err)
	}
	return byDigest.String(), nil
}

// hasTag tells whether an image reference names a tag (or a digest)
// rather than only a repository.
func hasTag(ref string) bool {
	if strings.Contains(ref, "@") {
		return false
	}
	return strings.LastIndex(ref, ":") > strings.LastIndex(ref, "/")
}
