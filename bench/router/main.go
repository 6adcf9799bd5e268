// Command router measures the elafros router beside nginx (Debian's
// package) and the same backends reached directly, in one run: two
// backends on loopback split 75/25 (client-side for "direct", nginx's
// weighted upstream, our router's smooth weighted round-robin), a fixed
// number of keep-alive connections for a fixed time each, and reports
// throughput and p50/p99 latency with the ratios against direct and
// nginx. Run it through bench/run.sh, which installs nginx.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/router"
	"github.com/elafros/elafros/internal/reconcile"
)

type result struct {
	name     string
	requests int64
	errors   int64
	rps      float64
	p50, p99 time.Duration
}

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long each target is loaded")
	conns := flag.Int("conns", 32, "concurrent keep-alive connections")
	nginxBin := flag.String("nginx", "nginx", "the nginx binary")
	flag.Parse()
	if err := run(*duration, *conns, *nginxBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func run(d time.Duration, conns int, nginxBin string) error {
	// Two backends answering a small body, as a revision would.
	var backends []string
	for _, name := range []string{"rev-a", "rev-b"} {
		l, err := listen()
		if err != nil {
			return err
		}
		body := []byte("hello from " + name + "\n")
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
		backends = append(backends, l.Addr().String())
	}

	// Our router with a 75/25 plan.
	rt := router.New(staticResolver{"rev-a": backends[0], "rev-b": backends[1]}, router.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer rt.Close()
	route := &v1alpha1.Route{}
	route.Namespace, route.Name = "default", "bench"
	if err := rt.Apply(context.Background(), route, reconcile.TrafficPlan{
		Domain: "bench.default.localhost",
		Split:  []reconcile.Backend{{Revision: "rev-a", Percent: 75, Ready: true}, {Revision: "rev-b", Percent: 25, Ready: true}},
	}); err != nil {
		return err
	}
	rl, err := listen()
	if err != nil {
		return err
	}
	rsrv := &http.Server{Handler: rt, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rsrv.Serve(rl) }()
	defer rsrv.Close()

	// nginx with the same weights.
	nginxAddr, stopNginx, err := startNginx(nginxBin, backends)
	if err != nil {
		return err
	}
	defer stopNginx()

	fmt.Printf("elafros router vs nginx vs direct: 2 backends at 75/25, %d keep-alive connections, %s each, GOMAXPROCS=%d\n\n", conns, d, runtimeProcs())
	direct := load("direct", d, conns, func(i int64) string {
		if i%4 == 3 {
			return "http://" + backends[1] + "/"
		}
		return "http://" + backends[0] + "/"
	}, "")
	ours := load("elafros router", d, conns, func(int64) string { return "http://" + rl.Addr().String() + "/" }, "bench.default.localhost")
	ngx := load("nginx", d, conns, func(int64) string { return "http://" + nginxAddr + "/" }, "bench.default.localhost")

	fmt.Printf("%-16s %12s %10s %10s %10s %8s\n", "target", "requests", "req/s", "p50", "p99", "errors")
	for _, r := range []result{direct, ours, ngx} {
		fmt.Printf("%-16s %12d %10.0f %10s %10s %8d\n", r.name, r.requests, r.rps, r.p50, r.p99, r.errors)
	}
	fmt.Printf("\nratios (elafros router / x):\n")
	fmt.Printf("  throughput vs direct %.2f, vs nginx %.2f\n", ours.rps/direct.rps, ours.rps/ngx.rps)
	fmt.Printf("  p50 latency vs direct %.2f, vs nginx %.2f\n", float64(ours.p50)/float64(direct.p50), float64(ours.p50)/float64(ngx.p50))
	fmt.Printf("  p99 latency vs direct %.2f, vs nginx %.2f\n", float64(ours.p99)/float64(direct.p99), float64(ours.p99)/float64(ngx.p99))
	if ours.errors+ngx.errors+direct.errors > 0 {
		return fmt.Errorf("requests failed: direct %d, router %d, nginx %d", direct.errors, ours.errors, ngx.errors)
	}
	return nil
}

func runtimeProcs() int { return maxProcs() }

type staticResolver map[string]string

func (s staticResolver) Backend(_, rev string) (router.Backend, bool) {
	a, ok := s[rev]
	return router.Backend{Addr: a}, ok
}

// load drives conns workers for d and measures each request.
func load(name string, d time.Duration, conns int, url func(int64) string, host string) result {
	tr := &http.Transport{MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		n, errs atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				i := n.Add(1)
				req, _ := http.NewRequest("GET", url(i), nil)
				if host != "" {
					req.Host = host
				}
				t0 := time.Now()
				res, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(float64(len(lat)-1)*p)]
	}
	return result{name: name, requests: int64(len(lat)), errors: errs.Load(), rps: float64(len(lat)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}
}

func startNginx(bin string, backends []string) (string, func(), error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", nil, fmt.Errorf("nginx not found (bench/run.sh installs Debian's nginx-light): %w", err)
	}
	l, err := listen()
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir, err := os.MkdirTemp("", "elafros-bench-nginx")
	if err != nil {
		return "", nil, err
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", nil, err
		}
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  upstream revisions { server %[2]s weight=3; server %[3]s weight=1; keepalive 256; }
  server {
    listen %[4]s;
    location / { proxy_pass http://revisions; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
}
`, dir, backends[0], backends[1], addr)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(path, "-p", dir, "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("nginx did not listen on %s: see %s", addr, strings.TrimSpace(dir+"/logs/error.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
