package router

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/elafros/elafros/internal/reconcile"
)

// rawClient is an HTTP client whose connections go to the raw server at
// addr.
func rawClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// rawModes are the raw server's two ways of holding a connection: in an
// event loop (evloop_linux.go; elsewhere the goroutine) and in a
// goroutine of its own.
var rawModes = []struct {
	name  string
	loops int
}{{"event loop", 0}, {"goroutines", -1}}

// forModes runs test once per mode.
func forModes(t *testing.T, test func(t *testing.T, loops int)) {
	t.Parallel()
	for _, m := range rawModes {
		t.Run(m.name, func(t *testing.T) { test(t, m.loops) })
	}
}

// TestRawServerSplitExact: requests the raw loop serves and requests it
// hands to net/http with the revision already chosen (a single-threaded
// revision's gate) advance the round-robin once each: the split stays
// exact, and the single-threaded process never sees two at once.
func TestRawServerSplitExact(t *testing.T) { forModes(t, testRawServerSplitExact) }

func testRawServerSplitExact(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t)
	var cur, maxSeen atomic.Int64
	e.serve("a", nil, Backend{})
	e.serve("st", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := cur.Add(1)
		for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
		}
		time.Sleep(50 * time.Microsecond)
		cur.Add(-1)
		_, _ = io.WriteString(w, "st")
	}), Backend{SingleThreaded: true})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 75, "st", 25)})
	url := "http://" + serveRawLoops(t, e.rt, loops) + "/"
	client := rawClient(t)

	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				code, body, err := send(client, url, domain)
				if err != nil || code != http.StatusOK {
					t.Errorf("%d %q %v", code, body, err)
					return
				}
				mu.Lock()
				got[body]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if diff := cmp.Diff(map[string]int{"a": 300, "st": 100}, got); diff != "" {
		t.Errorf("requests per revision (-want +got):\n%s", diff)
	}
	if maxSeen.Load() != 1 {
		t.Errorf("the single-threaded process saw %d requests at once", maxSeen.Load())
	}
}

// TestRawServerSticky: the raw loop gives and honours the sticky cookie
// as ServeHTTP does.
func TestRawServerSticky(t *testing.T) { forModes(t, testRawServerSticky) }

func testRawServerSticky(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t, WithSticky(true))
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 50, "b", 50)})
	addr := serveRawLoops(t, e.rt, loops)
	ex := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: "+domain+"\r\n\r\n", "GET")
	ck := (&http.Response{Header: ex.Header}).Cookies()
	if len(ck) != 1 || ck[0].Name != "elafros-default-svc" || ck[0].Value != ex.Body || !ck[0].HttpOnly || ck[0].Path != "/" {
		t.Fatalf("first answer %q set cookies %v, want one keeping the client on it", ex.Body, ck)
	}
	for range 10 {
		ex := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: "+domain+"\r\nCookie: other=1; "+ck[0].Name+"="+ck[0].Value+"\r\n\r\n", "GET")
		if ex.Body != ck[0].Value || ex.Header.Get("Set-Cookie") != "" {
			t.Fatalf("a sticky client got %q with Set-Cookie %q, want %q and no cookie", ex.Body, ex.Header.Get("Set-Cookie"), ck[0].Value)
		}
	}
}

// TestRawServerClientGone: a client that goes away while the process
// works ends the process's request, whether it left before the answer
// began or in the middle of it; the first is recorded as 499.
func TestRawServerClientGone(t *testing.T) { forModes(t, testRawServerClientGone) }

func testRawServerClientGone(t *testing.T, loops int) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		midway   bool
		want499  float64
		readUpTo string
	}{
		{"before the answer", false, 1, ""},
		{"in the middle of the answer", true, 0, "first\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			entered, ended := make(chan struct{}), make(chan struct{})
			e := newEnv(t)
			e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.midway {
					_, _ = io.WriteString(w, "first\n")
					w.(http.Flusher).Flush()
				}
				close(entered)
				<-r.Context().Done()
				close(ended)
			}), Backend{})
			e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
			conn, err := net.Dial("tcp", serveRawLoops(t, e.rt, loops))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+domain+"\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			<-entered
			if tc.readUpTo != "" {
				br := bufio.NewReader(conn)
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				line, err := bufio.NewReader(res.Body).ReadString('\n')
				if err != nil || line != tc.readUpTo {
					t.Fatalf("read %q, %v; want %q", line, err, tc.readUpTo)
				}
			}
			_ = conn.Close()
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the process's request did not end when the client went away")
			}
			waitFor(t, "the request to be recorded", func() bool {
				return testutil.ToFloat64(e.rt.metrics.inFlight.WithLabelValues(ns, svc, "a")) == 0
			})
			if got := testutil.ToFloat64(e.rt.metrics.requests.WithLabelValues(ns, svc, "a", "499")); got != tc.want499 {
				t.Errorf("%s{code=499} = %v, want %v", MetricRequests, got, tc.want499)
			}
		})
	}
}

// TestRawServerUpstreamDies: a process that dies in the middle of an
// answer gives the client the same cut answer through the raw server as
// through net/http, and the router's connection to it is not reused.
func TestRawServerUpstreamDies(t *testing.T) { forModes(t, testRawServerUpstreamDies) }

func testRawServerUpstreamDies(t *testing.T, loops int) {
	t.Parallel()
	for _, tc := range []struct{ name, answer string }{
		{"short body", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nshort"},
		{"chunked, cut in a chunk", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly part"},
		{"chunked, bad size", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"},
		{"no answer at all", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			answerParity(t, loops, tc.answer)
		})
	}
}

// TestRawServerAnswerForms: answers in forms HTTP/1.1 allows, or that
// net/http reads, though a process seldom sends them (an HTTP/1.0 status
// line, as Python's http.server sends; bare LF line ends; a folded header
// line; Content-Length twice) reach the client as through net/http.
func TestRawServerAnswerForms(t *testing.T) { forModes(t, testRawServerAnswerForms) }

func testRawServerAnswerForms(t *testing.T, loops int) {
	t.Parallel()
	for _, tc := range []struct {
		name, answer string
		status       int // what the client must get, as through net/http
	}{
		{"HTTP/1.0 with a length", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"HTTP/1.0 until close", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, until the end", 200},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"HTTP/1.0 says chunked", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200},
		{"HTTP/1.0 length and chunked", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"HTTP/1.0 no content", "HTTP/1.0 204 No Content\r\nX-A: b\r\n\r\n", 204},
		{"python http.server", "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\nDate: Wed, 02 Dec 2026 07:00:00 GMT\r\nContent-type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello", 200},
		{"folded header", "HTTP/1.1 200 OK\r\nX-Folded: one\r\n  two\r\n\tthree\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"Content-Length twice, same", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"Content-Length twice, different", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", http.StatusBadGateway},
		{"HTTP/2.0 status line", "HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"HTTP/0.0 says chunked", "HTTP/0.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200},
		{"HTTP/0.9 status line", "HTTP/0.9 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"a space before the colon", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A : b\r\nContent-Length : 9\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"no version", "HTTP/x.y 200 OK\r\nContent-Length: 5\r\n\r\nhello", http.StatusBadGateway},
		{"folded Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 5\r\n\r\nhello", http.StatusBadGateway},
		{"folded Pragma", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\n x\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"folded Connection", "HTTP/1.1 200 OK\r\nConnection: X-Hop,\r\n X-Two\r\nX-Hop: 1\r\nX-Two: 2\r\nX-Three: 3\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"folded Transfer-Encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200},
		{"folded first line", "HTTP/1.1 200 OK\r\n X-A: b\r\nContent-Length: 5\r\n\r\nhello", http.StatusBadGateway},
		{"trailer with a space in its name", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX Odd: 1\r\nX-Sum: 5\r\n\r\n", 200},
		{"folded trailer", "HTTP/1.1 200 OK\r\nTrailer: X-Sum, X-B\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5 \r\n\t 6\r\n \r\nX Odd: 1\r\n folded too\r\nX-B:\r\n  b\r\n\r\n", 200},
		{"trailers that end in LF alone", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\n\n", 200},
		{"trailer lines in LF, the section's end in CRLF", "HTTP/1.1 200 OK\r\nTrailer: X-Sum, X-B\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\nX-B:\n b\r\n\r\n", 200},
		{"folded first trailer", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n X-Sum: 5\r\n\r\n", 200},
		{"trailer with a space before its colon", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum : 4\r\nX-Sum: 5\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := answerParity(t, loops, tc.answer)
			if len(got["raw"].Responses) == 0 || got["raw"].Responses[0].Status != tc.status {
				t.Errorf("raw: got %+v, want status %d", got["raw"], tc.status)
			}
		})
	}
}

// answerParity has a process send answer (and close its connection) to a
// GET through the lean path and through the raw server with loops, and
// fails t unless the client gets the same from both. It returns both
// conversations, by path.
func answerParity(t *testing.T, loops int, answer string) map[string]conversation {
	t.Helper()
	procAddr, _ := rawProcess(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, answer)
	})
	addrs := map[string]string{}
	for _, path := range []string{"lean", "raw"} {
		e := newEnv(t)
		e.res.set(ns, "a", Backend{Addr: procAddr})
		e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
		if path == "raw" {
			addrs[path] = serveRawLoops(t, e.rt, loops)
			continue
		}
		srv := httptest.NewServer(e.rt)
		t.Cleanup(srv.Close)
		addrs[path] = srv.Listener.Addr().String()
	}
	got := map[string]conversation{}
	for _, path := range []string{"lean", "raw"} {
		got[path] = converse(t, addrs[path], "GET / HTTP/1.1\r\nHost: "+domain+"\r\n\r\n", []string{"GET"}, nil)
		// The 502 answers carry the process's address and an
		// error worded by whichever parser found it broken.
		for i := range got[path].Responses {
			if r := &got[path].Responses[i]; r.Status == http.StatusBadGateway {
				r.Body, r.Header["Content-Length"] = "(502 body)", nil
			}
		}
	}
	if d := cmp.Diff(got["lean"], got["raw"]); d != "" {
		t.Errorf("(-lean +raw):\n%s", d)
	}
	return got
}

// rawProcess is a revision's process written by hand: serve runs for each
// connection (which is closed after it). It returns the process's address
// and how many connections it accepted.
func rawProcess(t *testing.T, serve func(c net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns := new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String(), conns
}

// TestRawServerTimeout: past the revision's timeout, the raw loop answers
// 504 as ServeHTTP does; the process never answers, so timing cannot
// change the outcome.
func TestRawServerTimeout(t *testing.T) { forModes(t, testRawServerTimeout) }

func testRawServerTimeout(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }), Backend{Timeout: 50 * time.Millisecond})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	ex := roundTripRaw(t, serveRawLoops(t, e.rt, loops), "GET / HTTP/1.1\r\nHost: "+domain+"\r\n\r\n", "GET")
	if want := "revision a did not answer within its timeout of 50ms\n"; ex.Status != http.StatusGatewayTimeout || ex.Body != want {
		t.Errorf("got %d %q, want 504 %q", ex.Status, ex.Body, want)
	}
}

// TestRawServerShutdown: Shutdown lets a request in flight finish, closes
// idle connections, refuses new ones, and returns once all are done.
func TestRawServerShutdown(t *testing.T) { forModes(t, testRawServerShutdown) }

func testRawServerShutdown(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t)
	b := newBlocked()
	e.serve("a", b, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Router: e.rt, EventLoops: loops}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	addr := l.Addr().String()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := io.WriteString(busy, "GET /?n=1 HTTP/1.1\r\nHost: "+domain+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()

	// The idle connection is closed: a read sees EOF (an event).
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection during Shutdown: read %v, want EOF", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("a new connection was accepted during Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	b.release <- struct{}{}
	res, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != "done" || !res.Close {
		t.Errorf("the request in flight got %d %q (close %v), want 200 %q and Connection: close", res.StatusCode, body, res.Close, "done")
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestRawServerPipelinedFullBuffer: pipelined requests that fill the raw
// loop's read buffer, with a slow answer (so that the client watch reads
// a byte of the next request) are all answered in order.
func TestRawServerPipelinedFullBuffer(t *testing.T) { forModes(t, testRawServerPipelinedFullBuffer) }

func testRawServerPipelinedFullBuffer(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(3 * watchTick)
		}
		_, _ = io.WriteString(w, r.URL.RawQuery)
	}), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	conn, err := net.Dial("tcp", serveRawLoops(t, e.rt, loops))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var reqs strings.Builder
	var want []string
	for i := 0; reqs.Len() < 3*rawReadSize; i++ {
		q := "n=" + strings.Repeat("x", i%50)
		if i%7 == 0 {
			q += "&slow=1"
		}
		want = append(want, q)
		reqs.WriteString("GET /?" + q + " HTTP/1.1\r\nHost: " + domain + "\r\n\r\n")
	}
	go func() { _, _ = io.WriteString(conn, reqs.String()) }()
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for i, q := range want {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if string(body) != q {
			t.Fatalf("answer %d: %q, want %q", i, body, q)
		}
	}
}

// rawServed is a raw server a test shuts down itself.
type rawServed struct {
	srv    *Server
	addr   string
	served chan error
}

// startRaw serves rt with the raw server (loops: Server.EventLoops) on a
// loopback port.
func startRaw(t *testing.T, rt *Router, loops int) *rawServed {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &rawServed{srv: &Server{Router: rt, ReadHeaderTimeout: 10 * time.Second, EventLoops: loops},
		addr: l.Addr().String(), served: make(chan error, 1)}
	go func() { rs.served <- rs.srv.Serve(l) }()
	return rs
}

// shutdownClean requires Shutdown to find nothing left open, once the
// test's clients are gone, and Serve to return ErrServerClosed.
func (rs *rawServed) shutdownClean(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rs.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after the clients left: %v", err)
	}
	if err := <-rs.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestRawServerMixedLoad: many clients at once, each a random mix of what
// a connection may carry — small answers, answers streamed chunked or too
// large to take whole, HEAD, pipelined requests, a body (net/http's), and
// clients that leave in the middle of a request — all get exactly their
// answers, nothing stays in flight, and Shutdown finds nothing left open.
func TestRawServerMixedLoad(t *testing.T) { forModes(t, testRawServerMixedLoad) }

func testRawServerMixedLoad(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := strings.Repeat("y", n)
		switch r.URL.Path {
		case "/chunked":
			half := len(body) / 2
			_, _ = io.WriteString(w, body[:half])
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, body[half:])
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Millisecond):
			}
			_, _ = io.WriteString(w, body)
		case "/post":
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
		default:
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = io.WriteString(w, body)
		}
	}), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	rs := startRaw(t, e.rt, loops)
	addr := rs.addr

	type req struct {
		method, path string
		n            int
		post         string
	}
	head := func(r req) string {
		s := r.method + " " + r.path + "?n=" + strconv.Itoa(r.n) + " HTTP/1.1\r\nHost: " + domain + "\r\n"
		if r.post != "" {
			s += "Content-Length: " + strconv.Itoa(len(r.post)) + "\r\n\r\n" + r.post
			return s
		}
		return s + "\r\n"
	}
	var answered atomic.Int64
	var wg sync.WaitGroup
	for client := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(client), 7))
			var conn net.Conn
			var br *bufio.Reader
			dial := func() bool {
				var err error
				if conn, err = net.Dial("tcp", addr); err != nil {
					t.Error(err)
					return false
				}
				_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
				br = bufio.NewReader(conn)
				return true
			}
			if !dial() {
				return
			}
			defer func() { conn.Close() }()
			for i := range 60 {
				var batch []req
				switch op := rnd.IntN(10); {
				case op < 4:
					batch = []req{{"GET", "/", rnd.IntN(2000), ""}}
				case op == 4:
					batch = []req{{"GET", "/chunked", 1 + rnd.IntN(10000), ""}}
				case op == 5:
					batch = []req{{"GET", "/", evMaxAnswer + rnd.IntN(20000), ""}}
				case op == 6:
					batch = []req{{"HEAD", "/", rnd.IntN(500), ""}}
				case op == 7:
					batch = []req{{"GET", "/", 10, ""}, {"GET", "/chunked", 3000, ""}, {"GET", "/slow", 5, ""}}
				case op == 8:
					batch = []req{{"POST", "/post", 0, "body-" + strconv.Itoa(i)}}
				default: // leave in the middle of a request, then come back
					if _, err := io.WriteString(conn, head(req{"GET", "/slow", 1, ""})); err != nil {
						t.Error(err)
						return
					}
					conn.Close()
					if !dial() {
						return
					}
					continue
				}
				var out strings.Builder
				for _, r := range batch {
					out.WriteString(head(r))
				}
				if _, err := io.WriteString(conn, out.String()); err != nil {
					t.Errorf("client %d, request %d: %v", client, i, err)
					return
				}
				for _, r := range batch {
					res, err := http.ReadResponse(br, &http.Request{Method: r.method})
					if err != nil {
						t.Errorf("client %d, request %d (%s %s %d): %v", client, i, r.method, r.path, r.n, err)
						return
					}
					body, err := io.ReadAll(res.Body)
					res.Body.Close()
					want := strings.Repeat("y", r.n)
					switch {
					case r.method == "HEAD":
						want = ""
					case r.post != "":
						want = r.post
					}
					if err != nil || res.StatusCode != http.StatusOK || string(body) != want {
						t.Errorf("client %d, request %d (%s %s %d): %d, %d bytes, %v; want 200 and %d bytes", client, i, r.method, r.path, r.n, res.StatusCode, len(body), err, len(want))
						return
					}
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "nothing in flight", func() bool {
		return testutil.ToFloat64(e.rt.metrics.inFlight.WithLabelValues(ns, svc, "a")) == 0
	})
	if got := testutil.ToFloat64(e.rt.metrics.requests.WithLabelValues(ns, svc, "a", "200")); got < float64(answered.Load()) {
		t.Errorf("%s{code=200} = %v, want at least the %d answers the clients read", MetricRequests, got, answered.Load())
	}
	rs.shutdownClean(t)
}

// TestRawServerGarbage: connections that send junk — random bytes, heads
// cut short, lines past the buffer, a half-close after a request — end
// or wait without disturbing the others: clients beside them get their answers
// throughout, and Shutdown finds nothing left open.
func TestRawServerGarbage(t *testing.T) { forModes(t, testRawServerGarbage) }

func testRawServerGarbage(t *testing.T, loops int) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	rs := startRaw(t, e.rt, loops)
	addr := rs.addr
	good := "GET / HTTP/1.1\r\nHost: " + domain + "\r\n\r\n"

	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 11))
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			var junk []byte
			switch i % 5 {
			case 0: // random bytes
				junk = make([]byte, 1+rnd.IntN(3*rawReadSize))
				for k := range junk {
					junk[k] = byte(rnd.IntN(256))
				}
			case 1: // a head cut short
				junk = []byte(good[:1+rnd.IntN(len(good)-2)])
			case 2: // a line longer than the raw buffer, then more
				junk = []byte("GET /" + strings.Repeat("x", rawReadSize+rnd.IntN(rawReadSize)) + " HTTP/1.1\r\nHost: " + domain + "\r\n\r\n")
			case 3: // random bytes after a good request
				junk = []byte(good + strings.Repeat("\r\n\x00zz", 1+rnd.IntN(100)))
			case 4: // a good request, then the client closes its side
				junk = []byte(good)
			}
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := conn.Write(junk); err != nil {
				return // the server may have closed it already
			}
			if i%5 == 4 {
				// As through net/http, a client that closes its side is
				// gone: its request is cut unless answered first.
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			// Whatever the server answers, it must not hang: read until
			// it closes or a short wait passes (a cut-short head waits for
			// more, as net/http does).
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, _ = io.Copy(io.Discard, conn)
		})
		wg.Go(func() {
			ex := roundTripRaw(t, addr, good, "GET")
			if ex.Status != http.StatusOK || ex.Body != "a" {
				t.Errorf("a good client beside the junk: %d %q", ex.Status, ex.Body)
			}
		})
	}
	wg.Wait()
	waitFor(t, "nothing in flight", func() bool {
		return testutil.ToFloat64(e.rt.metrics.inFlight.WithLabelValues(ns, svc, "a")) == 0
	})
	rs.shutdownClean(t)
}
