package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	// Importing the filesystem driver also registers it with the factory
	// that handlers.NewApp asks for "filesystem".
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/sirupsen/logrus"
)

// Registry is an OCI registry whose content lives under one directory.
type Registry struct {
	app *handlers.App
	// ns reads the same storage for the referrers API.
	ns  distribution.Namespace
	dir string
}

// Options configure New.
type Options struct {
	// Dir holds the content (Distribution's docker/registry/v2 tree). It
	// is created if missing. Required.
	Dir string
	// Logger receives Distribution's warnings and errors (its
	// per-request lines are dropped; error answers in the 4xx range come
	// at debug level). Distribution has one logger per process: the
	// registry made last has it. Default slog.Default().
	Logger *slog.Logger
}

// New returns a registry serving the content under o.Dir. Close releases
// its background work (the purge of abandoned uploads).
func New(ctx context.Context, o Options) (_ *Registry, err error) {
	if o.Dir == "" {
		return nil, errors.New("registry: Options.Dir is required (where manifests, tags and blobs are kept)")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	routeLogs(o.Logger)
	// The secret signs the state of uploads in progress; one per process
	// is enough for one registry (an upload does not survive a restart).
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
			// Blobs are served by the registry itself: the filesystem
			// driver has no URLs to redirect to.
			"redirect": configuration.Parameters{"disable": true},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	// Manifests may reference layers kept elsewhere (non-distributable
	// layers, by URL): the registry stores the manifest; fetching such a
	// layer is the client's business. Distribution refuses them unless
	// allowed.
	cfg.Validation.Manifests.URLs.Allow = []string{"^https?://"}
	// Distribution reports a bad configuration by panicking.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("registry: starting Distribution on %s: %v", dir, p)
		}
	}()
	app := handlers.NewApp(ctx, cfg)
	ns, err := storage.NewRegistry(ctx, filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 16}))
	if err != nil {
		_ = app.Shutdown()
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Registry{app: app, ns: ns, dir: dir}, nil
}

// ServeHTTP serves the OCI distribution API under /v2/.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		if m := referrersPath.FindStringSubmatch(req.URL.Path); m != nil {
			r.serveReferrers(w, req, m[1], m[2])
			return
		}
	case http.MethodPut:
		if manifestPath.MatchString(req.URL.Path) {
			r.putManifest(w, req)
			return
		}
	}
	r.app.ServeHTTP(w, req)
}

// Dir is where the content is kept.
func (r *Registry) Dir() string { return r.dir }

// Close stops the registry's background work; requests in flight are the
// HTTP server's to drain.
func (r *Registry) Close() error { return r.app.Shutdown() }

var (
	logOnce sync.Once
	// logTo is where Distribution's lines go: its logrus standard logger
	// is one per process, so the registry made last has them.
	logTo atomic.Pointer[slog.Logger]
)

// routeLogs sends Distribution's logrus output (its standard logger, the
// only one it uses when embedded) to log at warning level and above.
// Distribution writes a line per request at info level, which a local
// control plane's log does not want.
func routeLogs(log *slog.Logger) {
	logTo.Store(log.With("part", "registry"))
	logOnce.Do(func() {
		std := logrus.StandardLogger()
		std.SetLevel(logrus.WarnLevel)
		std.SetOutput(io.Discard)
		std.AddHook(slogHook{})
	})
}

// slogHook forwards logrus entries to logTo. Distribution logs every
// error answer at error level, the 404s of a client looking before it
// pushes ("does this blob exist?") too: an answer in the 4xx range is
// the client's business and goes to debug level; the client is told.
type slogHook struct{}

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		level = slog.LevelError
	}
	if status, ok := e.Data["http.response.status"].(int); ok && status >= 400 && status < 500 {
		level = slog.LevelDebug
	}
	log := logTo.Load()
	if !log.Enabled(context.Background(), level) {
		return nil
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		if strings.HasPrefix(k, "http.request.") || k == "go.version" {
			continue // per-request noise: the message says what failed
		}
		attrs = append(attrs, k, v)
	}
	log.Log(context.Background(), level, e.Message, attrs...)
	return nil
}
