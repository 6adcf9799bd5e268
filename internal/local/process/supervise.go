package process

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Probe cadence: every probeInterval until StartTimeout, then every
// slowProbeInterval.
const (
	probeInterval     = 100 * time.Millisecond
	slowProbeInterval = time.Second
	probeTimeout      = time.Second
	// drainTimeout bounds the wait for output after a process exited
	// (a child that left the process group may hold the pipe).
	drainTimeout = 2 * time.Second
)

// supervise fetches and unpacks w's image, then runs its process until
// ctx is cancelled, restarting it with backoff whenever it exits.
func (r *Runtime) supervise(ctx context.Context, w *workload, prev <-chan struct{}) {
	defer r.wg.Done()
	defer func() {
		close(w.done)
		key := w.namespace + "/" + w.name
		r.mu.Lock()
		if r.stopping[key] == w.done {
			delete(r.stopping, key)
		}
		r.mu.Unlock()
	}()
	if prev != nil {
		// The retired process of the same revision is still stopping
		// (bounded by the grace period).
		<-prev
	}
	log := r.log.With("namespace", w.namespace, "revision", w.name)
	p := r.fetch(ctx, w, log)
	if p == nil {
		return
	}
	delay := r.opts.MinBackoff
	for {
		ran, stopped := r.runOnce(ctx, w, p, log)
		if stopped || ctx.Err() != nil {
			return
		}
		if ran >= backoffReset {
			delay = r.opts.MinBackoff
		}
		log.Info("restarting", "in", delay)
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, r.opts.MaxBackoff)
	}
}

// fetch prepares w's image, retrying with backoff; nil when ctx ends.
func (r *Runtime) fetch(ctx context.Context, w *workload, log logger) *prepared {
	delay := r.opts.MinBackoff
	for {
		start := time.Now()
		p, err := r.prepare(ctx, w.image)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			w.setImage(p.digestRef)
			log.Info("image ready", "image", p.digestRef, "took", time.Since(start).Round(time.Millisecond))
			return p
		}
		w.setFailure(ReasonContainerMissing, fmt.Sprintf("Unable to fetch image '%s': %v", w.image, err))
		r.changed(w)
		log.Warn("fetching the image failed", "image", w.image, "error", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, r.opts.MaxBackoff)
	}
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type logger interface {
	Info(string, ...any)
	Warn(string, ...any)
}

// runOnce starts w's process, probes it until ready and waits for it to
// exit, or stops it when ctx ends (stopped). ran is how long it ran.
func (r *Runtime) runOnce(ctx context.Context, w *workload, p *prepared, log logger) (ran time.Duration, stopped bool) {
	rev := w.revision()
	out, closeLog := r.openLog(w, log)
	defer closeLog()
	tail := &tailBuffer{max: tailSize}

	port, release, err := freePort()
	if err != nil {
		w.setStopped(ReasonExitCodePrefix+"127", "Container failed with: no free port: "+err.Error())
		return 0, false
	}
	defer release()
	l, err := newLaunch(p, rev, port)
	if err != nil {
		code := 127
		if !errors.Is(err, errNotFound) {
			code = 126
		}
		r.failedStart(w, out, code, err, log)
		return 0, false
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		r.failedStart(w, out, 126, err, log)
		return 0, false
	}
	cmd := &exec.Cmd{
		Path:        l.path,
		Args:        l.args,
		Env:         l.env,
		Dir:         l.dir,
		Stdout:      pw,
		Stderr:      pw,
		SysProcAttr: sysProcAttr(),
	}
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		code := 126
		if errors.Is(err, fs.ErrNotExist) {
			code = 127
		}
		if cf := p.config; errors.Is(err, syscall.ENOEXEC) && cf != nil && cf.Architecture != "" && cf.Architecture != platform.Architecture {
			err = fmt.Errorf("%w: the image is for %s/%s, and this machine runs %s/%s processes: build it for %s/%s too (the go builders' _PLATFORMS, or docker buildx --platform), or register an emulator for %s (binfmt_misc)",
				err, cf.OS, cf.Architecture, platform.OS, platform.Architecture, platform.OS, platform.Architecture, cf.Architecture)
		}
		r.failedStart(w, out, code, err, log)
		return 0, false
	}
	pid := cmd.Process.Pid
	r.recordPID(w, pid)
	defer r.forgetPID(w)
	started := time.Now()
	fmt.Fprintf(out, "--- started %s pid %d\n", started.Format(time.RFC3339), pid)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.MultiWriter(out, tail), pr)
	}()
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = cmd.Wait()
	}()
	w.setRunning(pid, port)
	log.Info("started", "pid", pid, "port", port, "argv", l.args)

	ticker := time.NewTicker(probeInterval)
	defer ticker.Stop()
	tick := ticker.C
	slow := false
	probe := rev.Spec.Container.ReadinessProbe
loop:
	for {
		select {
		case <-exited:
			break loop
		case <-ctx.Done():
			r.stop(pid, exited, log)
			stopped = true
			break loop
		case <-tick:
			if ready(ctx, port, probe) {
				w.setReady()
				r.changed(w)
				log.Info("ready", "pid", pid, "port", port, "after", time.Since(started).Round(time.Millisecond))
				tick = nil
				continue
			}
			if !slow && time.Since(started) > r.opts.StartTimeout {
				slow = true
				ticker.Reset(slowProbeInterval)
				log.Warn("not ready yet; probing every second from now on", "pid", pid, "port", port, "after", r.opts.StartTimeout)
			}
		}
	}
	ran = time.Since(started)
	// Children left in the group die with it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(drainTimeout):
		_ = pr.SetReadDeadline(time.Now())
		<-copied
	}
	_ = pr.Close()

	code := exitCode(cmd.ProcessState)
	fmt.Fprintf(out, "--- exited %s code %d\n", time.Now().Format(time.RFC3339), code)
	if stopped {
		w.setStopped("", "")
		log.Info("stopped", "pid", pid, "code", code)
		return ran, true
	}
	msg := "Container failed with: " + tail.lastLine()
	if tail.lastLine() == "" {
		msg = fmt.Sprintf("Container failed with: exit code %d and no output", code)
	}
	w.setStopped(ReasonExitCodePrefix+strconv.Itoa(code), msg)
	r.changed(w)
	log.Warn("exited", "pid", pid, "code", code, "ran", ran.Round(time.Millisecond), "last_line", tail.lastLine())
	return ran, false
}

// failedStart records a process that could not start as one that exited
// with code (127: not found, 126: cannot execute, as a shell says).
func (r *Runtime) failedStart(w *workload, out io.Writer, code int, err error, log logger) {
	fmt.Fprintf(out, "--- failed to start %s: %v\n", time.Now().Format(time.RFC3339), err)
	w.setStopped(ReasonExitCodePrefix+strconv.Itoa(code), "Container failed with: "+err.Error())
	r.changed(w)
	log.Warn("could not start", "code", code, "error", err)
}

// stop sends SIGTERM to the process group of pid, and SIGKILL after the
// grace period; it returns once the process has exited.
func (r *Runtime) stop(pid int, exited <-chan struct{}, log logger) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(r.opts.GracePeriod)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	}
	log.Warn("still running after the grace period; killing", "pid", pid, "grace", r.opts.GracePeriod)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
}

// exitCode is a process's exit status, 128+n when killed by signal n.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// openLog opens w's log for appending. Output still reaches the tail when
// the log cannot be written.
func (r *Runtime) openLog(w *workload, log logger) (io.Writer, func()) {
	p, err := r.logPath(w.namespace, w.name)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(p), 0o755)
	}
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	if err != nil {
		log.Warn("cannot write the revision log", "error", err)
		return io.Discard, func() {}
	}
	return &lenientWriter{w: f}, func() { _ = f.Close() }
}

// lenientWriter drops writes once one failed, so that a full disk does
// not stop the copy of a process's output.
type lenientWriter struct {
	w      io.Writer
	failed bool
}

func (l *lenientWriter) Write(p []byte) (int, error) {
	if !l.failed {
		if _, err := l.w.Write(p); err != nil {
			l.failed = true
		}
	}
	return len(p), nil
}

// ready probes the process: a TCP connection to its port, then the
// readiness probe's HTTP GET if it has one (2xx or 3xx).
func ready(ctx context.Context, port int, probe *corev1.Probe) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = conn.Close()
	if probe == nil || probe.HTTPGet == nil {
		return true
	}
	return httpReady(ctx, addr, probe.HTTPGet)
}

// probeClient does not follow redirects (a 3xx is ready) and, as the
// kubelet, does not verify certificates.
var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a loopback readiness probe, as the kubelet's
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func httpReady(ctx context.Context, addr string, get *corev1.HTTPGetAction) bool {
	scheme := "http"
	if get.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	p := get.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+p, nil)
	if err != nil {
		return false
	}
	for _, h := range get.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	if get.Host != "" {
		req.Host = get.Host
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

// lastLine is the last non-blank line of the output kept.
func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	for len(b) > 0 {
		i := bytes.LastIndexByte(b, '\n')
		line := strings.TrimSpace(string(b[i+1:]))
		if line != "" {
			return line
		}
		if i < 0 {
			break
		}
		b = b[:i]
	}
	return ""
}

// ports handed out and still in use by this process's runtimes, so that
// two processes starting at once are not given the same one.
var ports = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// freePort picks a free loopback port; release gives it back.
func freePort() (port int, release func(), err error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		ports.Lock()
		if !ports.used[port] {
			ports.used[port] = true
			ports.Unlock()
			return port, func() {
				ports.Lock()
				delete(ports.used, port)
				ports.Unlock()
			}, nil
		}
		ports.Unlock()
	}
	return 0, nil, errors.New("no free loopback port found in 20 tries")
}
