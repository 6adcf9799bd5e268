package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	etestutil "github.com/elafros/elafros/internal/testutil"
)

const (
	ns     = "default"
	svc    = "svc"
	domain = "svc.default.localhost"
)

// fakeResolver is the process runtime's part: which revision runs where.
type fakeResolver struct {
	mu       sync.RWMutex
	backends map[routeKey]Backend
}

func (f *fakeResolver) Backend(namespace, revision string) (Backend, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.backends[routeKey{namespace, revision}]
	return b, ok
}

func (f *fakeResolver) set(namespace, revision string, b Backend) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.backends == nil {
		f.backends = map[routeKey]Backend{}
	}
	f.backends[routeKey{namespace, revision}] = b
}

// env is a router with a fake resolver and real backends.
type env struct {
	t   testing.TB
	rt  *Router
	res *fakeResolver
}

func newEnv(t testing.TB, opts ...Option) *env {
	res := &fakeResolver{}
	rt := New(res, opts...)
	t.Cleanup(rt.Close)
	return &env{t: t, rt: rt, res: res}
}

// echo answers with the revision's name and what it saw of the request.
func echo(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Seen-Forwarded-Host", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("Seen-Host", r.Host)
		w.Header().Set("Seen-Target", r.Header.Get(TargetHeader))
		// A process naming itself must not confuse which revision served.
		w.Header().Set(RevisionHeader, "from-the-process")
		_, _ = io.WriteString(w, name)
	}
}

// serve starts a process for revision with handler h (echo by default).
func (e *env) serve(revision string, h http.Handler, b Backend) *httptest.Server {
	if h == nil {
		h = echo(revision)
	}
	srv := httptest.NewServer(h)
	e.t.Cleanup(srv.Close)
	b.Addr = srv.Listener.Addr().String()
	e.res.set(ns, revision, b)
	return srv
}

func (e *env) apply(plan reconcile.TrafficPlan) {
	e.t.Helper()
	if err := e.rt.Apply(context.Background(), route(ns, svc), plan); err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
}

func route(namespace, name string) *v1alpha1.Route {
	return &v1alpha1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

func split(pairs ...any) []reconcile.Backend {
	var out []reconcile.Backend
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, reconcile.Backend{Revision: pairs[i].(string), Percent: pairs[i+1].(int), Ready: true})
	}
	return out
}

// get sends one request for host through the router.
func (e *env) get(host string, header http.Header, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "http://"+host+"/path?q=1", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	w := httptest.NewRecorder()
	e.rt.ServeHTTP(w, req)
	return w
}

// countSplit sends n requests to the main host and counts who answered.
func (e *env) countSplit(n int) map[string]int {
	e.t.Helper()
	got := map[string]int{}
	for range n {
		w := e.get(domain, nil)
		if w.Code != http.StatusOK {
			e.t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if rev := w.Header().Get(RevisionHeader); rev != w.Body.String() {
			e.t.Fatalf("%s = %q, but %q answered", RevisionHeader, rev, w.Body)
		}
		got[w.Body.String()]++
	}
	return got
}

// waitFor polls cond until it holds, failing the test if it does not
// within 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	etestutil.EventuallyEvery(t, 10*time.Second, time.Millisecond, what, func() (bool, string) { return cond(), "it does not hold" })
}

// TestSplitExact: the split is exact over whole rounds of 100 requests,
// end to end through the proxy.
func TestSplitExact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		split []reconcile.Backend
		n     int
		want  map[string]int
	}{
		{"75/25", split("a", 75, "b", 25), 4000, map[string]int{"a": 3000, "b": 1000}},
		{"50/30/20", split("a", 50, "b", 30, "c", 20), 1000, map[string]int{"a": 500, "b": 300, "c": 200}},
		{"0% entry is never picked", split("a", 100, "b", 0), 300, map[string]int{"a": 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			for _, b := range tc.split {
				e.serve(b.Revision, nil, Backend{})
			}
			e.apply(reconcile.TrafficPlan{Domain: domain, Split: tc.split})
			if diff := cmp.Diff(tc.want, e.countSplit(tc.n)); diff != "" {
				t.Errorf("requests per revision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostMatching(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{
		Domain: domain,
		Split:  split("a", 100),
		Hosts:  map[string]reconcile.NamedTarget{"next.svc.default.localhost": {Tag: "next", Revision: "b"}},
		Tags:   map[string]string{"next": "b"},
	})
	for _, tc := range []struct {
		name     string
		host     string
		target   string
		wantCode int
		wantBody string // the answering revision, or part of the error
	}{
		{"main host", domain, "", 200, "a"},
		{"main host with port, any case", "SVC.Default.LocalHost:8080", "", 200, "a"},
		{"main host, fully qualified", domain + ".", "", 200, "a"},
		{"named host at 0%", "next.svc.default.localhost", "", 200, "b"},
		{"named host with port", "next.svc.default.localhost:80", "", 200, "b"},
		{"unknown host", "other.default.localhost", "", 404, `no route serves host "other.default.localhost"`},
		{"target header", domain, "next", 200, "b"},
		{"unknown target", domain, "prev", 404, `has no target named "prev" (Elafros-Target it accepts: next)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tc.target != "" {
				h.Set(TargetHeader, tc.target)
			}
			w := e.get(tc.host, h)
			if w.Code != tc.wantCode || !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", w.Code, w.Body, tc.wantCode, tc.wantBody)
			}
			if w.Code != http.StatusOK {
				return
			}
			got := map[string]any{
				RevisionHeader:        w.Header().Values(RevisionHeader),
				"Seen-Forwarded-Host": w.Header().Get("Seen-Forwarded-Host"),
				"Seen-Host":           w.Header().Get("Seen-Host"),
				"Seen-Target":         w.Header().Get("Seen-Target"),
			}
			want := map[string]any{
				RevisionHeader:        []string{tc.wantBody},
				"Seen-Forwarded-Host": tc.host,
				"Seen-Host":           tc.host,
				"Seen-Target":         "", // removed before proxying
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestForget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100), Hosts: map[string]reconcile.NamedTarget{"cur.svc.default.localhost": {Tag: "cur", Revision: "a"}}})
	if w := e.get(domain, nil); w.Code != http.StatusOK {
		t.Fatalf("before Forget: %d %s", w.Code, w.Body)
	}
	for range 2 { // idempotent
		if err := e.rt.Forget(context.Background(), ns, svc); err != nil {
			t.Fatalf("Forget: %v", err)
		}
	}
	for _, host := range []string{domain, "cur.svc.default.localhost"} {
		if w := e.get(host, nil); w.Code != http.StatusNotFound {
			t.Errorf("%s after Forget: %d %s, want 404", host, w.Code, w.Body)
		}
	}
	if got := e.rt.Routes(); len(got) != 0 {
		t.Errorf("Routes() = %v after Forget", got)
	}
	// The domain is free for another route now.
	if err := e.rt.Apply(context.Background(), route(ns, "other"), reconcile.TrafficPlan{Domain: domain}); err != nil {
		t.Errorf("Apply of another route on the forgotten domain: %v", err)
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plan := reconcile.TrafficPlan{Domain: domain, Split: split("a", 75, "b", 25), Tags: map[string]string{"x": "a"}}
	e.apply(plan)
	first := e.rt.snap.Load().routes[routeKey{ns, svc}]

	// Re-applying the same plan (a fresh copy, as each reconcile makes)
	// keeps the table, and so the round-robin state.
	same := reconcile.TrafficPlan{Domain: domain, Split: split("a", 75, "b", 25), Tags: map[string]string{"x": "a"}}
	e.apply(same)
	if got := e.rt.snap.Load().routes[routeKey{ns, svc}]; got != first {
		t.Error("re-applying the same plan replaced the table")
	}
	// The router keeps its own copy: the caller may reuse its plan.
	plan.Split[0].Percent = 10
	if first.split[0].weight != 75 {
		t.Error("the table shares the caller's split")
	}

	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 50, "b", 50)})
	if got := e.rt.snap.Load().routes[routeKey{ns, svc}]; got == first {
		t.Error("a new plan kept the old table")
	}

	for _, tc := range []struct {
		name  string
		route *v1alpha1.Route
		plan  reconcile.TrafficPlan
		want  string
		is    error
	}{
		{"nil route", nil, reconcile.TrafficPlan{}, "route is nil", nil},
		{"domain of another route", route(ns, "other"), reconcile.TrafficPlan{Domain: "SVC.default.localhost"},
			`router: apply route default/other: host "svc.default.localhost": host is already served by another route (default/svc)`, ErrHostConflict},
		{"named host is the domain", route(ns, "other"), reconcile.TrafficPlan{Domain: "o.localhost", Hosts: map[string]reconcile.NamedTarget{"o.localhost": {Tag: "o", Revision: "a"}}},
			"is also the route's domain", nil},
		{"empty named host", route(ns, "other"), reconcile.TrafficPlan{Hosts: map[string]reconcile.NamedTarget{"": {Tag: "x", Revision: "a"}}}, "must be non-empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.rt.Apply(context.Background(), tc.route, tc.plan)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Apply = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if diff := cmp.Diff([]string{"default/svc"}, e.rt.Routes()); diff != "" {
		t.Errorf("a failed Apply changed the routes (-want +got):\n%s", diff)
	}
}

// TestNotReady: a pinned revision that lost readiness keeps its share,
// and only its share fails.
func TestNotReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: []reconcile.Backend{
		{Revision: "a", Percent: 75, Ready: true},
		{Revision: "b", Percent: 25, Ready: false},
	}})
	got := map[string]int{}
	for range 400 {
		w := e.get(domain, nil)
		switch w.Code {
		case http.StatusOK:
			got[w.Body.String()]++
		case http.StatusServiceUnavailable:
			if !strings.Contains(w.Body.String(), "revision b of route default/svc is not ready") {
				t.Fatalf("503 body %q", w.Body)
			}
			got["503 "+w.Header().Get(RevisionHeader)]++
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	if diff := cmp.Diff(map[string]int{"a": 300, "503 b": 100}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	_ = l.Close()

	for _, tc := range []struct {
		name     string
		split    []reconcile.Backend
		wantCode int
		wantBody string
	}{
		{"empty split", nil, 503, "no revision is ready to serve this route yet"},
		{"no process", split("unknown", 100), 503, "revision unknown has no running process yet"},
		{"connection refused", split("gone", 100), 502, "revision gone at " + gone + " did not answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.res.set(ns, "gone", Backend{Addr: gone})
			e.apply(reconcile.TrafficPlan{Domain: domain, Split: tc.split})
			w := e.get(domain, nil)
			if w.Code != tc.wantCode || !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", w.Code, w.Body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestSticky(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithSticky(true))
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 50, "b", 50)})

	w := e.get(domain, nil)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("first response set cookies %v, want one", cookies)
	}
	ck := cookies[0]
	want := &http.Cookie{Name: "elafros-default-svc", Value: w.Body.String(), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Raw: ck.Raw}
	if diff := cmp.Diff(want, ck); diff != "" {
		t.Fatalf("cookie (-want +got):\n%s", diff)
	}
	stuck := ck.Value

	sticky, other := map[string]int{}, map[string]int{}
	for range 200 {
		w := e.get(domain, nil, &http.Cookie{Name: ck.Name, Value: ck.Value})
		sticky[w.Body.String()]++
		if c := w.Result().Cookies(); len(c) != 0 {
			t.Fatalf("a sticky client was given cookies %v", c)
		}
		other[e.get(domain, nil).Body.String()]++
	}
	if diff := cmp.Diff(map[string]int{stuck: 200}, sticky); diff != "" {
		t.Errorf("sticky client (-want +got):\n%s", diff)
	}
	// Sticky picks do not advance the round-robin: the other client sees
	// the exact split.
	if diff := cmp.Diff(map[string]int{"a": 100, "b": 100}, other); diff != "" {
		t.Errorf("cookie-less client (-want +got):\n%s", diff)
	}

	// The sticky client's revision leaves the split: it moves, and its
	// cookie with it.
	moved := map[string]string{"a": "b", "b": "a"}[stuck]
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split(moved, 100)})
	w = e.get(domain, nil, &http.Cookie{Name: ck.Name, Value: ck.Value})
	if w.Body.String() != moved {
		t.Errorf("after %s left the split, the sticky client got %q", stuck, w.Body)
	}
	if c := w.Result().Cookies(); len(c) != 1 || c[0].Value != moved {
		t.Errorf("after %s left the split, cookies %v, want one for %s", stuck, c, moved)
	}
}

func TestNotSticky(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 50, "b", 50)})
	ck := &http.Cookie{Name: "elafros-default-svc", Value: "a"}
	got := map[string]int{}
	for range 10 {
		w := e.get(domain, nil, ck)
		if c := w.Result().Cookies(); len(c) != 0 {
			t.Fatalf("cookies %v without WithSticky", c)
		}
		got[w.Body.String()]++
	}
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, got); diff != "" {
		t.Errorf("a cookie is ignored without WithSticky (-want +got):\n%s", diff)
	}
}

func TestSingleThreaded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var cur, maxSeen atomic.Int64
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := cur.Add(1)
		for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
		}
		time.Sleep(50 * time.Microsecond) // widen the window a second request would hit
		cur.Add(-1)
		_, _ = io.WriteString(w, "a")
	}), Backend{SingleThreaded: true})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	srv := httptest.NewServer(e.rt)
	t.Cleanup(srv.Close)

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 10 {
				code, _, err := send(srv.Client(), srv.URL, domain)
				if err == nil && code == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
					t.Errorf("%d %v", code, err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 200 || maxSeen.Load() != 1 {
		t.Errorf("%d succeeded (want 200), %d failed; the process saw at most %d at once (want 1)", ok.Load(), failed.Load(), maxSeen.Load())
	}
	waitFor(t, "the gate to be dropped", func() bool {
		e.rt.gates.mu.Lock()
		defer e.rt.gates.mu.Unlock()
		return len(e.rt.gates.m) == 0
	})
}

// blocked is a process that holds every request until released.
type blocked struct {
	entered chan string
	release chan struct{}
}

func newBlocked() *blocked {
	return &blocked{entered: make(chan string, 100), release: make(chan struct{})}
}

func (b *blocked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.entered <- r.URL.Query().Get("n")
	<-b.release
	_, _ = io.WriteString(w, "done")
}

func TestQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithQueueLimit(2))
	b := newBlocked()
	srv := e.serve("a", b, Backend{SingleThreaded: true})
	defer srv.Close()
	defer close(b.release)
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	key := routeKey{ns, "a"}

	type result struct {
		n    string
		code int
	}
	results := make(chan result, 10)
	start := func(ctx context.Context, n string) {
		go func() {
			req := httptest.NewRequest(http.MethodGet, "http://"+domain+"/?n="+n, nil).WithContext(ctx)
			w := httptest.NewRecorder()
			e.rt.ServeHTTP(w, req)
			results <- result{n, w.Code}
		}()
	}
	start(context.Background(), "1")
	if got := <-b.entered; got != "1" {
		t.Fatalf("request %s reached the process first", got)
	}
	start(context.Background(), "2")
	waitFor(t, "request 2 to queue", func() bool { return e.rt.gates.queued(key) == 1 })
	// A waiting client that goes away leaves the queue.
	ctx, cancel := context.WithCancel(context.Background())
	start(ctx, "gone")
	waitFor(t, "request gone to queue", func() bool { return e.rt.gates.queued(key) == 2 })
	cancel()
	if r := <-results; r != (result{"gone", statusClientClosed}) {
		t.Fatalf("got %v, want the cancelled request to end with %d", r, statusClientClosed)
	}
	waitFor(t, "request gone to leave the queue", func() bool { return e.rt.gates.queued(key) == 1 })
	start(context.Background(), "3")
	waitFor(t, "request 3 to queue", func() bool { return e.rt.gates.queued(key) == 2 })

	// One in flight, two waiting: the fourth is turned away.
	w := e.get(domain, nil)
	if want := "revision a is single-threaded and its queue is full"; w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), want) {
		t.Errorf("4th request: %d %q, want 503 containing %q", w.Code, w.Body, want)
	}

	// Released, the others are served in order, one at a time.
	var order []string
	for i := range 3 {
		b.release <- struct{}{}
		if i < 2 {
			order = append(order, <-b.entered)
		}
		if r := <-results; r.code != http.StatusOK {
			t.Errorf("request %s: %d", r.n, r.code)
		}
	}
	if diff := cmp.Diff([]string{"2", "3"}, order); diff != "" {
		t.Errorf("queue order (-want +got):\n%s", diff)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	// The outcome hangs on events, not on timing: the slow process never
	// answers (only the router's timeout ends its request), and the fast
	// one has a timeout no loaded machine comes near.
	for _, tc := range []struct {
		name     string
		slow     bool
		timeout  time.Duration
		wantCode int
	}{
		{"slow process", true, 50 * time.Millisecond, http.StatusGatewayTimeout},
		{"fast process", false, time.Minute, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cancelled := make(chan struct{}, 1)
			e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.slow {
					<-r.Context().Done() // slower than any timeout
					cancelled <- struct{}{}
					return
				}
				_, _ = io.WriteString(w, "a")
			}), Backend{Timeout: tc.timeout})
			e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
			w := e.get(domain, nil)
			if w.Code != tc.wantCode {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body, tc.wantCode)
			}
			if !tc.slow {
				return
			}
			if want := "revision a did not answer within its timeout of 50ms"; !strings.Contains(w.Body.String(), want) {
				t.Errorf("body %q, want it to contain %q", w.Body, want)
			}
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Error("the process's request was not cancelled")
			}
		})
	}
}

// TestTimeoutWhileQueued: waiting for a single-threaded revision counts
// against the timeout.
func TestTimeoutWhileQueued(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBlocked()
	srv := e.serve("a", b, Backend{SingleThreaded: true})
	defer srv.Close()
	defer close(b.release)
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})

	first := make(chan int, 1)
	go func() { first <- e.get(domain, nil).Code }()
	<-b.entered
	// From now on the revision has a timeout; the first request had none.
	e.res.set(ns, "a", Backend{Addr: srv.Listener.Addr().String(), SingleThreaded: true, Timeout: 20 * time.Millisecond})
	w := e.get(domain, nil)
	if w.Code != http.StatusGatewayTimeout || !strings.Contains(w.Body.String(), "timeout of 20ms") {
		t.Errorf("queued request: %d %q, want 504 naming the timeout", w.Code, w.Body)
	}
	if q := e.rt.gates.queued(routeKey{ns, "a"}); q != 0 {
		t.Errorf("%d still queued", q)
	}
	b.release <- struct{}{}
	if code := <-first; code != http.StatusOK {
		t.Errorf("first request: %d", code)
	}
	select {
	case n := <-b.entered:
		t.Errorf("the timed-out request %q reached the process", n)
	default:
	}
}

// send makes one request to the router at url for host and drains it.
func send(c *http.Client, url, host string) (code int, body string, err error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestHitless: shifting traffic back and forth under load fails no
// request.
func TestHitless(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	plans := []reconcile.TrafficPlan{
		{Domain: domain, Split: split("a", 100)},
		{Domain: domain, Split: split("a", 95, "b", 5)},
		{Domain: domain, Split: split("a", 50, "b", 50)},
		{Domain: domain, Split: split("b", 100), Hosts: map[string]reconcile.NamedTarget{"prev.svc.default.localhost": {Tag: "prev", Revision: "a"}}},
		{Domain: domain, Split: split("a", 100)}, // abort
	}
	e.apply(plans[0])
	srv := httptest.NewServer(e.rt)
	t.Cleanup(srv.Close)

	const clients, perClient = 4, 5000
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	// Clients nudge the mover after each request, so that plans change
	// all through the load without the mover spinning.
	nudge := make(chan struct{}, 1)
	stop := make(chan struct{})
	var applies atomic.Int64
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-nudge:
			}
			if err := e.rt.Apply(context.Background(), route(ns, svc), plans[i%len(plans)]); err != nil {
				t.Errorf("Apply: %v", err)
				return
			}
			applies.Add(1)
		}
	}()

	var mu sync.Mutex
	served := map[string]int{}
	var bad, errs atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			mine := map[string]int{}
			for range perClient {
				code, body, err := send(client, srv.URL, domain)
				select {
				case nudge <- struct{}{}:
				default:
				}
				switch {
				case err != nil:
					if errs.Add(1) <= 5 {
						t.Errorf("client error: %v", err)
					}
				case code/100 != 2:
					if bad.Add(1) <= 5 {
						t.Errorf("status %d: %s", code, body)
					}
				default:
					mine[body]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range mine {
				served[k] += v
			}
		})
	}
	wg.Wait()
	close(stop)
	<-moved
	t.Logf("%d requests (a: %d, b: %d) across %d plan changes: %d non-2xx, %d client errors",
		clients*perClient, served["a"], served["b"], applies.Load(), bad.Load(), errs.Load())
	if bad.Load() != 0 || errs.Load() != 0 {
		t.Errorf("%d non-2xx, %d client errors; want none", bad.Load(), errs.Load())
	}
	if served["a"] == 0 || served["b"] == 0 {
		t.Errorf("served %v; want both revisions to have served", served)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: []reconcile.Backend{
		{Revision: "a", Percent: 50, Ready: true},
		{Revision: "b", Percent: 50, Ready: false},
	}})
	for range 6 {
		e.get(domain, nil)
	}
	e.get("nowhere.localhost", nil)

	m := e.rt.metrics
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{ns, svc, "a", "200"}, 3},
		{[]string{ns, svc, "b", "503"}, 3},
		{[]string{"", "", "", "404"}, 1},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("%s%v = %v, want %v", MetricRequests, tc.labels, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.requests, MetricRequests); n != 3 {
		t.Errorf("%d request series, want 3", n)
	}
	if n := testutil.CollectAndCount(m.duration, MetricDuration); n != 3 {
		t.Errorf("%d duration series, want 3", n)
	}
	if got := testutil.ToFloat64(m.inFlight.WithLabelValues(ns, svc, "a")); got != 0 {
		t.Errorf("%s = %v after all requests ended", MetricInFlight, got)
	}

	w := httptest.NewRecorder()
	e.rt.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	want := `elafros_router_requests_total{code="200",namespace="default",revision="a",route="svc"} 3`
	if !strings.Contains(w.Body.String(), want) {
		t.Errorf("MetricsHandler does not serve %s:\n%s", want, w.Body)
	}
}

func TestWithRegisterer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	// Two routers may share a registry.
	e1, e2 := newEnv(t, WithRegisterer(reg)), newEnv(t, WithRegisterer(reg))
	if e1.rt.Registry() != nil {
		t.Error("Registry() is not nil with WithRegisterer")
	}
	e1.get("x.localhost", nil)
	e2.get("x.localhost", nil)
	if got := testutil.ToFloat64(e1.rt.metrics.requests.WithLabelValues("", "", "", "404")); got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, MetricRequests, MetricDuration); err != nil || n != 2 {
		t.Errorf("GatherAndCount = %d, %v; want 2 series", n, err)
	}

	e3 := newEnv(t, WithRegisterer(prometheus.NewPedanticRegistry()))
	w := httptest.NewRecorder()
	e3.rt.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Errorf("MetricsHandler over a Gatherer registerer: %d", w.Code)
	}
}

func BenchmarkRouter(b *testing.B) {
	e := newEnv(b)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 75, "b", 25)})
	srv := httptest.NewServer(e.rt)
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if code, body, err := send(client, srv.URL, domain); err != nil || code != http.StatusOK {
				b.Errorf("%d %q %v", code, body, err)
				return
			}
		}
	})
}

// BenchmarkServeHTTP measures the router alone: no client connection,
// only the proxy hop.
func BenchmarkServeHTTP(b *testing.B) {
	e := newEnv(b)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 75, "b", 25)})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://"+domain+"/", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			e.rt.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("%d %s", w.Code, w.Body)
				return
			}
		}
	})
}
