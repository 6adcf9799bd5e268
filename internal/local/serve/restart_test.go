package serve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/local/router"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// The restart tests run the real `elafros serve`, built from
// ./cmd/elafros, as a user does: deploy services from images pushed by
// tag, stop serve (kill -9, or SIGTERM with requests in flight), start it
// again on the same data directory and ports, and check that every URL
// answers with the same revision, from the image cache, with no build and
// no pull, even though the tag now names another image.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// elafrosBinary builds ./cmd/elafros once per test binary.
func elafrosBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", "..", ".."))
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "elafros-restart-test-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "elafros")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/elafros")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building ./cmd/elafros: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
}

// plane is one data directory and its addresses, served by successive
// serve processes.
type plane struct {
	t                         testing.TB
	bin, dataDir              string
	api, http, reg            string
	client                    *http.Client
	runs                      int
	cmd                       *exec.Cmd
	exited                    chan struct{}
	exitErr                   error
	services                  []string
	served                    map[string]string // host -> body
	imageDigestOf             map[string]string
	retaggedDigest, pushedTag string
}

// inFlight is the number of requests the router has in flight, the sum of
// router.MetricInFlight on serve's /metrics.
func (p *plane) inFlight() (float64, error) {
	res, err := p.client.Get("http://" + p.api + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, router.MetricInFlight+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

func newPlane(t testing.TB) *plane {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &plane{t: t, bin: elafrosBinary(t), dataDir: t.TempDir(),
		api: freeAddr(t), http: freeAddr(t), reg: freeAddr(t),
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// start runs serve and waits for its API; it returns the run's output.
func (p *plane) start(extra ...string) *syncBuffer {
	p.t.Helper()
	p.runs++
	out := &syncBuffer{}
	args := append([]string{"serve", "--data-dir", p.dataDir, "--api-addr", p.api, "--http-addr", p.http, "--registry-addr", p.reg}, extra...)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() { p.exitErr = cmd.Wait(); close(p.exited) }()
	p.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if p.t.Failed() {
			p.t.Logf("serve run %d output:\n%s", p.runs, out.String())
		}
	})
	p.waitFor("the API of serve run "+strconv.Itoa(p.runs), 60*time.Second, func() bool {
		select {
		case <-p.exited:
			p.t.Fatalf("serve exited: %v\n%s", p.exitErr, out.String())
		default:
		}
		res, err := p.client.Get("http://" + p.api + "/apis/elafros.dev/v1alpha1/namespaces/default/services")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return out
}

func (p *plane) waitFor(what string, d time.Duration, ok func() bool) {
	p.t.Helper()
	testutil.Eventually(p.t, d, what, func() (bool, string) { return ok(), "" })
}

func (p *plane) get(host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.http+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	res, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// pushImage pushes the test server, with MESSAGE=message in its config,
// to serve's registry by tag, and returns its digest.
func (p *plane) pushImage(tag, message string) string {
	p.t.Helper()
	img := processtest.Image(p.t, processtest.ServerDir())
	cf, err := img.ConfigFile()
	if err != nil {
		p.t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Env = append(cf.Config.Env, "MESSAGE="+message)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		p.t.Fatal(err)
	}
	ref, err := name.NewTag(tag, name.Insecure)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		p.t.Fatalf("pushing %s: %v", tag, err)
	}
	return digestOf(p.t, img)
}

func digestOf(t testing.TB, img v1.Image) string {
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// deploy creates n services running the image by tag and waits until
// each answers through the router; it records what each host serves.
func (p *plane) deploy(n int) {
	p.t.Helper()
	p.pushedTag = p.reg + "/e2e/server:v1"
	p.pushImage(p.pushedTag, "first-image")
	st, err := client.ForServer("http://" + p.api)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := range n {
		svc := &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d", i), Namespace: "default"}}
		svc.Spec.RevisionTemplate.Spec.Container.Image = p.pushedTag
		svc.SetDefaults()
		if _, err := st.Create(p.t.Context(), svc); err != nil {
			p.t.Fatal(err)
		}
		p.services = append(p.services, svc.Name)
	}
	p.served = map[string]string{}
	p.waitAllServe(time.Duration(60+3*n)*time.Second, nil)
	for host, body := range p.served {
		if !strings.HasSuffix(strings.TrimSpace(body), "first-image") {
			p.t.Fatalf("%s answered %q, want the first image's message", host, body)
		}
	}
	// Every revision pinned its digest.
	p.imageDigestOf = map[string]string{}
	for _, svc := range p.services {
		o, err := st.Get(p.t.Context(), store.KindRevision, "default", svc+"-00001")
		if err != nil {
			p.t.Fatal(err)
		}
		d := o.(*v1alpha1.Revision).Status.ImageDigest
		if !strings.Contains(d, "@sha256:") {
			p.t.Fatalf("revision %s-00001 has imageDigest %q, want the image by digest", svc, d)
		}
		p.imageDigestOf[svc] = d
	}
}

// waitAllServe waits until every service's host answers 200; with want
// set, with exactly what it served before.
func (p *plane) waitAllServe(d time.Duration, want map[string]string) time.Duration {
	p.t.Helper()
	start := time.Now()
	for _, svc := range p.services {
		host := svc + ".default.localhost"
		p.waitFor(host+" to answer 200", d-time.Since(start), func() bool {
			code, body, err := p.get(host, "/")
			if err != nil || code != http.StatusOK {
				return false
			}
			if want == nil {
				p.served[host] = body
				return true
			}
			if body != want[host] {
				p.t.Fatalf("after the restart %s answers %q, before it answered %q", host, body, want[host])
			}
			return true
		})
	}
	return time.Since(start)
}

// revisionPIDs reads the revision processes serve recorded.
func (p *plane) revisionPIDs() []int {
	p.t.Helper()
	entries, err := os.ReadDir(filepath.Join(p.dataDir, "run"))
	if err != nil {
		p.t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(p.dataDir, "run", e.Name()))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// checkNoRebuildNoPull: the run's log shows no build, no pull and no
// unpack.
func checkNoRebuildNoPull(t *testing.T, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		for _, bad := range []string{"pulling image", "unpacked image", "build started", "fetching the image failed"} {
			if strings.Contains(line, bad) {
				t.Errorf("the restarted serve logged %q: %s", bad, line)
			}
		}
	}
}

func restartScenario(t *testing.T, stop func(p *plane)) {
	p := newPlane(t)
	p.start()
	p.deploy(3)
	before := p.served
	pids := p.revisionPIDs()
	if len(pids) != len(p.services) {
		t.Fatalf("serve recorded %d revision processes, want %d", len(pids), len(p.services))
	}
	// The tag moves to another image: a restart must not follow it.
	p.retaggedDigest = p.pushImage(p.pushedTag, "retagged-image")

	stop(p)
	p.waitFor("every revision process of the stopped serve to end", 15*time.Second, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})

	restarted := time.Now()
	log := p.start()
	took := p.waitAllServe(60*time.Second, before)
	t.Logf("%d services serving again %v after the restart began (%v after its API answered)",
		len(p.services), time.Since(restarted).Round(time.Millisecond), took.Round(time.Millisecond))
	checkNoRebuildNoPull(t, log.String())

	st, err := client.ForServer("http://" + p.api)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range p.services {
		o, err := st.Get(t.Context(), store.KindRevision, "default", svc+"-00001")
		if err != nil {
			t.Fatal(err)
		}
		rev := o.(*v1alpha1.Revision)
		if rev.Status.ImageDigest != p.imageDigestOf[svc] || strings.Contains(rev.Status.ImageDigest, p.retaggedDigest) {
			t.Errorf("%s: imageDigest %q after the restart, want %q", rev.Name, rev.Status.ImageDigest, p.imageDigestOf[svc])
		}
	}
}

// TestRestartAfterKill: kill -9 of serve leaves no revision process
// behind, and the next serve serves everything as before.
func TestRestartAfterKill(t *testing.T) {
	restartScenario(t, func(p *plane) {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	})
}

// TestRestartAfterSIGTERM: SIGTERM drains — requests in flight when it
// arrives all finish with 200 — and serve exits 0; the next serve serves
// everything as before.
func TestRestartAfterSIGTERM(t *testing.T) {
	restartScenario(t, func(p *plane) {
		const inflight = 12
		var wg sync.WaitGroup
		errs := make(chan error, inflight)
		for i := range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				host := p.services[i%len(p.services)] + ".default.localhost"
				code, body, err := p.get(host, "/sleep?ms=1500")
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("status %d: %s", code, body)
				}
				if err != nil {
					errs <- fmt.Errorf("request %d to %s: %w", i, host, err)
				}
			}()
		}
		// SIGTERM once every request is at the router, on its way to its
		// revision (the router counts them in flight).
		testutil.EventuallyEvery(t, 30*time.Second, 20*time.Millisecond, fmt.Sprintf("%d requests in flight at the router", inflight), func() (bool, string) {
			n, err := p.inFlight()
			return n == inflight, fmt.Sprintf("%v in flight (%v)", n, err)
		})
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("a request in flight during the drain failed: %v", err)
		}
		select {
		case <-p.exited:
		case <-time.After(60 * time.Second):
			t.Fatal("serve did not exit within 60s of SIGTERM")
		}
		var ee *exec.ExitError
		if p.exitErr != nil && (!errors.As(p.exitErr, &ee) || ee.ExitCode() != 0) {
			t.Errorf("serve exited with %v after SIGTERM, want 0", p.exitErr)
		}
	})
}

// TestDataDirectorySafety: a second serve on a data directory in use
// refuses at once and says why; --reset needs --yes; --reset --yes starts
// over.
func TestDataDirectorySafety(t *testing.T) {
	p := newPlane(t)
	p.start()
	p.deploy(1)

	second := exec.Command(p.bin, "serve", "--data-dir", p.dataDir, "--api-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	second = exec.CommandContext(ctx, second.Path, second.Args[1:]...)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "held by another elafros serve") || !strings.Contains(string(out), p.dataDir) {
		t.Errorf("a second serve on %s: err %v, output:\n%s\nwant a refusal naming the directory and the other serve", p.dataDir, err, out)
	}
	// The first one is unaffected.
	if code, _, err := p.get(p.services[0]+".default.localhost", "/"); err != nil || code != http.StatusOK {
		t.Errorf("the first serve after the refused second one: %d %v", code, err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	out, err = exec.Command(p.bin, "serve", "--data-dir", p.dataDir, "--reset").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "add --yes to confirm") {
		t.Errorf("--reset without --yes: err %v, output:\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(p.dataDir, "elafros.db")); err != nil {
		t.Errorf("--reset without --yes changed the data directory: %v", err)
	}

	p.start("--reset", "--yes")
	st, err := client.ForServer("http://" + p.api)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(t.Context(), store.KindService, "default", nil)
	if err != nil || len(objs) != 0 {
		t.Errorf("after --reset --yes: %d services (err %v), want none", len(objs), err)
	}
	if _, err := remote.Head(mustRef(t, p.pushedTag)); err == nil {
		t.Errorf("after --reset --yes the registry still has %s", p.pushedTag)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestUpThenServeAfterKill is the issue's own scenario: `elafros up DIR`
// builds an app from its working tree with the go builder and serves it;
// after kill -9, a plain `elafros serve` on the same data directory
// (which has no source to build from) serves the same revision from the
// image cache, without building it again.
func TestUpThenServeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an app with the go builder")
	}
	p := newPlane(t)
	// A directory of its own (not a git repository, which up accepts):
	// examples/hello belongs to this module and its git worktree.
	example := t.TempDir()
	for name, body := range map[string]string{
		"go.mod": "module example.com/hello\n\ngo 1.26\n",
		"main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Hello world!") })
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
`,
		"elafros.yaml": "apiVersion: elafros.dev/v1alpha1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  build:\n    template:\n      name: go\n",
	} {
		if err := os.WriteFile(filepath.Join(example, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := &syncBuffer{}
	up := exec.Command(p.bin, "up", example, "--data-dir", p.dataDir, "--api-addr", p.api, "--http-addr", p.http, "--registry-addr", p.reg)
	up.Stdout, up.Stderr = out, out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = up.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = up.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("elafros up output:\n%s", out.String())
		}
	})
	p.waitFor("elafros up to deploy examples/hello", 10*time.Minute, func() bool {
		select {
		case <-exited:
			t.Fatalf("elafros up exited:\n%s", out.String())
		default:
		}
		return strings.Contains(out.String(), "Deployed to ")
	})
	p.services = []string{"hello"}
	p.served = map[string]string{}
	p.waitAllServe(30*time.Second, nil)
	before := p.served
	if !strings.Contains(before["hello.default.localhost"], "Hello world!") {
		t.Fatalf("examples/hello answered %q", before["hello.default.localhost"])
	}

	if err := up.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	log := p.start()
	p.waitAllServe(60*time.Second, before)
	checkNoRebuildNoPull(t, log.String())
	st, err := client.ForServer("http://" + p.api)
	if err != nil {
		t.Fatal(err)
	}
	o, err := st.Get(t.Context(), store.KindRevision, "default", "hello-00001")
	if err != nil {
		t.Fatal(err)
	}
	if rev := o.(*v1alpha1.Revision); !rev.Status.Conditions.IsTrue(v1alpha1.ConditionBuildComplete) ||
		!rev.Status.Conditions.IsTrue(v1alpha1.ConditionReady) {
		t.Errorf("hello-00001 after the restart: %+v, want BuildComplete and Ready", rev.Status.Conditions)
	}
}

// BenchmarkRestartToServing is the time from starting serve on a data
// directory with N Ready services (after kill -9 of the previous serve)
// until every service answers 200 with the revision it served before:
// bash bench/run.sh restart.
func BenchmarkRestartToServing(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			p := newPlane(b)
			p.start()
			p.deploy(n)
			before := p.served
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				_ = p.cmd.Process.Signal(syscall.SIGKILL)
				<-p.exited
				b.StartTimer()
				p.start()
				p.waitAllServe(time.Duration(60+3*n)*time.Second, before)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/restart")
		})
	}
}
