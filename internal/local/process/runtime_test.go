package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/testutil"
)

// startDeadline bounds how long a test waits for a state; generous for
// -race on a loaded machine.
const startDeadline = 60 * time.Second

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newRuntime(t *testing.T, mod ...func(*Options)) *Runtime {
	t.Helper()
	opts := Options{
		CacheDir:    filepath.Join(t.TempDir(), "cache"),
		LogDir:      filepath.Join(t.TempDir(), "logs"),
		Logger:      slog.New(slog.NewTextHandler(testLogWriter{t}, nil)),
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  time.Second,
		GracePeriod: 5 * time.Second,
	}
	for _, m := range mod {
		m(&opts)
	}
	rt, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

func revision(name string, env ...corev1.EnvVar) *v1alpha1.Revision {
	return &v1alpha1.Revision{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default",
			Name:      name,
			Labels:    map[string]string{v1alpha1.ConfigurationLabelKey: "cfg"},
		},
		Spec: v1alpha1.RevisionSpec{
			Container:        corev1.Container{Env: env},
			ConcurrencyModel: v1alpha1.ConcurrencyMulti,
		},
	}
}

func message(v string) corev1.EnvVar { return corev1.EnvVar{Name: "MESSAGE", Value: v} }

// waitFor calls Materialize as the reconciler does until cond holds, and
// checks that no call blocks.
func waitFor(t *testing.T, rt *Runtime, rev *v1alpha1.Revision, image, what string, cond func(reconcile.WorkloadState) bool) reconcile.WorkloadState {
	t.Helper()
	var st reconcile.WorkloadState
	testutil.Eventually(t, startDeadline, rev.Name+" "+what, func() (bool, string) {
		start := time.Now()
		var err error
		st, err = rt.Materialize(context.Background(), rev, image)
		if err != nil {
			t.Fatalf("Materialize(%s): %v", rev.Name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Materialize(%s) blocked for %s", rev.Name, d)
		}
		return cond(st), fmt.Sprintf("last state %+v", st)
	})
	return st
}

func isReady(st reconcile.WorkloadState) bool { return st.Ready }

func get(addr, path string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), errors.New(resp.Status)
	}
	return string(b), nil
}

func mustGet(t *testing.T, addr, path string) string {
	t.Helper()
	body, err := get(addr, path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	return body
}

func backend(t *testing.T, rt *Runtime, rev *v1alpha1.Revision) string {
	t.Helper()
	b, ok := rt.Backend(rev.Namespace, rev.Name)
	if !ok {
		t.Fatalf("Backend(%s): not ready", rev.Name)
	}
	return b.Addr
}

func pid(rt *Runtime, rev *v1alpha1.Revision) int {
	rt.mu.Lock()
	w := rt.workloads[rev.Namespace+"/"+rev.Name]
	rt.mu.Unlock()
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pid
}

func logs(t *testing.T, rt *Runtime, rev *v1alpha1.Revision) string {
	t.Helper()
	rc, err := rt.Logs(rev.Namespace, rev.Name)
	if err != nil {
		t.Fatalf("Logs(%s): %v", rev.Name, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestMaterializeRunsRevision(t *testing.T) {
	t.Parallel()
	host := processtest.StartRegistry(t)
	ref := processtest.BuildImage(t, host, "hello", processtest.ServerDir())
	rt := newRuntime(t)

	rev := revision("hello-00001", message("first"))
	rev.Spec.ConcurrencyModel = v1alpha1.ConcurrencySingleThreaded
	timeout := int64(30)
	rev.Spec.TimeoutSeconds = &timeout
	if b, ok := rt.Backend(rev.Namespace, rev.Name); ok {
		t.Fatalf("Backend before Materialize = %+v, want none", b)
	}
	start := time.Now()
	st := waitFor(t, rt, rev, ref, "ready", isReady)
	t.Logf("first start (pull, unpack, start, probe) took %s", time.Since(start).Round(time.Millisecond))
	if want := (reconcile.WorkloadState{Ready: true, ImageDigest: ref}); st != want {
		t.Errorf("state = %+v, want %+v", st, want)
	}
	b, ok := rt.Backend(rev.Namespace, rev.Name)
	if !ok || !b.SingleThreaded || b.Timeout != 30*time.Second || !strings.HasPrefix(b.Addr, "127.0.0.1:") {
		t.Errorf("Backend = %+v, %v; want a loopback address, SingleThreaded, 30s", b, ok)
	}
	if got, want := mustGet(t, b.Addr, "/"), "hello-00001 first\n"; got != want {
		t.Errorf("GET / = %q, want %q", got, want)
	}

	// The same image by tag, for a second revision: resolved to the same
	// digest, served from the same unpacked cache.
	rev2 := revision("hello-00002", message("second"))
	start = time.Now()
	st = waitFor(t, rt, rev2, host+"/hello:latest", "ready", isReady)
	t.Logf("second start (cached image) took %s", time.Since(start).Round(time.Millisecond))
	if st.ImageDigest != ref {
		t.Errorf("ImageDigest by tag = %q, want %q", st.ImageDigest, ref)
	}
	b2, _ := rt.Backend(rev2.Namespace, rev2.Name)
	if b2.SingleThreaded || b2.Timeout != 0 || b2.Addr == b.Addr {
		t.Errorf("Backend(hello-00002) = %+v; want Multi, no timeout, its own port (first is %s)", b2, b.Addr)
	}
	if got, want := mustGet(t, b2.Addr, "/"), "hello-00002 second\n"; got != want {
		t.Errorf("GET / = %q, want %q", got, want)
	}
	if n := rt.unpacks.Load(); n != 1 {
		t.Errorf("images unpacked = %d, want 1", n)
	}
	entries, err := os.ReadDir(rt.opts.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := strings.TrimPrefix(ref, host+"/hello@"); len(names) != 1 || names[0] != want {
		t.Errorf("cache holds %q, want only %q", names, want)
	}
	if _, err := os.Stat(filepath.Join(rt.opts.CacheDir, names[0], "rootfs", "app")); err != nil {
		t.Errorf("unpacked binary: %v", err)
	}
}

func TestMissingImageThenPushed(t *testing.T) {
	t.Parallel()
	host := processtest.StartRegistry(t)
	rt := newRuntime(t, func(o *Options) { o.MaxBackoff = 200 * time.Millisecond })
	rev := revision("late-00001")
	image := host + "/late:latest"

	st := waitFor(t, rt, rev, image, "ContainerMissing", func(st reconcile.WorkloadState) bool { return st.Reason != "" })
	want := reconcile.WorkloadState{
		Reason:  ReasonContainerMissing,
		Message: "Unable to fetch image '" + image + "': GET http://" + host + "/v2/late/manifests/latest: NAME_UNKNOWN: Unknown name",
	}
	if st != want {
		t.Errorf("state = %+v, want %+v", st, want)
	}

	// The image appears: the retry clears the failure.
	ref := processtest.BuildImage(t, host, "late", processtest.ServerDir())
	st = waitFor(t, rt, rev, image, "ready", isReady)
	if st.ImageDigest != ref {
		t.Errorf("ImageDigest = %q, want %q", st.ImageDigest, ref)
	}
}

func TestUnreachableRegistry(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	rt := newRuntime(t)
	rev := revision("nowhere-00001")
	image := addr + "/nowhere@sha256:" + strings.Repeat("ab", 32)
	st := waitFor(t, rt, rev, image, "ContainerMissing", func(st reconcile.WorkloadState) bool { return st.Reason != "" })
	if st.Reason != ReasonContainerMissing || !strings.HasPrefix(st.Message, "Unable to fetch image '"+image+"': ") || !strings.Contains(st.Message, "connection refused") {
		t.Errorf("state = %+v; want ContainerMissing with the connection error", st)
	}
}

func TestCrashReportsExitCodeAndRestarts(t *testing.T) {
	t.Parallel()
	host := processtest.StartRegistry(t)
	ref := processtest.BuildImage(t, host, "crash", processtest.ServerDir())
	rt := newRuntime(t)
	rev := revision("crash-00001")
	waitFor(t, rt, rev, ref, "ready", isReady)
	first := pid(rt, rev)

	if _, err := get(backend(t, rt, rev), "/crash"); err == nil {
		t.Error("GET /crash answered; want the connection dropped")
	}
	st := waitFor(t, rt, rev, ref, "failed", func(st reconcile.WorkloadState) bool { return st.Reason != "" })
	want := reconcile.WorkloadState{Reason: "ExitCode:3", Message: "Container failed with: crashing on request", ImageDigest: ref}
	if st != want {
		t.Errorf("state after the crash = %+v, want %+v", st, want)
	}
	if b, ok := rt.Backend(rev.Namespace, rev.Name); ok {
		t.Errorf("Backend while down = %+v, want none", b)
	}

	waitFor(t, rt, rev, ref, "ready again", isReady)
	if p := pid(rt, rev); p == first || p == 0 {
		t.Errorf("pid after restart = %d, first was %d", p, first)
	}
	if got := mustGet(t, backend(t, rt, rev), "/"); got != "crash-00001 \n" {
		t.Errorf("GET / after restart = %q", got)
	}
	out := logs(t, rt, rev)
	if n := strings.Count(out, "--- started "); n != 2 {
		t.Errorf("log has %d start lines, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "crashing on request\n") || !strings.Contains(out, " code 3\n") {
		t.Errorf("log lacks the crash:\n%s", out)
	}
}

func TestRetireStopsAndMaterializeRestarts(t *testing.T) {
	t.Parallel()
	host := processtest.StartRegistry(t)
	ref := processtest.BuildImage(t, host, "retire", processtest.ServerDir())
	rt := newRuntime(t)
	rev := revision("retire-00001", message("back"))
	ctx := context.Background()

	waitFor(t, rt, rev, ref, "ready", isReady)
	addr := backend(t, rt, rev)
	p := pid(rt, rev)
	if err := rt.Retire(ctx, rev); err != nil {
		t.Fatalf("Retire: %v", err)
	}
	if b, ok := rt.Backend(rev.Namespace, rev.Name); ok {
		t.Errorf("Backend after Retire = %+v, want none", b)
	}
	if !gone(p) {
		t.Errorf("process %d still exists after Retire", p)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("%s still answers after Retire", addr)
	}
	if out := logs(t, rt, rev); !strings.Contains(out, "draining\n") || !strings.Contains(out, " code 0\n") {
		t.Errorf("log does not show a graceful stop (SIGTERM, exit 0):\n%s", out)
	}
	if err := rt.Retire(ctx, rev); err != nil {
		t.Errorf("second Retire: %v", err)
	}

	waitFor(t, rt, rev, ref, "ready again", isReady)
	if got := mustGet(t, backend(t, rt, rev), "/"); got != "retire-00001 back\n" {
		t.Errorf("GET / = %q", got)
	}
	if n := rt.unpacks.Load(); n != 1 {
		t.Errorf("images unpacked = %d, want 1 (the cache is reused)", n)
	}
	if n := strings.Count(logs(t, rt, rev), "--- started "); n != 2 {
		t.Errorf("log has %d start lines, want 2", n)
	}
}

func TestRetireUnknownRevision(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	if err := rt.Retire(context.Background(), revision("never-00001")); err != nil {
		t.Errorf("Retire of a revision never materialized: %v", err)
	}
	if _, err := rt.Logs("default", "never-00001"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Logs of a revision that never ran: %v, want ErrNotFound", err)
	}
}

func TestUnsupportedEnv(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for _, tc := range []struct {
		name string
		c    corev1.Container
		want string
	}{{
		name: "valueFrom",
		c: corev1.Container{Env: []corev1.EnvVar{message("x"), {
			Name:      "SECRET",
			ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}},
		}}},
		want: "env SECRET uses valueFrom, which needs the kube backend",
	}, {
		name: "envFrom",
		c: corev1.Container{EnvFrom: []corev1.EnvFromSource{{
			ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}},
		}}},
		want: "envFrom needs the kube backend",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rev := revision("env-00001")
			rev.Spec.Container = tc.c
			st, err := rt.Materialize(context.Background(), rev, "127.0.0.1:1/never:latest")
			if err != nil {
				t.Fatal(err)
			}
			if st.Reason != ReasonUnsupportedEnv || !strings.Contains(st.Message, tc.want) {
				t.Errorf("state = %+v, want UnsupportedEnv with %q", st, tc.want)
			}
		})
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.workloads) != 0 {
		t.Errorf("workloads started: %d, want none", len(rt.workloads))
	}
}

func TestOCILayout(t *testing.T) {
	t.Parallel()
	ref := processtest.BuildLayout(t, filepath.Join(t.TempDir(), "layout"), processtest.ServerDir())
	dir, _, _ := strings.Cut(strings.TrimPrefix(ref, "oci:"), "@")
	rt := newRuntime(t)
	for i, image := range []string{ref, "oci:" + dir} {
		rev := revision([]string{"oci-00001", "oci-00002"}[i], message("from a layout"))
		st := waitFor(t, rt, rev, image, "ready", isReady)
		if st.ImageDigest != ref {
			t.Errorf("%s: ImageDigest = %q, want %q", image, st.ImageDigest, ref)
		}
		if got, want := mustGet(t, backend(t, rt, rev), "/"), rev.Name+" from a layout\n"; got != want {
			t.Errorf("%s: GET / = %q, want %q", image, got, want)
		}
	}
	if n := rt.unpacks.Load(); n != 1 {
		t.Errorf("images unpacked = %d, want 1", n)
	}
}

func TestMissingExecutable(t *testing.T) {
	t.Parallel()
	host := processtest.StartRegistry(t)
	ref := processtest.BuildImage(t, host, "noexec", processtest.ServerDir())
	rt := newRuntime(t)
	rev := revision("noexec-00001")
	rev.Spec.Container.Command = []string{"no-such-tool"}
	st := waitFor(t, rt, rev, ref, "failed", func(st reconcile.WorkloadState) bool { return st.Reason != "" })
	if st.Reason != "ExitCode:127" || !strings.Contains(st.Message, `exec "no-such-tool": executable file not found in the image's PATH /`) {
		t.Errorf("state = %+v, want ExitCode:127 naming the command", st)
	}
}

// TestCloseStopsEveryProcess is not parallel: it checks that no goroutine
// of the package is left, which other tests' runtimes would have.
func TestCloseStopsEveryProcess(t *testing.T) {
	host := processtest.StartRegistry(t)
	ref := processtest.BuildImage(t, host, "close", processtest.ServerDir())
	rt := newRuntime(t)
	var pids []int
	for _, name := range []string{"close-00001", "close-00002"} {
		rev := revision(name)
		waitFor(t, rt, rev, ref, "ready", isReady)
		pids = append(pids, pid(rt, rev))
	}
	// One more still fetching an image that never comes.
	if _, err := rt.Materialize(context.Background(), revision("close-00003"), host+"/absent:latest"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, p := range pids {
		if !gone(p) {
			t.Errorf("process %d still exists after Close", p)
		}
	}
	if _, err := rt.Materialize(context.Background(), revision("close-00004"), ref); !errors.Is(err, ErrClosed) {
		t.Errorf("Materialize after Close: %v, want ErrClosed", err)
	}
	if err := rt.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// No supervisor, copier, waiter or extraction is left. The test is not
	// parallel, so no other runtime exists; a goroutine that has just
	// signalled its end may still be returning, hence the poll.
	testutil.Eventually(t, 5*time.Second, "no goroutine of the runtime left after Close", func() (bool, string) {
		left := leftGoroutines()
		return left == "", "left:\n" + left
	})
}

func leftGoroutines() string {
	buf := make([]byte, 1<<20)
	var left []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "process.(*Runtime)") || strings.Contains(g, "mutate.Extract") {
			left = append(left, g)
		}
	}
	return strings.Join(left, "\n\n")
}
