package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/internal/reconcile"
)

// seenRequest is what a revision's process received.
type seenRequest struct {
	Method, URI, Host string
	Header            http.Header
	Body              string
}

// exchange is one request through the router, as a client on the wire
// sees it.
type exchange struct {
	Seen          seenRequest
	Informational []int // 1xx status codes
	Status        int
	Header        http.Header
	Body          string
	Trailer       http.Header
}

// parityBackend answers by path, and records what it was sent.
func parityBackend(seen chan<- seenRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- seenRequest{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: string(body)}
		h := w.Header()
		switch r.URL.Path {
		case "/hop":
			h.Set("Connection", "X-Resp-Hop")
			h.Set("X-Resp-Hop", "1")
			h.Set("Keep-Alive", "timeout=1")
			h.Set("Proxy-Authenticate", "Basic")
			h.Set("X-End-To-End", "kept")
			_, _ = io.WriteString(w, "hop")
		case "/trailer":
			h.Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "body with a trailer")
			h.Set("X-Sum", "42")
		case "/early-hints":
			h.Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			h.Del("Link")
			_, _ = io.WriteString(w, "after hints")
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/not-modified":
			h.Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/large":
			_, _ = io.WriteString(w, strings.Repeat("0123456789abcdef", 10_000))
		case "/chunked":
			_, _ = io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
		case "/error":
			http.Error(w, "the process failed", http.StatusInternalServerError)
		case "/trailer-only":
			h.Set("Trailer", "X-Sum")
			w.WriteHeader(http.StatusOK)
			h.Set("X-Sum", "0")
		case "/empty-chunked":
			w.(http.Flusher).Flush()
		case "/close-delimited", "/close-delimited-empty":
			// What a process that predates keep-alive answers: no
			// length, the end of the body is the end of the connection.
			conn, bw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
			if r.URL.Path == "/close-delimited" {
				_, _ = bw.WriteString("until the end")
			}
			_ = bw.Flush()
			_ = conn.Close()
		case "/no-type":
			h["Content-Type"] = nil // the process sniffs nothing: the router's net/http does
			_, _ = io.WriteString(w, "<html><body>sniff me</body></html>")
		case "/pragma":
			h.Set("Pragma", "no-cache")
			_, _ = io.WriteString(w, "pragma")
		default:
			h.Set(RevisionHeader, "from-the-process")
			h.Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "plain")
		}
	}
}

// roundTripRaw writes raw on a new connection to addr and reads the
// response (and any 1xx before it) as a client would.
func roundTripRaw(t *testing.T, addr, raw, method string) exchange {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	r, err := readAnswer(bufio.NewReader(conn), method)
	if err != nil {
		t.Fatalf("the response to %q: %v", raw, err)
	}
	return exchange{Informational: r.Informational, Status: r.Status, Header: r.Header, Body: r.Body, Trailer: r.Trailer}
}

// readAnswer reads one answer to a request of method as a client does:
// any 1xx, then the final response with its body (Date removed). A
// failure to read the body returns what was read with the error.
func readAnswer(br *bufio.Reader, method string) (response, error) {
	var r response
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return r, err
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 {
			_ = res.Body.Close()
			r.Informational = append(r.Informational, res.StatusCode)
			continue
		}
		body, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		res.Header.Del("Date")
		r.Status, r.Header, r.Body, r.Trailer = res.StatusCode, res.Header, string(body), res.Trailer
		if err != nil {
			return r, fmt.Errorf("reading the body: %w", err)
		}
		return r, nil
	}
}

// response is one answer as a client on the wire reads it.
type response struct {
	Informational []int // 1xx status codes
	Status        int
	Header        http.Header
	Body          string
	Trailer       http.Header
}

// conversation is what happened on one client connection: the requests
// the process received, the answers the client read, and whether the
// router kept the connection open after them.
type conversation struct {
	Seen      []seenRequest
	Responses []response
	// Err: reading an answer failed (the connection was cut).
	Err  bool
	Open bool
}

// converse writes raw on a new connection to addr, reads one answer per
// method, then probes whether the connection is still open by sending one
// more request (an event, not a timeout, decides). What the process saw
// is taken from seen; the probe's request is drained.
func converse(t *testing.T, addr, raw string, methods []string, seen chan seenRequest) conversation {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var cv conversation
	for _, method := range methods {
		r, err := readAnswer(br, method)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The router must answer, or cut the connection, on its
			// own: it missed an event.
			t.Errorf("answer %d: the router neither answered nor cut the connection in 30 s: %v", len(cv.Responses)+1, err)
		}
		if err != nil {
			t.Logf("reading answer %d: %v", len(cv.Responses)+1, err)
			cv.Err = true
			if r.Status == 0 { // no answer at all: the connection is cut
				cv.Seen = drain(seen)
				return cv
			}
		}
		cv.Responses = append(cv.Responses, r)
	}
	// Everything answered was seen before its answer was written.
	cv.Seen = drain(seen)
	_, _ = io.WriteString(conn, "GET /probe HTTP/1.1\r\nHost: "+domain+"\r\n\r\n")
	if res, err := http.ReadResponse(br, nil); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		cv.Open = true
		if seen != nil {
			<-seen
		}
	}
	return cv
}

func drain(seen chan seenRequest) []seenRequest {
	var out []seenRequest
	for {
		select {
		case s := <-seen:
			out = append(out, s)
		default:
			return out
		}
	}
}

// parityRouters serves one process through the three ways a request can
// take: ReverseProxy under net/http (WithTransport forces it), the lean
// path under net/http, and the raw server (which hands what it does not
// take to net/http). It returns their addresses and what the process
// receives.
func parityRouters(t *testing.T, opts ...Option) (map[string]string, chan seenRequest) {
	seen := make(chan seenRequest, 16)
	backend := httptest.NewServer(parityBackend(seen))
	t.Cleanup(backend.Close)
	routers := map[string]string{}
	for name, o := range map[string][]Option{
		"reverseproxy": {WithTransport(newTransport())},
		"lean":         nil,
		"raw":          nil,
		"goroutines":   nil,
	} {
		e := newEnv(t, append(o, opts...)...)
		e.res.set(ns, "a", Backend{Addr: backend.Listener.Addr().String()})
		e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100), Tags: map[string]string{"cur": "a"}})
		if name == "raw" || name == "goroutines" {
			routers[name] = serveRawLoops(t, e.rt, map[string]int{"raw": 0, "goroutines": -1}[name])
			continue
		}
		srv := httptest.NewServer(e.rt)
		t.Cleanup(srv.Close)
		routers[name] = srv.Listener.Addr().String()
	}
	return routers, seen
}

// serveRaw serves rt with the raw server on a loopback port.
func serveRaw(t testing.TB, rt *Router) string { return serveRawLoops(t, rt, 0) }

// serveRawLoops serves rt with the raw server with loops event loops
// (Server.EventLoops).
func serveRawLoops(t testing.TB, rt *Router, loops int) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Router: rt, ReadHeaderTimeout: 10 * time.Second, EventLoops: loops}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return l.Addr().String()
}

// TestLeanPathParity sends the same bytes through ReverseProxy, the lean
// path and the raw server, to the same process: the process must receive
// the same requests and the client the same answers (hop-by-hop headers
// and all) and the same connection handling. The raw server's cases
// include the requests it hands to net/http, which must be answered as
// net/http always has.
func TestLeanPathParity(t *testing.T) {
	t.Parallel()
	routers, seen := parityRouters(t)

	// Every request names Accept-Encoding: http.Transport adds a gzip
	// one to requests without it (and undoes the compression), which the
	// lean path does not; TestLeanPathAddsNoAcceptEncoding covers that.
	const host = "Host: " + domain + "\r\nAccept-Encoding: identity\r\n"
	get := func(path string, extra ...string) string {
		return "GET " + path + " HTTP/1.1\r\n" + host + strings.Join(extra, "") + "\r\n"
	}
	bigHeader := "X-Big: " + strings.Repeat("b", 5000) + "\r\n"
	hugeHeader := "X-Huge: " + strings.Repeat("h", http.DefaultMaxHeaderBytes+8192) + "\r\n"
	one := []string{"GET"}
	// ReverseProxy flushes a streamed answer's head from a timer of zero
	// that races the end of the body, so an empty one comes chunked or
	// with Content-Length: 0 by chance; the lean path and the raw server
	// always chunk it. For these, only those two are compared.
	racyRP := map[string]bool{"chunked and empty": true, "close-delimited and empty": true}
	for _, tc := range []struct {
		name, raw string
		methods   []string
	}{
		{"get with query", get("/plain?q=1&r=%2F", "User-Agent: wrk\r\n"), one},
		{"no user agent", get("/"), one},
		{"head", "HEAD /large HTTP/1.1\r\n" + host + "\r\n", []string{"HEAD"}},
		{"options", "OPTIONS /plain HTTP/1.1\r\n" + host + "\r\n", []string{"OPTIONS"}},
		{"hop-by-hop request headers", get("/plain",
			"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"+
				"Te: trailers, deflate\r\nTrailer: X-Foo\r\nProxy-Authorization: Basic eDp5\r\nX-End-To-End: kept\r\n"), one},
		{"te without trailers", get("/plain", "Te: deflate\r\n"), one},
		{"client forwarding headers are replaced", get("/plain",
			"X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Host: elsewhere\r\nX-Forwarded-Proto: https\r\nForwarded: for=10.1.2.3\r\n"), one},
		{"repeated header", get("/plain", "Accept: a/b\r\nAccept: c/d\r\nCookie: x=1\r\n"), one},
		{"header names in any case", get("/plain", "x-lower: 1\r\nX-UPPER: 2\r\nx-MiXed-CaSe: 3\r\n"), one},
		{"hop-by-hop response headers", get("/hop"), one},
		{"trailer", get("/trailer", "Te: trailers\r\n"), one},
		{"trailer and empty body", get("/trailer-only"), one},
		{"103 early hints", get("/early-hints"), one},
		{"204", get("/no-content"), one},
		{"304", get("/not-modified", "If-None-Match: \"v1\"\r\n"), one},
		{"head of 304", "HEAD /not-modified HTTP/1.1\r\n" + host + "\r\n", []string{"HEAD"}},
		{"large body", get("/large"), one},
		{"chunked", get("/chunked"), one},
		{"chunked and empty", get("/empty-chunked"), one},
		{"close-delimited", get("/close-delimited"), one},
		{"close-delimited and empty", get("/close-delimited-empty"), one},
		{"no content type (sniffed)", get("/no-type"), one},
		{"pragma no-cache", get("/pragma"), one},
		{"process error", get("/error"), one},
		{"pipelined", get("/plain") + "HEAD /large HTTP/1.1\r\n" + host + "\r\n" + get("/chunked") + get("/no-content"),
			[]string{"GET", "HEAD", "GET", "GET"}},
		{"connection close", get("/plain", "Connection: close\r\n"), one},
		{"unknown host", "GET / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n", one},
		{"unknown host, head", "HEAD / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n", []string{"HEAD"}},
		{"unknown target", get("/plain", TargetHeader+": prev\r\n"), one},
		{"named target", get("/plain", TargetHeader+": cur\r\n"), one},
		{"host with port and in capitals", "GET /plain HTTP/1.1\r\nHost: SVC.default.localhost.:8080\r\nAccept-Encoding: identity\r\n\r\n", one},
		// What the raw server hands to net/http.
		{"post", "POST /plain HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", []string{"POST"}},
		{"post after a get", get("/plain") + "POST /plain HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + get("/plain"),
			[]string{"GET", "POST", "GET"}},
		// With a body, how many 100s the client sees is a race inside
		// net/http on every path (its own, on reading the body, and the
		// process's, relayed): the hand-off is what is checked here.
		{"expect 100-continue", get("/plain", "Expect: 100-continue\r\n"), one},
		{"get with an empty body", get("/plain", "Content-Length: 0\r\n"), one},
		{"http/1.0", "GET /plain HTTP/1.0\r\n" + host + "\r\n", one},
		{"absolute-form target", "GET http://" + domain + "/plain HTTP/1.1\r\n" + host + "\r\n", one},
		{"target with bytes the raw path leaves alone", get(`/a"b%zz`), one},
		{"fragment", get("/plain#frag"), one},
		{"upgrade", get("/plain", "Connection: Upgrade\r\nUpgrade: websocket\r\n"), one},
		{"header larger than the raw buffer", get("/plain", bigHeader), one},
		{"header past net/http's limit: 431", get("/plain", hugeHeader), one},
		{"bare LF", "GET /plain HTTP/1.1\nHost: " + domain + "\nAccept-Encoding: identity\n\n", one},
		{"obs-text in a value", get("/plain", "X-Name: caf\xc3\xa9\r\n"), one},
		{"pragma in the request", get("/plain", "Pragma: no-cache\r\n"), one},
		{"malformed request line: 400", "GET\r\n\r\n", one},
		{"malformed header: 400", get("/plain", "Bad Name: x\r\n"), one},
		{"missing host: 400", "GET / HTTP/1.1\r\n\r\n", one},
		{"two hosts: 400", get("/plain", "Host: other\r\n"), one},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", one},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]conversation{}
			for _, path := range []string{"reverseproxy", "lean", "raw", "goroutines"} {
				got[path] = converse(t, routers[path], tc.raw, tc.methods, seen)
			}
			if d := cmp.Diff(got["reverseproxy"], got["lean"]); d != "" && !racyRP[tc.name] {
				t.Errorf("(-reverseproxy +lean):\n%s", d)
			}
			if d := cmp.Diff(got["lean"], got["raw"]); d != "" {
				t.Errorf("(-lean +raw):\n%s", d)
			}
			if d := cmp.Diff(got["lean"], got["goroutines"]); d != "" {
				t.Errorf("(-lean +raw with a goroutine per connection):\n%s", d)
			}
		})
	}
}

// TestLeanPathHeaders pins what the lean path sends and answers, apart
// from agreeing with ReverseProxy.
func TestLeanPathHeaders(t *testing.T) {
	t.Parallel()
	seen := make(chan seenRequest, 1)
	e := newEnv(t)
	e.serve("a", parityBackend(seen), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	srv := httptest.NewServer(e.rt)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	ex := roundTripRaw(t, addr, "GET /hop?x=1 HTTP/1.1\r\nHost: "+domain+"\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"+
		"X-Forwarded-For: 10.1.2.3\r\n"+TargetHeader+": \r\nUser-Agent: wrk\r\n\r\n", "GET")
	req := <-seen
	wantSeen := seenRequest{Method: "GET", URI: "/hop?x=1", Host: domain, Header: http.Header{
		"User-Agent":        {"wrk"},
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Host":  {domain},
		"X-Forwarded-Proto": {"http"},
	}}
	if d := cmp.Diff(wantSeen, req); d != "" {
		t.Errorf("the process received (-want +got):\n%s", d)
	}
	wantHeader := http.Header{
		"Content-Length": {"3"},
		"Content-Type":   {"text/plain; charset=utf-8"},
		"X-End-To-End":   {"kept"},
		RevisionHeader:   {"a"},
	}
	if d := cmp.Diff(wantHeader, ex.Header); d != "" || ex.Status != http.StatusOK || ex.Body != "hop" {
		t.Errorf("the client got %d %q with header (-want +got):\n%s", ex.Status, ex.Body, d)
	}
}

// TestLeanPathAddsNoAcceptEncoding: unlike http.Transport, the lean path
// does not ask the process for gzip on the client's behalf (nor undo it):
// the process sees the client's request.
func TestLeanPathAddsNoAcceptEncoding(t *testing.T) {
	t.Parallel()
	seen := make(chan seenRequest, 1)
	e := newEnv(t)
	e.serve("a", parityBackend(seen), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	srv := httptest.NewServer(e.rt)
	t.Cleanup(srv.Close)
	roundTripRaw(t, srv.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: "+domain+"\r\n\r\n", "GET")
	if got := (<-seen).Header["Accept-Encoding"]; got != nil {
		t.Errorf("the process got Accept-Encoding %q from a client that sent none", got)
	}
}

// TestLeanPathStreams: a response without a length reaches the client
// as the process writes it, not when it ends.
func TestLeanPathStreams(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second\n")
	}), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
	srv := httptest.NewServer(e.rt)
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Host = domain
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	first := make(chan string, 1)
	go func() { line, _ := br.ReadString('\n'); first <- line }()
	select {
	case line := <-first:
		if line != "first\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the first part did not reach the client while the process held the response open")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Errorf("rest %q, %v", rest, err)
	}
}

// TestLeanPathReplaysOnClosedIdleConnection: when the process closed a
// kept-alive connection while it was idle, the request goes out again on
// a new one instead of failing.
func TestLeanPathReplaysOnClosedIdleConnection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	conns := 0
	e := newEnv(t)
	srv := httptest.NewUnstartedServer(echo("a"))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	e.res.set(ns, "a", Backend{Addr: srv.Listener.Addr().String()})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})

	for i := range 2 {
		if w := e.get(domain, nil); w.Code != http.StatusOK || w.Body.String() != "a" {
			t.Fatalf("request %d: %d %q", i+1, w.Code, w.Body)
		}
		// The process drops its idle connections, as one does when it
		// restarts or times them out.
		srv.CloseClientConnections()
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 2 {
		t.Errorf("the process saw %d connections, want 2 (one per request, the stale one replaced)", conns)
	}
}

// TestLeanPathBadGateway: a process that answers garbage, or closes the
// connection without answering, gives 502 naming the revision.
func TestLeanPathBadGateway(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, answer, because string }{
		{"garbage", "this is not HTTP\r\n\r\n", "malformed HTTP status code"},
		{"closed without answering", "", "EOF"},
		{"unrequested upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n", "asked for no upgrade"},
		{"header past the limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", maxResponseHeaderBytes) + "\r\n\r\n", "larger than 10485760 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						br := bufio.NewReader(c)
						if _, err := http.ReadRequest(br); err != nil {
							return
						}
						_, _ = io.WriteString(c, tc.answer)
					}()
				}
			}()
			e := newEnv(t)
			e.res.set(ns, "a", Backend{Addr: l.Addr().String()})
			e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})
			w := e.get(domain, nil)
			want := fmt.Sprintf("revision a at %s did not answer", l.Addr())
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), want) || !strings.Contains(w.Body.String(), tc.because) {
				t.Errorf("got %d %q, want 502 containing %q and %q", w.Code, w.Body, want, tc.because)
			}
		})
	}
}

// BenchmarkHotPath is the router's hot path alone: a GET for a 75/25
// split, to processes that answer a fixed response without net/http, so
// that allocs/op are the router's own. "raw" is the whole router as
// serve runs it: a keep-alive client connection per goroutine to the raw
// server, with a client that allocates nothing. "lean" and
// "reverseproxy" are ServeHTTP alone (plus the recorder's allocations),
// on the lean path and on ReverseProxy (what every request took before).
func BenchmarkHotPath(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		e := newEnv(b)
		for _, rev := range []string{"a", "b"} {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			go fixedResponder(l, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n")
			e.res.set(ns, rev, Backend{Addr: l.Addr().String()})
		}
		e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 75, "b", 25)})
		addr := serveRaw(b, e.rt)
		request := []byte("GET / HTTP/1.1\r\nHost: " + domain + "\r\nUser-Agent: bench\r\n\r\n")
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			buf := make([]byte, 4096)
			for pb.Next() {
				if _, err := conn.Write(request); err != nil {
					b.Error(err)
					return
				}
				// The answer ends 6 bytes ("hello\n") after its head.
				n := 0
				for {
					k, err := conn.Read(buf[n:])
					if err != nil {
						b.Error(err)
						return
					}
					n += k
					if h := bytes.Index(buf[:n], []byte("\r\n\r\n")); h >= 0 && n >= h+4+6 {
						break
					}
				}
				if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK\r\n")) {
					b.Errorf("answer %q", buf[:n])
					return
				}
			}
		})
	})
	for _, path := range []struct {
		name string
		opts []Option
	}{{"lean", nil}, {"reverseproxy", []Option{WithTransport(newTransport())}}} {
		b.Run(path.name, func(b *testing.B) {
			e := newEnv(b, path.opts...)
			for _, rev := range []string{"a", "b"} {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { l.Close() })
				go fixedResponder(l, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n")
				e.res.set(ns, rev, Backend{Addr: l.Addr().String()})
			}
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
		})
	}
}

// fixedResponder answers every request on every connection of l with
// response, reading requests only as far as their blank line.
func fixedResponder(l net.Listener, response string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			answer := []byte(response) // once: its allocation is not the router's
			for {
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 {
						break
					}
				}
				if _, err := c.Write(answer); err != nil {
					return
				}
			}
		}()
	}
}

// TestLeanPathClientGone: a client that goes away while the process
// works ends the proxied request too (the process sees its context end),
// and the request is recorded as 499.
func TestLeanPathClientGone(t *testing.T) {
	t.Parallel()
	entered, ended := make(chan struct{}), make(chan struct{})
	e := newEnv(t)
	e.serve("a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		close(ended)
	}), Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://"+domain+"/", nil)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { e.rt.ServeHTTP(w, req); close(done) }()
	<-entered
	cancel()
	<-done
	if w.Code != statusClientClosed {
		t.Errorf("got %d, want %d", w.Code, statusClientClosed)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Error("the process's request did not end when the client went away")
	}
}

// TestUpstreamsSweepIdle: connections idle past idleTimeout are closed
// and the pools of addresses left with none forgotten (their processes
// are usually gone); fresher ones stay; a full pool closes what it cannot
// keep.
func TestUpstreamsSweepIdle(t *testing.T) {
	t.Parallel()
	accepted := make(chan net.Conn, maxIdlePerBackend+8)
	listen := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		return l.Addr().String()
	}
	// closedByRouter reports whether the router closed the server side's
	// peer: a read sees EOF at once.
	closedByRouter := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	var u upstreams
	t.Cleanup(u.closeIdle)
	stale, fresh := listen(), listen()
	dialPut := func(addr string) net.Conn {
		uc, err := u.dial(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		u.put(u.pool(addr), uc)
		return <-accepted
	}
	staleServer := dialPut(stale)
	freshServer := dialPut(fresh)
	u.pools[stale].idle[0].lastUsed = time.Now().Add(-2 * idleTimeout)

	u.sweepIdle()
	if !closedByRouter(staleServer) {
		t.Error("the connection idle past idleTimeout is still open")
	}
	if _, ok := u.pools[stale]; ok {
		t.Errorf("the pool of %s, left empty, is still kept", stale)
	}
	if n := len(u.pools[fresh].idle); n != 1 {
		t.Errorf("the fresh pool keeps %d connections, want 1", n)
	}
	if closedByRouter(freshServer) {
		t.Error("the fresh connection was closed")
	}

	// Past maxIdlePerBackend, a returned connection is closed.
	for range maxIdlePerBackend - 1 {
		dialPut(fresh)
	}
	if !closedByRouter(dialPut(fresh)) {
		t.Errorf("connection %d to one process was kept idle, want at most %d", maxIdlePerBackend+1, maxIdlePerBackend)
	}
}
