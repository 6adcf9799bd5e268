package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/router"
	"github.com/elafros/elafros/internal/reconcile"
)

// Reasons a revision's workload reports when it cannot serve.
const (
	// ReasonContainerMissing: the image could not be fetched (errors.md).
	ReasonContainerMissing = "ContainerMissing"
	// ReasonUnsupportedEnv: the container's env needs the kube backend.
	ReasonUnsupportedEnv = "UnsupportedEnv"
	// ReasonExitCodePrefix starts the reason of a process that exited,
	// followed by its exit code (ExitCode:3).
	ReasonExitCodePrefix = "ExitCode:"
)

var (
	// ErrNotFound is returned (wrapped) by Logs for a revision that never
	// ran.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned by Materialize after Close.
	ErrClosed = errors.New("process runtime is closed")
)

// Options configure a Runtime. CacheDir and LogDir are required.
type Options struct {
	// CacheDir holds one unpacked root filesystem per image digest:
	// CacheDir/<digest>/rootfs, with the image config next to it.
	CacheDir string
	// LogDir holds each revision's output: LogDir/<namespace>/<revision>.log.
	LogDir string
	// PIDDir, when set, records each running process
	// (PIDDir/<namespace>_<revision>.pid), so that New can end the ones a
	// crashed predecessor left behind (Pdeathsig covers most crashes; a
	// record covers the rest). Runtimes must not share it.
	PIDDir string
	// Logger receives the runtime's own events. Default slog.Default().
	Logger *slog.Logger
	// StartTimeout is how long readiness is probed every 100ms; past it a
	// warning is logged and the probe continues every second. Default 60s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential delay between pull
	// attempts and between restarts. Defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// GracePeriod is how long a stopped process has between SIGTERM and
	// SIGKILL. Default 10s.
	GracePeriod time.Duration
	// OnChange, when set, is called with a revision's namespace and name
	// whenever its workload's state changes on its own (ready, exited,
	// image unavailable), so that a driver reconciles it at once instead
	// of at its next poll. It must not block.
	OnChange func(namespace, revision string)
	// DefaultRegistry is used for image references without a registry.
	// Default index.docker.io.
	DefaultRegistry string
	// RemoteOptions returns extra options (authentication, transport) for
	// fetching ref. Default: credentials from the Docker config keychain.
	RemoteOptions func(ref name.Reference) []remote.Option
}

const (
	defaultStartTimeout = 60 * time.Second
	defaultMinBackoff   = 500 * time.Millisecond
	defaultMaxBackoff   = 30 * time.Second
	defaultGracePeriod  = 10 * time.Second
	// backoffReset: a run at least this long resets the restart delay.
	backoffReset = 60 * time.Second
	// tailSize is how much of a run's output is kept in memory.
	tailSize = 64 << 10
)

func (o Options) withDefaults() (Options, error) {
	if o.CacheDir == "" {
		return o, errors.New("process runtime: Options.CacheDir is required (a directory for unpacked images)")
	}
	if o.LogDir == "" {
		return o, errors.New("process runtime: Options.LogDir is required (a directory for revision logs)")
	}
	var err error
	if o.CacheDir, err = filepath.Abs(o.CacheDir); err != nil {
		return o, fmt.Errorf("process runtime: cache dir: %w", err)
	}
	if o.LogDir, err = filepath.Abs(o.LogDir); err != nil {
		return o, fmt.Errorf("process runtime: log dir: %w", err)
	}
	if o.PIDDir != "" {
		if o.PIDDir, err = filepath.Abs(o.PIDDir); err != nil {
			return o, fmt.Errorf("process runtime: pid dir: %w", err)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = defaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = defaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		return o, fmt.Errorf("process runtime: MaxBackoff (%s) must be at least MinBackoff (%s)", o.MaxBackoff, o.MinBackoff)
	}
	if o.GracePeriod <= 0 {
		o.GracePeriod = defaultGracePeriod
	}
	if o.RemoteOptions == nil {
		o.RemoteOptions = func(name.Reference) []remote.Option {
			return []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
		}
	}
	return o, nil
}

// Runtime runs each revision as a local process. It implements
// reconcile.Runtime and router.Resolver; its methods are safe for
// concurrent use.
type Runtime struct {
	opts Options
	log  *slog.Logger

	// base is cancelled by Close; every workload's context derives from it.
	base   context.Context
	cancel context.CancelFunc
	// wg counts the supervisors.
	wg sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	workloads map[string]*workload
	// stopping holds the done channel of a retired workload until it has
	// stopped, so that a new one for the same revision waits for it.
	stopping map[string]chan struct{}

	unpackMu sync.Mutex
	flights  map[string]*flight
	// unpacks counts the images actually unpacked, pulls the registry
	// fetches (tests read them).
	unpacks, pulls atomic.Int64
}

var (
	_ reconcile.Runtime = (*Runtime)(nil)
	_ router.Resolver   = (*Runtime)(nil)
)

// New returns a Runtime; it creates CacheDir, LogDir and PIDDir, ends
// the revision processes recorded in PIDDir by a predecessor that
// crashed, and removes unpacks left half-done by a crash.
func New(opts Options) (*Runtime, error) {
	if goruntime.GOOS != platform.OS {
		return nil, fmt.Errorf("process runtime: revisions run as %s processes from their images' files, and this machine runs %s: run elafros serve on Linux (a VM, or a container), or deploy to a Kubernetes cluster",
			platform.OS, goruntime.GOOS)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{opts.CacheDir, opts.LogDir, opts.PIDDir} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("process runtime: %w", err)
		}
	}
	if opts.PIDDir != "" {
		endStale(opts.PIDDir, opts.CacheDir, opts.Logger)
	}
	removeStaleUnpacks(opts.CacheDir, opts.Logger)
	base, cancel := context.WithCancel(context.Background())
	return &Runtime{
		opts:      opts,
		log:       opts.Logger,
		base:      base,
		cancel:    cancel,
		workloads: map[string]*workload{},
		stopping:  map[string]chan struct{}{},
		flights:   map[string]*flight{},
	}, nil
}

// Materialize starts rev's process in the background on the first call
// and reports its state on every call; it never waits for the start-up.
// The state is empty while starting, Ready once the port answers,
// ContainerMissing while the image cannot be fetched (retried with
// backoff), ExitCode:<n> from a process that exited until its restart is
// ready, and UnsupportedEnv (nothing started) for valueFrom/envFrom.
// image is a registry reference (tag or digest) or an OCI layout
// (oci:<dir>, oci:<dir>@sha256:…). Calling it with another image than the
// running one (and not its digest) replaces the process.
func (r *Runtime) Materialize(_ context.Context, rev *v1alpha1.Revision, image string) (reconcile.WorkloadState, error) {
	if rev == nil {
		return reconcile.WorkloadState{}, errors.New("process runtime: Materialize: nil revision")
	}
	if image == "" {
		return reconcile.WorkloadState{}, fmt.Errorf("process runtime: revision %s/%s: no image to run", rev.Namespace, rev.Name)
	}
	if msg := unsupportedEnv(&rev.Spec.Container); msg != "" {
		return reconcile.WorkloadState{Reason: ReasonUnsupportedEnv, Message: msg}, nil
	}
	key := rev.Namespace + "/" + rev.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return reconcile.WorkloadState{}, ErrClosed
	}
	w := r.workloads[key]
	if w != nil && !w.runs(image) {
		r.log.Info("image changed, replacing the process", "namespace", rev.Namespace, "revision", rev.Name, "from", w.image, "to", image)
		r.detachLocked(key, w)
		w = nil
	}
	if w == nil {
		ctx, cancel := context.WithCancel(r.base)
		w = &workload{
			namespace: rev.Namespace,
			name:      rev.Name,
			image:     image,
			cancel:    cancel,
			done:      make(chan struct{}),
			rev:       rev.DeepCopy(),
		}
		r.workloads[key] = w
		prev := r.stopping[key]
		r.wg.Add(1)
		go r.supervise(ctx, w, prev)
	} else {
		w.setRev(rev.DeepCopy())
	}
	return w.state(), nil
}

// detachLocked removes w from the running workloads and cancels it; the
// next workload for key waits for it to stop. r.mu is held.
func (r *Runtime) detachLocked(key string, w *workload) {
	delete(r.workloads, key)
	r.stopping[key] = w.done
	w.cancel()
}

// Retire stops rev's process (SIGTERM to its process group, SIGKILL after
// the grace period) and waits for it, or for ctx. Retiring a revision
// without a process does nothing; a later Materialize starts it again
// from the cache.
func (r *Runtime) Retire(ctx context.Context, rev *v1alpha1.Revision) error {
	if rev == nil {
		return errors.New("process runtime: Retire: nil revision")
	}
	key := rev.Namespace + "/" + rev.Name
	r.mu.Lock()
	if w := r.workloads[key]; w != nil {
		r.detachLocked(key, w)
	}
	done := r.stopping[key]
	r.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("process runtime: retiring %s: %w", key, ctx.Err())
	}
	r.mu.Lock()
	if r.stopping[key] == done {
		delete(r.stopping, key)
	}
	r.mu.Unlock()
	return nil
}

// Backend reports where revision's process listens, while it is running
// and ready.
func (r *Runtime) Backend(namespace, revision string) (router.Backend, bool) {
	r.mu.Lock()
	w := r.workloads[namespace+"/"+revision]
	r.mu.Unlock()
	if w == nil {
		return router.Backend{}, false
	}
	return w.backend()
}

// Logs returns the output of every run of a revision's process, each
// run preceded by a "--- started <time> pid <n>" line. The error wraps
// ErrNotFound when the revision never ran.
func (r *Runtime) Logs(namespace, revision string) (io.ReadCloser, error) {
	p, err := r.logPath(namespace, revision)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("logs of revision %s/%s: %w", namespace, revision, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("logs of revision %s/%s: %w", namespace, revision, err)
	}
	return f, nil
}

func (r *Runtime) logPath(namespace, revision string) (string, error) {
	for _, s := range []string{namespace, revision} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `/\`) {
			return "", fmt.Errorf("logs of revision %s/%s: invalid name %q: %w", namespace, revision, s, ErrNotFound)
		}
	}
	return filepath.Join(r.opts.LogDir, namespace, revision+".log"), nil
}

// Close stops every process and waits for them; Materialize fails
// afterwards.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		for key, w := range r.workloads {
			r.detachLocked(key, w)
		}
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// workload is one revision's process and its state.
type workload struct {
	namespace, name string
	image           string
	cancel          context.CancelFunc
	// done is closed when the supervisor has stopped the process and
	// returned.
	done chan struct{}

	mu        sync.Mutex
	rev       *v1alpha1.Revision
	digestRef string
	// reason and message say why it cannot serve (kept until it is ready
	// again, so a crash loop keeps reporting its exit).
	reason, message string
	pid, port       int
	ready           bool
}

// runs reports whether w runs image (as given, or as its digest).
func (w *workload) runs(image string) bool {
	if image == w.image {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return image == w.digestRef
}

func (w *workload) setRev(rev *v1alpha1.Revision) {
	w.mu.Lock()
	w.rev = rev
	w.mu.Unlock()
}

func (w *workload) state() reconcile.WorkloadState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ready {
		return reconcile.WorkloadState{Ready: true, ImageDigest: w.digestRef}
	}
	return reconcile.WorkloadState{Reason: w.reason, Message: w.message, ImageDigest: w.digestRef}
}

func (w *workload) backend() (router.Backend, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ready || w.pid == 0 {
		return router.Backend{}, false
	}
	b := router.Backend{
		Addr:           net.JoinHostPort("127.0.0.1", strconv.Itoa(w.port)),
		SingleThreaded: w.rev.Spec.ConcurrencyModel == v1alpha1.ConcurrencySingleThreaded,
	}
	if t := w.rev.Spec.TimeoutSeconds; t != nil {
		b.Timeout = time.Duration(*t) * time.Second
	}
	return b, true
}

func (w *workload) setFailure(reason, message string) {
	w.mu.Lock()
	w.reason, w.message = reason, message
	w.mu.Unlock()
}

func (w *workload) setImage(digestRef string) {
	w.mu.Lock()
	w.digestRef = digestRef
	w.reason, w.message = "", ""
	w.mu.Unlock()
}

func (w *workload) setRunning(pid, port int) {
	w.mu.Lock()
	w.pid, w.port, w.ready = pid, port, false
	w.mu.Unlock()
}

func (w *workload) setReady() {
	w.mu.Lock()
	w.ready = true
	w.reason, w.message = "", ""
	w.mu.Unlock()
}

// setStopped records that the process is gone; reason is empty when it
// was stopped on purpose.
func (w *workload) setStopped(reason, message string) {
	w.mu.Lock()
	w.pid, w.ready = 0, false
	if reason != "" {
		w.reason, w.message = reason, message
	}
	w.mu.Unlock()
}

func (w *workload) revision() *v1alpha1.Revision {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rev
}

// changed tells OnChange that w's state changed.
func (r *Runtime) changed(w *workload) {
	if r.opts.OnChange != nil {
		r.opts.OnChange(w.namespace, w.name)
	}
}
