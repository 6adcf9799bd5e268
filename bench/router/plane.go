package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/reconcile"
)

// benchHost is the route's domain on serve's default domain suffix.
const benchHost = "bench.default.localhost"

// plane is a running elafros serve with the bench route at 75/25 over two
// revisions of examples/hello.
type plane struct {
	dataDir, api, http, registry string
	backends                     [2]string // the revisions' processes: 75%, 25%
	backendPIDs                  [2]int
	pid                          int // serve's, when it runs as its own process
	stop                         func()
}

// startBinary runs `elafros serve` (bin, with args) on a fresh data
// directory, as a user starts it.
func startBinary(bin string, env []string, args ...string) (*plane, error) {
	p := &plane{}
	var err error
	if p.dataDir, err = os.MkdirTemp("", "elafros-bench-router-"); err != nil {
		return nil, err
	}
	for _, a := range []*string{&p.api, &p.http, &p.registry} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	log, err := os.Create(filepath.Join(p.dataDir, "..", filepath.Base(p.dataDir)+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"serve", "--data-dir", p.dataDir, "--api-addr", p.api, "--http-addr", p.http, "--registry-addr", p.registry}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pid = cmd.Process.Pid
	p.stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = log.Close()
		_ = os.Remove(log.Name())
		_ = os.RemoveAll(p.dataDir)
	}
	if err := waitListening(p.api, 60*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("elafros serve did not listen on %s (log: %s): %w", p.api, log.Name(), err)
	}
	return p, nil
}

// startInProcess runs the same control plane in this process, for
// profiling the router with the metrics and wiring of serve.
func startInProcess(ctx context.Context) (*plane, error) {
	dir, err := os.MkdirTemp("", "elafros-bench-router-")
	if err != nil {
		return nil, err
	}
	srv, err := serve.Start(ctx, serve.Options{
		DataDir: dir, APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	return &plane{dataDir: dir, api: strings.TrimPrefix(srv.APIURL, "http://"), http: srv.HTTPAddr, registry: srv.RegistryAddr,
		stop: func() { srv.Close(); _ = os.RemoveAll(dir) }}, nil
}

// deploy pushes examples/hello (built from app) to serve's registry, makes
// two revisions of it (bench-a-00001 says "Hello a!", bench-b-00001
// "Hello b!"), routes bench at 75/25 over them, and waits until the
// router answers from both.
func (p *plane) deploy(ctx context.Context, app string) error {
	image, err := pushApp(app, p.registry+"/bench/hello:v1")
	if err != nil {
		return err
	}
	st, err := client.ForServer("http://" + p.api)
	if err != nil {
		return err
	}
	revs := [2]string{}
	for i, target := range []string{"a", "b"} {
		cfg := &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: "bench-" + target, Namespace: "default"}}
		cfg.Spec.RevisionTemplate.Spec.Container.Image = image
		cfg.Spec.RevisionTemplate.Spec.Container.Env = []corev1.EnvVar{{Name: "TARGET", Value: target}}
		cfg.SetDefaults()
		if _, err := st.Create(ctx, cfg); err != nil {
			return fmt.Errorf("creating configuration %s: %w", cfg.Name, err)
		}
		revs[i] = reconcile.RevisionName(cfg.Name, 1)
	}
	rt := &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "default"},
		Spec: v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: []v1alpha1.TrafficTarget{
			{RevisionName: revs[0], Percent: 75}, {RevisionName: revs[1], Percent: 25}}}}}
	if _, err := st.Create(ctx, rt); err != nil {
		return fmt.Errorf("creating route bench: %w", err)
	}
	seen := map[string]int{}
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for seen[revs[0]] < 3 || seen[revs[1]] < 1 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the router did not serve %s from both %v within 2m (seen %v)", benchHost, revs, seen)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.http+"/", nil)
		req.Host = benchHost
		res, err := c.Do(req)
		if err != nil || res.StatusCode != http.StatusOK {
			if err == nil {
				_ = res.Body.Close()
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		seen[res.Header.Get("Elafros-Revision")]++
	}
	for i, rev := range revs {
		if p.backends[i], p.backendPIDs[i], err = p.processAddr(rev); err != nil {
			return err
		}
	}
	return nil
}

// processAddr finds where revision's process listens, and its pid: serve records each
// process's pid under <data-dir>/run, and the process's environment holds
// the workload contract's PORT and ELAFROS_REVISION.
func (p *plane) processAddr(revision string) (string, int, error) {
	entries, err := os.ReadDir(filepath.Join(p.dataDir, "run"))
	if err != nil {
		return "", 0, fmt.Errorf("finding revision %s's process: %w", revision, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(p.dataDir, "run", e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		vars := map[string]string{}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				vars[k] = v
			}
		}
		if vars[v1alpha1.EnvRevision] == revision && vars[v1alpha1.EnvPort] != "" {
			return "127.0.0.1:" + vars[v1alpha1.EnvPort], pid, nil
		}
	}
	return "", 0, fmt.Errorf("no process of revision %s found under %s", revision, filepath.Join(p.dataDir, "run"))
}

// pushApp builds the Go program in dir as a static Linux binary for this machine,
// pushes an image running it to ref and returns the image by digest.
func pushApp(dir, ref string) (string, error) {
	tmp, err := os.MkdirTemp("", "elafros-bench-app-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	exe := filepath.Join(tmp, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", dir, err, out)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)}); err != nil {
		return "", err
	}
	if _, err := tw.Write(bin); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/app"}
	cf.Config.Env = []string{"PATH=/"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	h, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(h.String()).String(), nil
}
