// Package serve assembles the embedded local control plane: the bbolt
// store, the elafros.dev API, an OCI registry, the process runtime, the
// router and the continuous reconciler, on loopback listeners. It wires;
// the parts hold the rules.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/apiserver"
	"github.com/elafros/elafros/internal/local/process"
	"github.com/elafros/elafros/internal/local/registry"
	"github.com/elafros/elafros/internal/local/router"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// Documented loopback defaults.
const (
	DefaultAPIAddr      = "127.0.0.1:7070"
	DefaultHTTPAddr     = "127.0.0.1:8080"
	DefaultRegistryAddr = "127.0.0.1:5001"
	DefaultDomain       = "localhost"
)

// Options configure the control plane. Addresses with port 0 pick a free
// port; the Server reports the real ones.
type Options struct {
	DataDir      string
	APIAddr      string
	HTTPAddr     string
	RegistryAddr string
	Domain       string
	// Sticky keeps a client on one revision during a canary (cookie).
	Sticky bool
	// RouterLoops is the router's router.Server.EventLoops.
	RouterLoops int
	// Reconcile tunes the reconciler (DomainSuffix is set from Domain).
	Reconcile reconcile.Options
	Logger    *slog.Logger
	// NoSync skips fsync in the store (tests only).
	NoSync bool
	// BuildSource is the directory built for a Configuration whose
	// spec.build has no source (elafros up: the working tree).
	BuildSource string
}

// Server is a running control plane.
type Server struct {
	// APIURL is the API's base URL, e.g. http://127.0.0.1:7070.
	APIURL string
	// HTTPAddr is where the router listens; RegistryAddr the registry.
	HTTPAddr, RegistryAddr string
	Domain                 string

	Store   *local.Store
	Runtime *process.Runtime
	Router  *router.Router
	Builder *build.Builder

	registry       *registry.Registry
	cancel         context.CancelFunc
	requests       context.Context
	cancelRequests context.CancelFunc
	servers        []server
	wg             sync.WaitGroup
	errs           chan error
	once           sync.Once
	logger         *slog.Logger
}

// DefaultDataDir is $XDG_DATA_HOME/elafros, or ~/.local/share/elafros.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "elafros")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "elafros")
	}
	return filepath.Join(os.TempDir(), "elafros")
}

// Start opens the store and starts every part. Close stops them.
func Start(ctx context.Context, o Options) (s *Server, err error) {
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir()
	}
	if o.APIAddr == "" {
		o.APIAddr = DefaultAPIAddr
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.RegistryAddr == "" {
		o.RegistryAddr = DefaultRegistryAddr
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, d := range []string{o.DataDir, filepath.Join(o.DataDir, "images"), filepath.Join(o.DataDir, "logs"), filepath.Join(o.DataDir, "builds")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	// requests is the base context of the API's requests: Close cancels
	// it, so that watches end.
	requests, cancelRequests := context.WithCancel(context.Background())
	s = &Server{cancel: cancel, cancelRequests: cancelRequests, requests: requests,
		errs: make(chan error, 8), logger: o.Logger, Domain: o.Domain}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// The store first: its lock says whether another serve owns the data
	// directory, before anything else (ports, stale processes) is touched.
	if s.Store, err = openStore(o); err != nil {
		return s, err
	}
	migrate(o.DataDir, o.Logger)
	listen := func(flag, addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
		}
		return l, nil
	}
	apiL, err := listen("--api-addr", o.APIAddr)
	if err != nil {
		return s, err
	}
	httpL, err := listen("--http-addr", o.HTTPAddr)
	if err != nil {
		_ = apiL.Close()
		return s, err
	}
	regL, err := listen("--registry-addr", o.RegistryAddr)
	if err != nil {
		_ = apiL.Close()
		_ = httpL.Close()
		return s, err
	}
	defer func() {
		if err != nil { // a part failed before serving: free the ports now
			for _, l := range []net.Listener{apiL, httpL, regL} {
				_ = l.Close()
			}
		}
	}()
	s.APIURL = "http://" + apiL.Addr().String()
	s.HTTPAddr = httpL.Addr().String()
	s.RegistryAddr = regL.Addr().String()

	// The runtime tells the reconciler when a revision's process becomes
	// ready or fails, so that its status (and the traffic that waits for
	// it) follows at once rather than at the next second's poll.
	notify := make(chan reconcile.Key, 1024)
	ro := runtimeOptions(o.DataDir, o.Logger)
	ro.OnChange = func(namespace, revision string) {
		select {
		case notify <- reconcile.Key{Kind: store.KindRevision, Namespace: namespace, Name: revision}:
		default: // full: the poll catches up
		}
	}
	if s.Runtime, err = process.New(ro); err != nil {
		return s, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.Router = router.New(s.Runtime, router.WithSticky(o.Sticky), router.WithRegisterer(reg), router.WithLogger(o.Logger))

	if s.Builder, err = build.New(build.Options{
		WorkDir: filepath.Join(o.DataDir, "builds"), Registry: s.RegistryAddr,
		DefaultSource: o.BuildSource, AllowDirty: o.BuildSource != "", Logger: o.Logger,
	}); err != nil {
		return s, err
	}
	rcOpts := o.Reconcile
	rcOpts.DomainSuffix = o.Domain
	if rcOpts.LogURLTemplate == "" { // errors.md's logUrl: this API's log endpoint
		rcOpts.LogURLTemplate = s.APIURL + "/apis/elafros.dev/v1alpha1/namespaces/{namespace}/revisions/{name}/log"
	}
	rec, err := reconcile.New(s.Store, s.Runtime, s.Router, s.Builder, rcOpts)
	if err != nil {
		return s, err
	}

	api := apiserver.New(s.Store, o.Logger)
	api.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	api.SetLogs(s.Runtime)
	_, port, _ := net.SplitHostPort(s.HTTPAddr)
	api.SetInfo("routerPort", port)
	api.SetInfo("registry", s.RegistryAddr)
	api.SetInfo("domain", o.Domain)

	if s.registry, err = registry.New(ctx, registry.Options{Dir: filepath.Join(o.DataDir, "registry"), Logger: o.Logger}); err != nil {
		return s, err
	}
	s.serve(apiL, api, true)
	// The router's own HTTP/1.1 loop takes the common requests and
	// hands every other connection to net/http (router.Server).
	s.start(httpL, &router.Server{Router: s.Router, ReadHeaderTimeout: readHeaderTimeout, EventLoops: o.RouterLoops})
	s.serve(regL, s.registry, false)

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := rec.Run(ctx, reconcile.RunOptions{Logger: o.Logger, Notify: notify}); err != nil {
			s.errs <- fmt.Errorf("reconciler: %w", err)
		}
	}()
	return s, nil
}

func storeOptions(o Options) []local.Option {
	if o.NoSync {
		return []local.Option{local.WithNoSync()}
	}
	return nil
}

// ErrInUse is returned (wrapped) by Start and Reset when another process
// holds the data directory.
var ErrInUse = errors.New("the data directory is in use")

func openStore(o Options) (*local.Store, error) {
	st, err := local.Open(filepath.Join(o.DataDir, storeFile), storeOptions(o)...)
	if errors.Is(err, local.ErrLocked) {
		return nil, fmt.Errorf("%w: %s is held by another elafros serve (or up); stop it first, or pass another --data-dir (%w)",
			ErrInUse, o.DataDir, err)
	}
	return st, err
}

// runtimeOptions lays the runtime's directories out in the data
// directory.
func runtimeOptions(dataDir string, log *slog.Logger) process.Options {
	return process.Options{
		CacheDir: filepath.Join(dataDir, "images"), LogDir: filepath.Join(dataDir, "logs"),
		PIDDir: filepath.Join(dataDir, "run"), Logger: log,
	}
}

// The data directory's entries. Reset removes exactly these.
const storeFile = "elafros.db"

var dataEntries = []string{storeFile, "images", "logs", "registry", "builds", "run", legacyBlobs}

// legacyBlobs held the blobs of the registry of layout 0 (in memory but
// for its blobs): without the manifests, which were never kept, nothing
// in it can be pulled, and every revision that ran from it is pinned by
// digest in the image cache.
const legacyBlobs = "blobs"

// migrate brings a data directory of layout 0 to layout 1 (the store
// stamps its own version; local.Open refuses newer ones).
func migrate(dataDir string, log *slog.Logger) {
	p := filepath.Join(dataDir, legacyBlobs)
	if _, err := os.Stat(p); err != nil {
		return
	}
	if err := os.RemoveAll(p); err != nil {
		log.Warn("removing the blobs of the previous registry layout", "dir", p, "error", err)
		return
	}
	log.Info("removed the blobs of the previous registry layout (their manifests were never kept; revisions run from the image cache)", "dir", p)
}

// Reset deletes everything elafros keeps in dataDir (the store, the
// registry, unpacked images, logs, builds) after ending the revision
// processes a crashed serve left behind. It refuses while another process
// holds the directory. Other files in dataDir are left alone.
func Reset(dataDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	st, err := openStore(Options{DataDir: dataDir})
	var le *local.LayoutError
	if err != nil && !errors.As(err, &le) { // an unreadable layout is what --reset is for
		return err
	}
	if st != nil {
		defer func() { _ = st.Close() }()
	}
	if _, err := os.Stat(filepath.Join(dataDir, "run")); err == nil {
		rt, err := process.New(runtimeOptions(dataDir, log))
		if err != nil {
			return err
		}
		_ = rt.Close()
	}
	for _, e := range dataEntries {
		p := filepath.Join(dataDir, e)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("--reset: removing %s: %w", p, err)
		}
	}
	log.Info("reset the data directory", "dir", dataDir)
	return nil
}

// readHeaderTimeout bounds the reading of a request's head on every
// listener.
const readHeaderTimeout = 10 * time.Second

// server is what Close drains: an *http.Server or the router's Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// serve serves h on l until Close. With endOnClose, requests' contexts
// end when Close begins (the API's watches, which never finish by
// themselves); the others drain.
func (s *Server) serve(l net.Listener, h http.Handler, endOnClose bool) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout}
	if endOnClose {
		srv.BaseContext = func(net.Listener) context.Context { return s.requests }
	}
	s.start(l, srv)
}

// start runs srv on l until Close.
func (s *Server) start(l net.Listener, srv server) {
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- fmt.Errorf("serving %s: %w", l.Addr(), err)
		}
	}()
}

// Errors reports a part that stopped on its own.
func (s *Server) Errors() <-chan error { return s.errs }

// DrainTimeout bounds how long Close lets requests in flight finish.
const DrainTimeout = 30 * time.Second

// Close drains: every listener stops accepting and the requests in flight
// finish (up to DrainTimeout; watches are ended), then the reconciler
// stops, every revision process gets SIGTERM and its grace period, and
// the store is closed.
func (s *Server) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
		defer cancel()
		// All at once: a watch on the API must not hold up the router's
		// drain. Watches never go idle, so they are ended right away (a
		// client reconnects to the next serve); the router's and the
		// registry's requests finish.
		if s.cancelRequests != nil {
			s.cancelRequests()
		}
		var drain sync.WaitGroup
		for _, srv := range s.servers {
			drain.Add(1)
			go func() {
				defer drain.Done()
				if err := srv.Shutdown(ctx); err != nil {
					s.logger.Warn("requests still in flight after the drain timeout", "timeout", DrainTimeout, "err", err)
				}
			}()
		}
		drain.Wait()
		s.cancel()
		s.wg.Wait()
		if s.Builder != nil {
			if err := s.Builder.Close(); err != nil {
				s.logger.Warn("stopping builds", "err", err)
			}
		}
		if s.Router != nil {
			s.Router.Close()
		}
		if s.Runtime != nil {
			if err := s.Runtime.Close(); err != nil {
				s.logger.Warn("stopping revisions", "err", err)
			}
		}
		if s.registry != nil {
			_ = s.registry.Close()
		}
		if s.Store != nil {
			_ = s.Store.Close()
		}
	})
}
