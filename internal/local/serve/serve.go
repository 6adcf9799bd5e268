// Package serve assembles the embedded local control plane: the bbolt
// store, the elafros.dev API, an OCI registry, the process runtime, the
// router and the continuous reconciler, on loopback listeners. It wires;
// the parts hold the rules.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/apiserver"
	"github.com/elafros/elafros/internal/local/process"
	"github.com/elafros/elafros/internal/local/router"
	"github.com/elafros/elafros/internal/reconcile"
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

	cancel  context.CancelFunc
	servers []*http.Server
	wg      sync.WaitGroup
	errs    chan error
	once    sync.Once
	logger  *slog.Logger
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
	for _, d := range []string{o.DataDir, filepath.Join(o.DataDir, "images"), filepath.Join(o.DataDir, "logs"), filepath.Join(o.DataDir, "blobs"), filepath.Join(o.DataDir, "builds")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s = &Server{cancel: cancel, errs: make(chan error, 8), logger: o.Logger, Domain: o.Domain}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
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
	s.APIURL = "http://" + apiL.Addr().String()
	s.HTTPAddr = httpL.Addr().String()
	s.RegistryAddr = regL.Addr().String()

	if s.Store, err = local.Open(filepath.Join(o.DataDir, "elafros.db"), storeOptions(o)...); err != nil {
		return s, err
	}
	if s.Runtime, err = process.New(process.Options{
		CacheDir: filepath.Join(o.DataDir, "images"), LogDir: filepath.Join(o.DataDir, "logs"), Logger: o.Logger,
	}); err != nil {
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
	ro := o.Reconcile
	ro.DomainSuffix = o.Domain
	if ro.LogURLTemplate == "" { // errors.md's logUrl: this API's log endpoint
		ro.LogURLTemplate = s.APIURL + "/apis/elafros.dev/v1alpha1/namespaces/{namespace}/revisions/{name}/log"
	}
	rec, err := reconcile.New(s.Store, s.Runtime, s.Router, s.Builder, ro)
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

	regHandler := registry.New(registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(filepath.Join(o.DataDir, "blobs"))))
	s.serve(apiL, api)
	s.serve(httpL, s.Router)
	s.serve(regL, regHandler)

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := rec.Run(ctx, reconcile.RunOptions{Logger: o.Logger}); err != nil {
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

func (s *Server) serve(l net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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

// Close stops serving (letting requests in flight finish, up to 10s), the
// reconciler, every revision process, and closes the store.
func (s *Server) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, srv := range s.servers {
			_ = srv.Shutdown(ctx)
		}
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
		if s.Store != nil {
			_ = s.Store.Close()
		}
	})
}
