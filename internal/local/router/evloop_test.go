//go:build linux

package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/reconcile"
)

// loopServer serves rt with one event loop and returns the server and its
// address.
func loopServer(t *testing.T, rt *Router) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Router: rt, ReadHeaderTimeout: 10 * time.Second, EventLoops: 1}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return srv, l.Addr().String()
}

// holders reports how many client connections the loops hold and how
// many have a goroutine.
func holders(srv *Server) (loop, goroutines int) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.loopConns(), len(srv.conns)
}

// TestEventLoopHandsOverWhatItDoesNotTake: a connection's common
// requests are answered by the event loop, answers of every size it takes
// whole among them; one whose answer must be streamed (chunked, or larger
// than evMaxAnswer) moves the connection, with the request in flight, to
// a goroutine, which answers it and the requests after it.
func TestEventLoopHandsOverWhatItDoesNotTake(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			_, _ = io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
		default:
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = io.WriteString(w, strings.Repeat("x", n))
		}
	}), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	srv, addr := loopServer(t, e.rt)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	get := func(target string) (int, string, []string) {
		t.Helper()
		if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: "+domain+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("GET %s: body: %v", target, err)
		}
		return res.StatusCode, string(body), res.TransferEncoding
	}
	for _, n := range []int{0, 9, 3000, 30_000, evMaxAnswer - 200} {
		code, body, te := get("/?n=" + strconv.Itoa(n))
		if code != http.StatusOK || body != strings.Repeat("x", n) || len(te) != 0 {
			t.Fatalf("GET with a body of %d: %d, %d bytes, %v; want 200 and the body with its length", n, code, len(body), te)
		}
		if loop, g := holders(srv); loop != 1 || g != 0 {
			t.Fatalf("after an answer of %d bytes: %d connections in the loop, %d with goroutines; want 1 and 0", n, loop, g)
		}
	}
	if code, body, te := get("/chunked"); code != http.StatusOK || body != "part one;part two" || len(te) != 1 {
		t.Fatalf("GET /chunked: %d %q %v, want 200 %q chunked", code, body, te, "part one;part two")
	}
	if loop, g := holders(srv); loop != 0 || g != 1 {
		t.Fatalf("after a streamed answer: %d connections in the loop, %d with goroutines; want 0 and 1", loop, g)
	}
	for _, n := range []int{5, 2 * evMaxAnswer} {
		if code, body, _ := get("/?n=" + strconv.Itoa(n)); code != http.StatusOK || body != strings.Repeat("x", n) {
			t.Fatalf("GET with a body of %d after the hand-over: %d, %d bytes", n, code, len(body))
		}
	}

	// A new connection whose first answer is larger than the loop takes.
	_, addr2 := loopServer(t, e.rt)
	ex := roundTripRaw(t, addr2, "GET /?n="+strconv.Itoa(3*evMaxAnswer)+" HTTP/1.1\r\nHost: "+domain+"\r\n\r\n", "GET")
	if ex.Status != http.StatusOK || ex.Body != strings.Repeat("x", 3*evMaxAnswer) {
		t.Fatalf("GET with a body of %d: %d, %d bytes", 3*evMaxAnswer, ex.Status, len(ex.Body))
	}
}

// TestRawServerRetriesAStaleConnection: a process that closes a kept
// connection just as the router sends on it (it read the request and
// answered nothing) gets the request again on a new connection, once,
// as the lean path does; the client sees only the answer.
func TestRawServerRetriesAStaleConnection(t *testing.T) {
	forModes(t, testRawServerRetriesAStaleConnection)
}

func testRawServerRetriesAStaleConnection(t *testing.T, loops int) {
	t.Parallel()
	var requests atomic.Int64
	procAddr, conns := rawProcess(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		// Each connection answers its first request, then reads the
		// second and closes without a word.
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			requests.Add(1)
			if i == 1 {
				return
			}
			body := req.URL.Query().Get("q")
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		}
	})
	e := newEnv(t)
	e.res.set(ns, "a", Backend{Addr: procAddr})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	addr := serveRawLoops(t, e.rt, loops)
	for _, q := range []string{"one", "two", "three"} {
		ex := roundTripRaw(t, addr, "GET /?q="+q+" HTTP/1.1\r\nHost: "+domain+"\r\n\r\n", "GET")
		if ex.Status != http.StatusOK || ex.Body != q {
			t.Fatalf("GET ?q=%s: %d %q, want 200 %q", q, ex.Status, ex.Body, q)
		}
	}
	// one: new connection 1; two: connection 1 fails, connection 2;
	// three: connection 2 fails, connection 3.
	if c, r := conns.Load(), requests.Load(); c != 3 || r != 5 {
		t.Errorf("the process saw %d connections and %d requests, want 3 and 5", c, r)
	}
}

// TestRawWaitLeavesAP: the loops' short wait that keeps a P is there only
// while GOMAXPROCS leaves a P to the rest of the process, counting every
// server's loops, and follows both as they change. Not parallel: it sets
// GOMAXPROCS and counts the process's loops.
func TestRawWaitLeavesAP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		procs, loops int
		want         int32
	}{
		{1, 1, 0},
		{2, 1, evRawWait},
		{2, 2, 0},
		{4, 2, evRawWait},
		{4, 4, 0},
	} {
		if got := rawWaitFor(tc.procs, tc.loops); got != tc.want {
			t.Errorf("GOMAXPROCS %d, %d loops: raw wait %d ms, want %d", tc.procs, tc.loops, got, tc.want)
		}
	}

	// A server started with a P to spare waits; at the sweep after
	// GOMAXPROCS drops to its loops, it no longer does, and it serves on.
	runtime.GOMAXPROCS(2)
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	srv, addr := loopServer(t, e.rt)
	srv.init() // the loops, started here or by Serve: once
	l := srv.loops[0]
	get := func() {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+domain+"\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer res.Body.Close()
		if body, err := io.ReadAll(res.Body); err != nil || res.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("GET: %d %q %v", res.StatusCode, body, err)
		}
	}
	get()
	if w := l.rawWait.Load(); w != evRawWait {
		t.Fatalf("with GOMAXPROCS 2 and one loop: raw wait %d ms, want %d", w, evRawWait)
	}
	// until the loop has swept and its raw wait is want.
	until := func(want int32, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for l.rawWait.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: raw wait %d ms after 10 s of sweeps, want %d", what, l.rawWait.Load(), want)
			}
			get() // the loop sweeps when it wakes
			time.Sleep(10 * time.Millisecond)
		}
		get()
	}
	// A second server's loop in the process: together they would hold both Ps.
	other := &Server{Router: e.rt, EventLoops: 1}
	other.init()
	until(0, "GOMAXPROCS 2, a second server's loop")
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	until(evRawWait, "GOMAXPROCS 2, the second server closed")
	runtime.GOMAXPROCS(1)
	until(0, "GOMAXPROCS 1")
}
