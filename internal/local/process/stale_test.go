package process

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startSleep starts exe (a copy of sleep) in its own process group, as
// the runtime starts revisions, but without Pdeathsig: as if the control
// plane that started it had died without taking it along.
func startSleep(t *testing.T, exe string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	return cmd
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Skipf("no %s to copy: %v", from, err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestNewEndsStaleProcesses: a revision process recorded by a crashed
// predecessor, still running from the image cache, is ended by the next
// runtime; a recorded pid now running something else is left alone.
func TestNewEndsStaleProcesses(t *testing.T) {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("needs /proc")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	dir := t.TempDir()
	cache, pids := filepath.Join(dir, "images"), filepath.Join(dir, "run")
	stale := filepath.Join(cache, "sha256:0123", "rootfs", "bin", "server")
	copyExecutable(t, sleep, stale)
	orphan := startSleep(t, stale)
	stranger := startSleep(t, sleep) // not from the cache: a reused pid
	if err := os.MkdirAll(pids, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"default_hello-00001.pid": orphan.Process.Pid, "default_other-00002.pid": stranger.Process.Pid} {
		if err := os.WriteFile(filepath.Join(pids, name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	rt, err := New(Options{CacheDir: cache, LogDir: filepath.Join(dir, "logs"), PIDDir: pids,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	select {
	case err := <-done:
		if ws, ok := orphan.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the stale process ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stale revision process still runs after New")
	}
	if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process not running from the cache was ended: %v", err)
	}
	if left, _ := os.ReadDir(pids); len(left) != 0 {
		t.Errorf("pid records left after New: %v", left)
	}
}
