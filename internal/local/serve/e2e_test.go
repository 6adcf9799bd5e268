package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

type env struct {
	t     *testing.T
	srv   *serve.Server
	c     *deploy.Client
	st    store.Store
	image string
	http  *http.Client
}

// start runs the whole control plane on free loopback ports, and pushes
// the test server's image to its registry.
func start(t *testing.T) *env {
	t.Helper()
	srv, err := serve.Start(context.Background(), serve.Options{
		DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	st, err := client.ForServer(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, srv: srv, c: deploy.New(st, "default"), st: st,
		image: processtest.BuildImage(t, srv.RegistryAddr, "e2e/server", processtest.ServerDir()),
		http:  &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// configuration creates (or changes) a configuration and returns the name
// of the revision it makes.
func (e *env) configuration(name, message string, mutate func(*v1alpha1.RevisionSpec)) string {
	e.t.Helper()
	ctx := e.t.Context()
	var w store.Object
	for attempt := 0; ; attempt++ { // the reconciler writes status too: retry on conflict, as clients do
		cfg := &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
		o, err := e.st.Get(ctx, store.KindConfiguration, "default", name)
		if err == nil {
			cfg = o.(*v1alpha1.Configuration).DeepCopy()
		}
		spec := &cfg.Spec.RevisionTemplate.Spec
		spec.Container.Image = e.image
		spec.Container.Env = []corev1.EnvVar{{Name: "MESSAGE", Value: message}}
		if mutate != nil {
			mutate(spec)
		}
		cfg.SetDefaults()
		if err == nil {
			w, err = e.st.Update(ctx, cfg)
		} else {
			w, err = e.st.Create(ctx, cfg)
		}
		if apierrors.IsConflict(err) && attempt < 10 {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		break
	}
	rev := reconcile.RevisionName(name, w.GetGeneration())
	e.waitFor("revision "+rev+" Ready", 60*time.Second, func() bool {
		o, err := e.st.Get(ctx, store.KindRevision, "default", rev)
		return err == nil && o.(*v1alpha1.Revision).Status.Conditions.IsTrue(v1alpha1.ConditionReady)
	})
	return rev
}

// route sets a route's traffic and waits until the router serves it.
func (e *env) route(name string, traffic []v1alpha1.TrafficTarget) {
	e.t.Helper()
	ctx := e.t.Context()
	for attempt := 0; ; attempt++ {
		o, err := e.st.Get(ctx, store.KindRoute, "default", name)
		if err != nil {
			_, err = e.st.Create(ctx, &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
				Spec: v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: traffic}}})
		} else {
			rt := o.(*v1alpha1.Route).DeepCopy()
			rt.Spec.Rollout.Traffic = traffic
			_, err = e.st.Update(ctx, rt)
		}
		if apierrors.IsConflict(err) && attempt < 10 {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		break
	}
	e.waitServed(name)
}

// waitServed waits until the route's status is its spec, complete.
func (e *env) waitServed(name string) {
	e.t.Helper()
	e.waitFor("route "+name+" to serve its spec", 30*time.Second, func() bool {
		o, err := e.st.Get(e.t.Context(), store.KindRoute, "default", name)
		if err != nil {
			return false
		}
		rt := o.(*v1alpha1.Route)
		if !rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete) || rt.Status.ObservedGeneration != rt.Generation {
			return false
		}
		return fmt.Sprint(rt.Status.Traffic) == fmt.Sprint(rt.Spec.Rollout.Traffic)
	})
}

func (e *env) waitFor(what string, d time.Duration, ok func() bool) {
	e.t.Helper()
	testutil.Eventually(e.t, d, what, func() (bool, string) { return ok(), "" })
}

// get sends a request through the router with the given Host.
func (e *env) get(host, path string, hdr ...string) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+e.srv.HTTPAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func tt(name, rev string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}
}

func TestSplitAndNamedHosts(t *testing.T) {
	e := start(t)
	r1 := e.configuration("app", "one", nil)
	r2 := e.configuration("app", "two", nil)
	e.route("app", []v1alpha1.TrafficTarget{tt("current", r1, 75), tt("next", r2, 25)})

	counts := map[string]int{}
	for range 4000 {
		code, body, err := e.get("app.default.localhost", "/")
		if err != nil || code != 200 {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
		counts[strings.Fields(body)[0]]++
	}
	t.Logf("4,000 requests at 75/25: %s=%d %s=%d", r1, counts[r1], r2, counts[r2])
	if d := counts[r1] - 3000; d < -80 || d > 80 {
		t.Errorf("%s got %d of 4000, want 3000±80 (75%%±2%%)", r1, counts[r1])
	}
	if counts[r1]+counts[r2] != 4000 {
		t.Errorf("counts %v", counts)
	}

	e.route("app", []v1alpha1.TrafficTarget{tt("current", r1, 100), tt("next", r2, 0)})
	for host, want := range map[string]string{"current.app.default.localhost": r1 + " one", "next.app.default.localhost": r2 + " two"} {
		if code, body, err := e.get(host, "/"); err != nil || code != 200 || strings.TrimSpace(body) != want {
			t.Errorf("GET %s = %d %q %v, want %q", host, code, body, err, want)
		}
	}
	if code, body, _ := e.get("app.default.localhost:8080", "/", "Elafros-Target", "next"); code != 200 || !strings.HasPrefix(body, r2) {
		t.Errorf("Elafros-Target: next = %d %q", code, body)
	}
	if code, _, _ := e.get("nothing.default.localhost", "/"); code != 404 {
		t.Errorf("unknown host = %d, want 404", code)
	}
	res, err := e.http.Get(e.srv.APIURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `elafros_router_requests_total{code="200",namespace="default",revision="`+r1+`",route="app"}`) {
		t.Errorf("metrics lack the per-revision request counter:\n%.2000s", b)
	}
	logs, err := e.st.(*client.Store).Logs(t.Context(), "default", r1)
	if err != nil || !strings.Contains(string(logs), "--- started") {
		t.Errorf("logs of %s: %q %v", r1, logs, err)
	}
}

func TestSingleThreadedAndTimeout(t *testing.T) {
	e := start(t)
	fn := e.configuration("fn", "fn", func(s *v1alpha1.RevisionSpec) { s.ConcurrencyModel = v1alpha1.ConcurrencySingleThreaded })
	// 3 s: room for a fast request on a loaded machine under -race.
	slow := e.configuration("slow", "slow", func(s *v1alpha1.RevisionSpec) { three := int64(3); s.TimeoutSeconds = &three })
	e.route("fn", []v1alpha1.TrafficTarget{tt("", fn, 100)})
	e.route("slow", []v1alpha1.TrafficTarget{tt("", slow, 100)})

	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if code, _, err := e.get("fn.default.localhost", "/sleep?ms=5"); err != nil || code != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	_, body, err := e.get("fn.default.localhost", "/concurrency")
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Max int }
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	t.Logf("SingleThreaded under 20 concurrent clients: 100 requests, %d failed, the revision saw at most %d at once", failures.Load(), c.Max)
	if c.Max != 1 || failures.Load() != 0 {
		t.Errorf("max concurrent = %d, failures = %d; want 1 and 0", c.Max, failures.Load())
	}
	if code, body, _ := e.get("slow.default.localhost", "/sleep?ms=6000"); code != http.StatusGatewayTimeout {
		t.Errorf("a request slower than timeoutSeconds = %d %q, want 504", code, body)
	}
	if code, _, _ := e.get("slow.default.localhost", "/sleep?ms=10"); code != 200 {
		t.Errorf("a fast request = %d, want 200", code)
	}
}

// TestHitlessRollout sends at least 20,000 requests through the router
// while one revision goes 0 -> 5 -> 50 -> 100% and another is staged,
// ramped and aborted back: no request may fail.
func TestHitlessRollout(t *testing.T) {
	e := start(t)
	r1 := e.configuration("roll", "a", nil)
	r2 := e.configuration("roll", "b", nil)
	r3 := e.configuration("roll", "c", nil)
	e.route("roll", []v1alpha1.TrafficTarget{tt("current", r1, 100), tt("next", r2, 0)})

	const target = 20000
	var sent, non2xx, errs atomic.Int64
	seen := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := e.get("roll.default.localhost", "/")
				sent.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case code/100 != 2:
					non2xx.Add(1)
				default:
					seen.Store(strings.Fields(body)[0], true)
				}
			}
		}()
	}
	move := func(op deploy.Op) {
		t.Helper()
		if _, err := e.c.Rollout(t.Context(), "roll", op); err != nil {
			t.Fatal(err)
		}
		e.waitServed("roll")
		// Some load runs on each split: 50 requests answered after it
		// was served.
		n := sent.Load() + 50
		testutil.Eventually(t, 30*time.Second, "50 requests on the new split", func() (bool, string) {
			return sent.Load() >= n, fmt.Sprintf("%d of %d sent", sent.Load(), n)
		})
	}
	stage := func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		return rollout.Stage(t, rollout.Next, r3, ready)
	}
	for sent.Load() < target {
		move(deploy.SetNext(5))
		move(deploy.SetNext(50))
		move(deploy.SetNext(100))
		move(deploy.Finish) // r2 is current
		move(stage)         // r3 is next at 0%
		move(deploy.SetNext(5))
		move(deploy.SetNext(50))
		move(deploy.Abort) // back to r2
		// back to the start: r1 current, r2 next, for another lap
		move(func(tr rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
			return rollout.Traffic{tt("current", r1, 100), tt("next", r2, 0)}, nil
		})
	}
	close(stop)
	wg.Wait()
	var revs []string
	seen.Range(func(k, _ any) bool { revs = append(revs, k.(string)); return true })
	t.Logf("hitless rollout: %d requests, %d non-2xx, %d connection errors; revisions answering: %v", sent.Load(), non2xx.Load(), errs.Load(), revs)
	if non2xx.Load() != 0 || errs.Load() != 0 {
		t.Errorf("%d non-2xx and %d errors during the rollout, want none", non2xx.Load(), errs.Load())
	}
	if len(revs) != 3 {
		t.Errorf("revisions answering = %v, want all three", revs)
	}
}
