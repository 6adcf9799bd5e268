// Command up starts the test cluster of internal/kube/kubetest (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and a kwok node,
// from hack/cluster/build.sh's binaries) for a person, in the background,
// and prints the KUBECONFIG to export; "down" stops it. It is what
// "make cluster-up" and "make cluster-down" run.
//
//	go run ./hack/cluster/up        # or: up up
//	go run ./hack/cluster/up down
//
// The Gateway API CRDs are installed; the elafros.dev ones are left to
// "elafros install". The cluster's files (kubeconfig, logs, etcd data) live in
// $ELAFROS_CLUSTER_UP_DIR, by default ~/.cache/elafros/cluster-up; a new
// "up" starts from an empty etcd.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
)

func main() {
	cmd := "up"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "up":
		err = up(os.Stdout, stateDir())
	case "down":
		err = down(os.Stdout, stateDir())
	case "run":
		err = run(stateDir())
	default:
		err = fmt.Errorf("unknown command %q; accepted: up, down", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func stateDir() string {
	if d := os.Getenv("ELAFROS_CLUSTER_UP_DIR"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "elafros", "cluster-up")
}

// running returns the pid of the cluster's holder process, if one runs.
func running(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

func printUsage(w io.Writer, dir string) {
	kc := filepath.Join(dir, "kubeconfig")
	fmt.Fprintf(w, `The test cluster is up (logs in %s).
  export KUBECONFIG=%s
  kubectl get nodes
  go run ./cmd/elafros install --kubeconfig $KUBECONFIG
  go run ./cmd/elafros reconcile --kubeconfig $KUBECONFIG --gateway default/public
Stop it with: make cluster-down
`, dir, kc)
}

// up starts "run" in its own session and waits until the cluster answers.
func up(w io.Writer, dir string) error {
	if _, ok := running(dir); ok {
		printUsage(w, dir)
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "ELAFROS_CLUSTER_UP_DIR="+dir)
	// Its own session: the cluster outlives this command (and go run).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintln(w, "Starting the test cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok)...")
	deadline := time.After(3 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			printUsage(w, dir)
			return nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "up.log"))
			return fmt.Errorf("the cluster did not start: %w\n%s", err, log)
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("the cluster was not ready after 3 minutes; see %s", filepath.Join(dir, "up.log"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// down stops the holder process, which stops the cluster's processes.
func down(w io.Writer, dir string) error {
	pid, ok := running(dir)
	if !ok {
		fmt.Fprintln(w, "No test cluster is running.")
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping process %d: %w", pid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			_ = os.Remove(filepath.Join(dir, "pid"))
			_ = os.Remove(filepath.Join(dir, "ready"))
			fmt.Fprintln(w, "The test cluster is stopped.")
			return nil
		}
	}
	return fmt.Errorf("process %d did not stop within 30 s", pid)
}

// run holds the cluster until SIGTERM or SIGINT.
func run(dir string) (err error) {
	p := &person{dir: filepath.Join(dir, "cluster"), log: os.Stderr}
	defer p.cleanup()
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(fatal); ok {
				err = errors.New(string(f))
				return
			}
			panic(r)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c := kubetest.Start(p)
	// The Gateway API CRDs, which elafros reconcile writes HTTPRoutes of;
	// the elafros.dev CRDs are left to "elafros install", to try it.
	if err := kube.InstallCRDs(ctx, c.Config, c.GatewayAPICRDs(p)...); err != nil {
		return fmt.Errorf("installing the Gateway API CRDs: %w", err)
	}
	kc, err := os.ReadFile(filepath.Join(c.Dir, "kubeconfig"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kc, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "cluster: ready at %s\n", c.URL)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "cluster: stopping")
	return nil
}

// fatal carries a Fatal's message out of kubetest.Start.
type fatal string

// person is the testing.TB that kubetest.Start is given outside a test:
// its files stay in dir, its cleanups run when the cluster stops, and a
// Fatal ends the start with an error. kubetest calls only the methods
// defined here; the embedded TB (nil) satisfies the interface's
// unexported method.
type person struct {
	testing.TB
	dir      string
	log      io.Writer
	cleanups []func()
	failed   bool
}

func (p *person) Helper()                      {}
func (p *person) Cleanup(f func())             { p.cleanups = append(p.cleanups, f) }
func (p *person) Failed() bool                 { return p.failed }
func (p *person) Logf(format string, a ...any) { fmt.Fprintf(p.log, format+"\n", a...) }
func (p *person) Log(a ...any)                 { fmt.Fprintln(p.log, a...) }
func (p *person) Errorf(format string, a ...any) {
	p.failed = true
	p.Logf(format, a...)
}
func (p *person) Error(a ...any) { p.failed = true; p.Log(a...) }
func (p *person) Fatal(a ...any) { p.failed = true; panic(fatal(fmt.Sprint(a...))) }
func (p *person) Fatalf(format string, a ...any) {
	p.failed = true
	panic(fatal(fmt.Sprintf(format, a...)))
}
func (p *person) Skip(a ...any)                 { p.Fatal(a...) }
func (p *person) Skipf(format string, a ...any) { p.Fatalf(format, a...) }
func (p *person) Setenv(key, value string)      { _ = os.Setenv(key, value) }
func (p *person) Context() context.Context      { return context.Background() }
func (p *person) Name() string                  { return "cluster-up" }

func (p *person) TempDir() string {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		p.Fatal(err)
	}
	return p.dir
}

func (p *person) cleanup() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
}
