// Command router measures the elafros router as a user gets it — a real
// `elafros serve` with a route at 75/25 over two real revision processes
// of examples/hello — against nginx (Debian's nginx-light, weighted
// upstream 3:1 over the same two processes, keepalive 64) with
// worker_processes 1 and auto, against a second serve with other flags
// (-compare-args; by default a goroutine per connection instead of the
// event loop, --router-loops -1; with processes of its own), and against
// each process reached directly.
// The load comes from wrk (-t2 -c32 -d8s --latency by default), outside
// every process measured. Targets run in pairs within each round (the
// router beside nginx-1, each first every other round; see runOrder) and
// the rounds repeat, so that the noise of a shared machine falls on all of
// them alike; the report gives req/s, p50 and p99 per target and round,
// and the router's ratios against both nginx configurations.
//
// With -profile DIR it instead runs the control plane in this process and
// writes CPU, allocation, mutex and block profiles of the router under wrk
// to DIR (read them with go tool pprof -top).
//
// Run it through bench/run.sh, which installs wrk and nginx.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	duration        time.Duration
	threads, conns  int
	rounds          int
	wrk, nginx, bin string
	app             string
	profile         string
	baseline        string
	serveEnv        string
	serveArgs       string
	floor           bool
	compareArgs     string
	hold            bool
}

func main() {
	var c config
	flag.DurationVar(&c.duration, "duration", 8*time.Second, "how long wrk loads each target per round (whole seconds)")
	flag.IntVar(&c.threads, "threads", 2, "wrk threads (-t)")
	flag.IntVar(&c.conns, "conns", 32, "wrk connections (-c)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds over all targets")
	flag.StringVar(&c.wrk, "wrk", "wrk", "the wrk binary")
	flag.StringVar(&c.nginx, "nginx", "nginx", "the nginx binary")
	flag.StringVar(&c.bin, "elafros", "", "the elafros binary (default: go build ./cmd/elafros)")
	flag.StringVar(&c.app, "app", "examples/hello", "the revisions' program (a Go main package)")
	flag.StringVar(&c.profile, "profile", "", "profile the router in this process under wrk and write the profiles here instead")
	flag.StringVar(&c.baseline, "baseline", "", "another elafros binary (e.g. built from an earlier commit) measured as one more target, with revision processes of its own")
	flag.StringVar(&c.serveArgs, "serve-args", "", "extra flags of elafros serve, space-separated (e.g. --router-loops 2)")
	flag.StringVar(&c.serveEnv, "serve-env", "", "extra KEY=VALUE,... in the environment of elafros serve (e.g. GOMAXPROCS=1)")
	flag.StringVar(&c.compareArgs, "compare-args", "--router-loops -1", "also measure elafros serve with these flags (space-separated; default: a goroutine per connection, no event loop), with revision processes of its own; empty: not")
	flag.BoolVar(&c.floor, "floor", false, "also measure what answering costs a Go process that proxies nothing: a net/http server and a raw loop, each with a fixed answer")
	flag.BoolVar(&c.hold, "hold", false, "set the targets up, print their addresses and process IDs, and keep them up until interrupted instead of loading them (to look at them with perf or strace under wrk by hand)")
	floorServer := flag.String("floor-server", "", "internal: serve as the floor server of this mode")
	floorAddr := flag.String("floor-addr", "", "internal: the floor server's address")
	flag.Parse()
	if *floorServer != "" {
		if err := serveFloor(*floorServer, *floorAddr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type target struct {
	name, url, host string
	pid             int // the process answering wrk
	// children: its child processes are part of it (nginx's workers),
	// unlike serve's revision processes.
	children bool
	// revisions are the revision processes the target proxies to: what
	// it costs them per request shows whether the proxy makes them work
	// harder (a longer request head, another connection pattern).
	revisions []int
}

func run(ctx context.Context, c config) error {
	if _, err := exec.LookPath(c.wrk); err != nil {
		return fmt.Errorf("wrk not found (bench/run.sh installs Debian's wrk): %w", err)
	}
	app, err := filepath.Abs(c.app)
	if err != nil {
		return err
	}
	if c.profile != "" {
		return profile(ctx, c, app)
	}
	if c.bin == "" {
		dir, err := os.MkdirTemp("", "elafros-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.bin = filepath.Join(dir, "elafros")
		if out, err := exec.Command("go", "build", "-o", c.bin, "./cmd/elafros").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/elafros: %w\n%s", err, out)
		}
	}
	var env []string
	if c.serveEnv != "" {
		env = strings.Split(c.serveEnv, ",")
	}
	p, err := startBinary(c.bin, env, strings.Fields(c.serveArgs)...)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := p.deploy(ctx, app); err != nil {
		return err
	}
	var base *plane
	if c.baseline != "" {
		if base, err = startBinary(c.baseline, env); err != nil {
			return err
		}
		defer base.stop()
		if err := base.deploy(ctx, app); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
	}
	var gor *plane
	if c.compareArgs != "" {
		if gor, err = startBinary(c.bin, env, strings.Fields(c.compareArgs)...); err != nil {
			return err
		}
		defer gor.stop()
		if err := gor.deploy(ctx, app); err != nil {
			return fmt.Errorf("serve %s: %w", c.compareArgs, err)
		}
	}
	n1, err := startNginx(c.nginx, "1", p.backends)
	if err != nil {
		return err
	}
	defer n1.stop()
	nAuto, err := startNginx(c.nginx, "auto", p.backends)
	if err != nil {
		return err
	}
	defer nAuto.stop()

	// In pairs (see runOrder): the router beside nginx-1, then nginx-auto
	// beside the compared serve.
	targets := []target{
		{"nginx-1", "http://" + n1.addr + "/", benchHost, n1.cmd.Process.Pid, true, p.backendPIDs[:]},
		{"elafros serve", "http://" + p.http + "/", benchHost, p.pid, false, p.backendPIDs[:]},
		{"nginx-auto", "http://" + nAuto.addr + "/", benchHost, nAuto.cmd.Process.Pid, true, p.backendPIDs[:]},
	}
	if gor != nil {
		targets = append(targets, target{compareName, "http://" + gor.http + "/", benchHost, gor.pid, false, gor.backendPIDs[:]})
	}
	targets = append(targets,
		target{"direct-a (75%)", "http://" + p.backends[0] + "/", "", p.backendPIDs[0], false, nil},
		target{"direct-b (25%)", "http://" + p.backends[1] + "/", "", p.backendPIDs[1], false, nil})
	if base != nil {
		targets = append(targets, target{"serve baseline", "http://" + base.http + "/", benchHost, base.pid, false, base.backendPIDs[:]})
	}
	if c.floor {
		for _, mode := range []struct{ mode, name string }{{"nethttp", "go net/http"}, {"raw", "go raw loop"}, {"epoll", "go epoll loop"}} {
			addr, cmd, err := startFloor(mode.mode)
			if err != nil {
				return err
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			targets = append(targets, target{mode.name, "http://" + addr + "/", "", cmd.Process.Pid, false, nil})
		}
	}
	fmt.Printf("elafros serve (router) vs nginx vs the revisions directly: route %s at 75/25 over 2 processes of %s\n", benchHost, c.app)
	fmt.Printf("wrk -t%d -c%d -d%s --latency, %d rounds, targets interleaved in pairs (elafros serve beside nginx-1, each first every other round; the pairs rotate); %d CPUs\n",
		c.threads, c.conns, c.duration, c.rounds, runtime.NumCPU())
	if c.serveEnv != "" {
		fmt.Printf("elafros serve runs with %s\n", c.serveEnv)
	}
	if c.serveArgs != "" {
		fmt.Printf("elafros serve runs with the flags %s\n", c.serveArgs)
	}
	if gor != nil {
		fmt.Printf("%s is elafros serve %s, with revision processes of its own\n", compareName, c.compareArgs)
	}
	if base != nil {
		fmt.Printf("serve baseline is %s, with revision processes of its own\n", c.baseline)
	}
	fmt.Println()

	if c.hold {
		for _, t := range targets {
			host := ""
			if t.host != "" {
				host = " -H 'Host: " + t.host + "'"
			}
			fmt.Printf("%-16s pid %-7d revisions %-13s wrk -t%d -c%d -d%s --latency%s %s\n", t.name, t.pid, fmt.Sprint(t.revisions), c.threads, c.conns, c.duration, host, t.url)
		}
		fmt.Println("holding until interrupted")
		<-ctx.Done()
		return nil
	}

	results := make([][]wrkResult, len(targets)) // [target][round]
	for round := range c.rounds {
		fmt.Printf("round %d (load before: %s)\n", round+1, loadavg())
		for _, i := range runOrder(len(targets), round) {
			t := targets[i]
			cpu0, err := processCPU(t.pid, t.children)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			rev0, err := revisionsCPU(t.revisions)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			r, out, err := runWrk(ctx, c.wrk, t.url, t.host, c.threads, c.conns, c.duration)
			if err != nil {
				return err
			}
			cpu1, err := processCPU(t.pid, t.children)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			rev1, err := revisionsCPU(t.revisions)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			r.CPUPerRequest = (cpu1 - cpu0) / time.Duration(max(r.Requests, 1))
			r.RevCPUPerRequest = (rev1 - rev0) / time.Duration(max(r.Requests, 1))
			if r.Non2xx+r.SocketErrs > 0 {
				return fmt.Errorf("%s: %d non-2xx responses and %d socket errors in round %d:\n%s", t.name, r.Non2xx, r.SocketErrs, round+1, out)
			}
			results[i] = append(results[i], r)
			rev := ""
			if t.revisions != nil {
				rev = fmt.Sprintf("  revisions %5.1f µs/req", us(r.RevCPUPerRequest))
			}
			fmt.Printf("  %-16s %10.0f req/s  p50 %9s  p99 %9s  CPU %6.1f µs/req%s\n", t.name, r.RPS, fmtDur(r.P50), fmtDur(r.P99), us(r.CPUPerRequest), rev)
		}
		fmt.Printf("  (load after: %s)\n", loadavg())
	}
	report(targets, results)
	return nil
}

// compareName is the target of -compare-args.
const compareName = "serve compared"

// runOrder is the order the n targets run in in a round: in pairs
// (targets 0 and 1, 2 and 3, ...), the pairs rotated each round and the
// two of each pair swapped every other round. The router and nginx-1 (the
// first pair) so always run back to back, each first as often as the
// other: a machine that slows down within a round slows both alike, and
// the load one leaves behind falls on each in turn.
func runOrder(n, round int) []int {
	pairs := (n + 1) / 2
	order := make([]int, 0, n)
	for k := range pairs {
		p := (k + round) % pairs
		a, b := 2*p, 2*p+1
		if round%2 == 1 {
			a, b = b, a
		}
		for _, i := range []int{a, b} {
			if i < n {
				order = append(order, i)
			}
		}
	}
	return order
}

// report prints per round the router's ratios against both nginx
// configurations, then the ranges over the rounds.
func report(targets []target, results [][]wrkResult) {
	idx := map[string]int{}
	for i, t := range targets {
		idx[t.name] = i
	}
	ours := results[idx["elafros serve"]]
	refs := []string{"nginx-1", "nginx-auto"}
	for _, other := range []string{compareName, "serve baseline"} {
		if _, ok := idx[other]; ok {
			refs = append(refs, other)
		}
	}
	fmt.Printf("\nthe router's ratios (elafros serve / the other); CPU is µs of CPU per request of the answering process(es)\n")
	fmt.Printf("%-8s %-16s %12s %12s %12s %12s\n", "round", "vs", "throughput", "p50", "p99", "CPU/req")
	for _, ref := range refs {
		theirs := results[idx[ref]]
		var ratios [4][]float64
		for round := range ours {
			o, t := ours[round], theirs[round]
			r := [4]float64{o.RPS / t.RPS, float64(o.P50) / float64(t.P50), float64(o.P99) / float64(t.P99),
				float64(o.CPUPerRequest) / float64(max(t.CPUPerRequest, 1))}
			for k := range r {
				ratios[k] = append(ratios[k], r[k])
			}
			fmt.Printf("%-8d %-16s %11.2fx %11.2fx %11.2fx %11.2fx\n", round+1, ref, r[0], r[1], r[2], r[3])
		}
		if len(ours) > 1 {
			fmt.Printf("%-8s %-16s %11.2fx %11.2fx %11.2fx %11.2fx\n", "median", ref,
				median(ratios[0]), median(ratios[1]), median(ratios[2]), median(ratios[3]))
		}
	}
	fmt.Printf("\n%-16s %-22s %-22s %-22s %-22s\n", "target", "req/s (min–max)", "p50 (min–max)", "p99 (min–max)", "CPU µs/req (min–max)")
	for i, t := range targets {
		rs := results[i]
		lo, hi := rs[0], rs[0]
		var p50lo, p50hi, p99lo, p99hi = rs[0].P50, rs[0].P50, rs[0].P99, rs[0].P99
		cpulo, cpuhi := rs[0].CPUPerRequest, rs[0].CPUPerRequest
		for _, r := range rs[1:] {
			cpulo, cpuhi = min(cpulo, r.CPUPerRequest), max(cpuhi, r.CPUPerRequest)
			if r.RPS < lo.RPS {
				lo = r
			}
			if r.RPS > hi.RPS {
				hi = r
			}
			p50lo, p50hi = min(p50lo, r.P50), max(p50hi, r.P50)
			p99lo, p99hi = min(p99lo, r.P99), max(p99hi, r.P99)
		}
		fmt.Printf("%-16s %-22s %-22s %-22s %-22s\n", t.name, fmt.Sprintf("%.0f–%.0f", lo.RPS, hi.RPS),
			fmtDur(p50lo)+"–"+fmtDur(p50hi), fmtDur(p99lo)+"–"+fmtDur(p99hi), fmt.Sprintf("%.1f–%.1f", us(cpulo), us(cpuhi)))
	}
}

// median is the middle of xs (the mean of the two middle ones for an
// even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// loadavg is /proc/loadavg's first three fields, as uptime prints them.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// profile runs serve in this process, loads its router with wrk for
// c.duration while the CPU profile runs, and writes cpu, allocs, mutex
// and block profiles to c.profile.
func profile(ctx context.Context, c config, app string) error {
	if err := os.MkdirAll(c.profile, 0o755); err != nil {
		return err
	}
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(10_000) // one sample per 10µs blocked
	p, err := startInProcess(ctx)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := p.deploy(ctx, app); err != nil {
		return err
	}
	// Warm the connection pools before measuring.
	if _, out, err := runWrk(ctx, c.wrk, "http://"+p.http+"/", benchHost, c.threads, c.conns, time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	f, err := os.Create(filepath.Join(c.profile, "cpu.pprof"))
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	r, out, err := runWrk(ctx, c.wrk, "http://"+p.http+"/", benchHost, c.threads, c.conns, c.duration)
	pprof.StopCPUProfile()
	_ = f.Close()
	if err != nil {
		return err
	}
	fmt.Print(out)
	for _, name := range []string{"allocs", "mutex", "block"} {
		f, err := os.Create(filepath.Join(c.profile, name+".pprof"))
		if err != nil {
			return err
		}
		if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
			return err
		}
		_ = f.Close()
	}
	fmt.Printf("\nelafros serve in-process under wrk: %.0f req/s, p50 %s, p99 %s; profiles in %s:\n", r.RPS, fmtDur(r.P50), fmtDur(r.P99), c.profile)
	fmt.Printf("  go tool pprof -top %s/cpu.pprof   (and allocs, mutex, block)\n", c.profile)
	return nil
}
