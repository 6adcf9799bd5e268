package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerCache remembers, for each binary it has made an /app layer of, the
// layer's digest, diff ID and size, in memory and in a directory, so that
// a rebuild of an unchanged binary compresses nothing: the image's digest
// needs only the hashes, and the push finds the blob in the registry
// (ko's KOCACHE does the same, keyed by the Go build ID). The layer is
// compressed again only if a registry asks for its bytes.
type layerCache struct {
	// dir holds one JSON file per binary; "" keeps the cache in memory.
	dir string

	mu  sync.Mutex
	mem map[string]layerMeta
}

// layerMeta is what a cached layer is known by.
type layerMeta struct {
	Digest v1.Hash `json:"digest"`
	DiffID v1.Hash `json:"diffID"`
	Size   int64   `json:"size"`
}

func newLayerCache(dir string) *layerCache {
	return &layerCache{dir: dir, mem: map[string]layerMeta{}}
}

// layerKeyPrefix is hashed before the binary: everything besides the
// binary that the layer's bytes depend on. The Go version is in it because
// compress/gzip's output may change from one release to the next, and
// then a cached digest would no longer be what compressing gives.
var layerKeyPrefix = fmt.Sprintf("elafros /app layer v1\x00%s\x00%d\x00%s\x00%o\x00", runtime.Version(), layerCompression, AppPath, 0o755)

// appLayer is the /app layer holding bin: from the cache when bin was
// seen before (nothing compressed), else made and remembered.
func (c *layerCache) appLayer(bin []byte) (v1.Layer, bool, error) {
	h := sha256.New()
	_, _ = io.WriteString(h, layerKeyPrefix)
	_, _ = h.Write(bin)
	key := hex.EncodeToString(h.Sum(nil))
	file := tarFile{path: strings.TrimPrefix(AppPath, "/"), mode: 0o755, content: bin}
	if m, ok := c.get(key); ok {
		return &lazyLayer{meta: m, file: file, source: c.path(key)}, true, nil
	}
	l, err := layerAt(layerCompression, file)
	if err != nil {
		return nil, false, err
	}
	c.put(key, layerMeta{Digest: l.digest, DiffID: l.diffID, Size: int64(len(l.compressed))})
	return l, false, nil
}

func (c *layerCache) path(key string) string {
	if c.dir == "" {
		return "(in memory) " + key
	}
	return filepath.Join(c.dir, key+".json")
}

func (c *layerCache) get(key string) (layerMeta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.mem[key]; ok {
		return m, true
	}
	if c.dir == "" {
		return layerMeta{}, false
	}
	b, err := os.ReadFile(c.path(key)) // #nosec G304 -- the builder's own work directory
	if err != nil {
		return layerMeta{}, false
	}
	var m layerMeta
	// An entry that does not parse, or lacks a hash, is a miss: the
	// layer is made again and the entry rewritten.
	if json.Unmarshal(b, &m) != nil || m.Digest.Hex == "" || m.DiffID.Hex == "" || m.Size <= 0 {
		return layerMeta{}, false
	}
	c.mem[key] = m
	return m, true
}

// put remembers m; a failure to write the directory only costs the next
// process a compression, so it is not an error of the build.
func (c *layerCache) put(key string, m layerMeta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mem[key] = m
	if c.dir == "" {
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return
	}
	// Written aside and renamed, so that a reader never sees half of it.
	tmp := c.path(key) + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return
	}
	if err := os.Rename(tmp, c.path(key)); err != nil {
		_ = os.Remove(tmp)
	}
}

// lazyLayer is a cached layer: its hashes and size are known, its bytes
// are made on the first call that needs them (a registry without the
// blob), and checked against the cached digest.
type lazyLayer struct {
	meta   layerMeta
	file   tarFile
	source string // the cache file, for the error of a stale entry

	once  sync.Once
	layer *builtLayer
	err   error
}

var _ v1.Layer = (*lazyLayer)(nil)

func (l *lazyLayer) Digest() (v1.Hash, error) { return l.meta.Digest, nil }
func (l *lazyLayer) DiffID() (v1.Hash, error) { return l.meta.DiffID, nil }
func (l *lazyLayer) Size() (int64, error)     { return l.meta.Size, nil }
func (l *lazyLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	b, err := l.built()
	if err != nil {
		return nil, err
	}
	return b.Compressed()
}

func (l *lazyLayer) Uncompressed() (io.ReadCloser, error) {
	b, err := l.built()
	if err != nil {
		return nil, err
	}
	return b.Uncompressed()
}

func (l *lazyLayer) built() (*builtLayer, error) {
	l.once.Do(func() {
		l.layer, l.err = layerAt(layerCompression, l.file)
		if l.err == nil && (l.layer.digest != l.meta.Digest || l.layer.diffID != l.meta.DiffID) {
			// Pushing these bytes under the cached digest would fail (or
			// worse, name another blob): say which entry is wrong.
			l.err = fmt.Errorf("the layer cache entry %s says digest %s, but the layer compresses to %s: delete the entry and build again", l.source, l.meta.Digest, l.layer.digest)
		}
	})
	return l.layer, l.err
}
