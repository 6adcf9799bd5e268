package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The lean path: most requests a revision gets are body-less GETs on
// HTTP/1.1 keep-alive connections, and profiling the router under wrk
// (bench/run.sh router, PROFILE=...) showed httputil.ReverseProxy over
// http.Transport spending its time around the proxying rather than in it:
// two goroutine hand-offs per request (the transport's writeLoop and
// readLoop), a select per round trip, contention on the transport's idle
// pool lock (two thirds of the process's mutex contention), a cloned
// request, header map and context per request, and one read more per
// request (readLoop peeking for the next response). proxyLean does the
// round trip on the handler's goroutine over a connection of its own pool,
// writing the request straight into the connection's buffer.
//
// It takes only requests that are safe to replay and have nothing to
// stream upstream: GET, HEAD, OPTIONS and TRACE without a body and without
// an Upgrade. Everything else (bodies, websockets and other upgrades,
// methods that must not be sent twice) stays on the ReverseProxy path,
// with its semantics. The two paths send the revision the same request
// (hop-by-hop headers removed, the client's Host kept, X-Forwarded-For,
// -Host and -Proto set as ProxyRequest.SetXForwarded does) and give the
// client the same answer.

// leanEligible reports whether req can take the lean path.
func leanEligible(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
		return false
	}
	_, upgrade := req.Header["Upgrade"]
	return !upgrade
}

// maxIdlePerBackend bounds the idle connections kept to one process.
const maxIdlePerBackend = 256

// idleTimeout: an idle connection unused this long is closed, so that the
// pool does not hold connections to processes that are gone.
const idleTimeout = 90 * time.Second

// upstreams is the lean path's pool of connections to revisions'
// processes, one idle list per address, each with its own lock.
type upstreams struct {
	dialer net.Dialer
	// gen counts closeIdle's calls: the event loops' idle connections
	// from before one are closed too.
	gen    atomic.Uint64
	mu     sync.Mutex
	pools  map[string]*pool // guarded by mu
	sweep  *time.Timer      // guarded by mu: pending sweep of idle connections
	closed bool             // guarded by mu
}

type pool struct {
	mu   sync.Mutex
	idle []*upConn // most recently used last
}

// maxResponseHeaderBytes bounds a response's header, as
// http.Transport's default does: a process sending headers without end
// gets a 502, not the router's memory.
const maxResponseHeaderBytes = 10 << 20

// upConn is one keep-alive connection to a process.
type upConn struct {
	conn net.Conn
	// readLimit is how much more br may read from conn: the header
	// limit while a response's header is read, unbounded for its body.
	readLimit int64
	br        *bufio.Reader
	bw        *bufio.Writer
	lastUsed  time.Time
	// hasDeadline: a request's deadline is still set on conn.
	hasDeadline bool
	// sw sends the raw loop's requests (sendwait.go).
	sw sendWaiter
}

func (u *upstreams) pool(addr string) *pool {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.pools[addr]
	if p == nil {
		if u.pools == nil {
			u.pools = map[string]*pool{}
		}
		p = &pool{}
		u.pools[addr] = p
	}
	return p
}

// get returns an idle connection to addr, or nil.
func (p *pool) get() *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return uc
	}
	return nil
}

// put keeps uc for the next request, or closes it if the pool is full.
func (u *upstreams) put(p *pool, uc *upConn) {
	uc.lastUsed = time.Now()
	p.mu.Lock()
	if len(p.idle) >= maxIdlePerBackend {
		p.mu.Unlock()
		_ = uc.conn.Close()
		return
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
	u.mu.Lock()
	if u.sweep == nil && !u.closed {
		u.sweep = time.AfterFunc(idleTimeout, u.sweepIdle)
	}
	u.mu.Unlock()
}

// sweepIdle closes connections idle for idleTimeout and forgets empty
// pools (their processes are usually gone); it runs again while any
// connection is idle.
func (u *upstreams) sweepIdle() {
	cutoff := time.Now().Add(-idleTimeout)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep = nil
	if u.closed {
		return
	}
	left := 0
	for addr, p := range u.pools {
		p.mu.Lock()
		keep := p.idle[:0]
		for _, uc := range p.idle {
			if uc.lastUsed.Before(cutoff) {
				_ = uc.conn.Close()
			} else {
				keep = append(keep, uc)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		left += len(keep)
		if len(keep) == 0 {
			delete(u.pools, addr)
		}
		p.mu.Unlock()
	}
	if left > 0 {
		u.sweep = time.AfterFunc(idleTimeout, u.sweepIdle)
	}
}

// closeIdle closes every idle connection; the pool stays usable.
func (u *upstreams) closeIdle() {
	u.gen.Add(1)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sweep != nil {
		u.sweep.Stop()
		u.sweep = nil
	}
	for addr, p := range u.pools {
		p.mu.Lock()
		for _, uc := range p.idle {
			_ = uc.conn.Close()
		}
		p.idle = nil
		p.mu.Unlock()
		delete(u.pools, addr)
	}
}

func (u *upstreams) dial(ctx context.Context, addr string) (*upConn, error) {
	conn, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{conn: conn, bw: bufio.NewWriterSize(conn, 4<<10)}
	uc.br = bufio.NewReaderSize(limitedReader{uc}, 4<<10)
	uc.sw.init(conn)
	return uc, nil
}

// attempt is the connection a request's attempt goes out on, with the
// request's deadline set on it: on the first attempt an idle one of p if
// there is one (reused), else a new one.
func (u *upstreams) attempt(ctx context.Context, p *pool, addr string, deadline time.Time, attempt int) (uc *upConn, reused bool, err error) {
	if attempt == 0 {
		uc = p.get()
	}
	if reused = uc != nil; !reused {
		if uc, err = u.dialUntil(ctx, addr, deadline); err != nil {
			return nil, false, err
		}
	}
	if !deadline.IsZero() || uc.hasDeadline {
		_ = uc.conn.SetDeadline(deadline)
		uc.hasDeadline = !deadline.IsZero()
	}
	return uc, reused, nil
}

// dialUntil dials addr, giving up at deadline if it is not zero (the
// revision's timeout counts from the request's start, dial included).
func (u *upstreams) dialUntil(ctx context.Context, addr string, deadline time.Time) (*upConn, error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	return u.dial(ctx, addr)
}

// limitedReader reads uc.conn within uc.readLimit.
type limitedReader struct{ uc *upConn }

func (l limitedReader) Read(p []byte) (int, error) {
	uc := l.uc
	if uc.readLimit <= 0 {
		return 0, fmt.Errorf("the response header is larger than %d bytes", maxResponseHeaderBytes)
	}
	if int64(len(p)) > uc.readLimit {
		p = p[:uc.readLimit]
	}
	n, err := uc.conn.Read(p)
	uc.readLimit -= int64(n)
	return n, err
}

// proxyLean proxies req (leanEligible) to c.backend, giving up at
// deadline if it is not zero.
func (r *Router) proxyLean(c *call, req *http.Request, deadline time.Time) {
	ctx := c.clientCtx
	p := r.upstreams.pool(c.backend.Addr)
	var (
		uc   *upConn
		res  *http.Response
		err  error
		stop func() bool
	)
	// A reused connection may have been closed by the process while
	// idle; the request is then sent once more on a new one, as
	// http.Transport does for requests that are safe to replay.
	for attempt := 0; ; attempt++ {
		var reused bool
		uc, reused, err = r.upstreams.attempt(ctx, p, c.backend.Addr, deadline, attempt)
		if err != nil {
			r.leanFailed(c, req, deadline, err)
			return
		}
		// Watch the client on the connection: its going away unblocks
		// every read and write at once (the deadline is on it already).
		stop = context.AfterFunc(ctx, func() { _ = uc.conn.SetDeadline(aLongTimeAgo) })
		res, err = r.roundTrip(c, uc, req)
		if err == nil {
			break
		}
		stop()
		_ = uc.conn.Close()
		uc = nil
		// Not a stale connection but the revision's timeout, or the
		// client gone: nothing to replay.
		var nr errNoResponse
		if !reused || !errors.As(err, &nr) || errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
			r.leanFailed(c, req, deadline, err)
			return
		}
	}

	h := c.Header()
	copyHeader(h, res.Header)
	h.Set(RevisionHeader, c.revision)
	if len(res.Trailer) > 0 {
		keys := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Set("Trailer", strings.Join(keys, ", "))
	}
	c.WriteHeader(res.StatusCode)
	if len(res.Trailer) > 0 || res.ContentLength == -1 {
		// As ReverseProxy does: force chunking, so that the trailers go
		// out after a body whose length net/http would otherwise compute;
		// and send the head of a streamed answer at once (ReverseProxy
		// does it from a timer of zero, racing the body: here it is
		// always first, so an empty streamed body is chunked too, and
		// nothing is sniffed from its first bytes).
		_ = c.FlushError()
	}
	err = r.copyBody(c, res)
	_ = res.Body.Close()
	for k, vv := range res.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	cancelled := !stop()
	if err != nil || cancelled || res.Close {
		_ = uc.conn.Close()
	} else {
		// The deadline stays: nothing reads an idle connection, and the
		// next request sets its own (or clears it).
		r.upstreams.put(p, uc)
	}
	if err != nil {
		r.opts.logger.Debug("router: copying a response failed",
			"namespace", c.namespace, "route", c.route, "revision", c.revision, "addr", c.backend.Addr, "error", err)
		// The status line is out: all that is left is to abort, as
		// ReverseProxy does, so the client sees a broken response rather
		// than a short one.
		if req.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
	}
}

// errNoResponse: the connection failed before any byte of a response
// came back.
type errNoResponse struct{ err error }

func (e errNoResponse) Error() string { return e.err.Error() }
func (e errNoResponse) Unwrap() error { return e.err }

// aLongTimeAgo is a deadline that has passed: setting it unblocks every
// read and write on a connection at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req on uc and reads the response's header. 1xx
// responses other than 101 are relayed to the client, as ReverseProxy
// does.
func (r *Router) roundTrip(c *call, uc *upConn, req *http.Request) (*http.Response, error) {
	writeRequest(uc.bw, req)
	uc.readLimit = maxResponseHeaderBytes
	if err := uc.bw.Flush(); err != nil {
		return nil, errNoResponse{err}
	}
	if _, err := uc.br.Peek(1); err != nil {
		return nil, errNoResponse{err}
	}
	for {
		res, err := http.ReadResponse(uc.br, req)
		if err != nil {
			return nil, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			_ = res.Body.Close()
			return nil, errors.New("101 Switching Protocols to a request that asked for no upgrade")
		case res.StatusCode >= 100 && res.StatusCode < 200:
			h := c.Header()
			copyHeader(h, res.Header)
			c.WriteHeader(res.StatusCode)
			// A 1xx leaves the header map as it was: clear it for the
			// final response.
			clear(h)
			continue
		}
		removeHopByHop(res.Header)
		uc.readLimit = math.MaxInt64 // the body's length is the process's business
		return res, nil
	}
}

// copyBody copies res's body to the client, flushing after every read
// when the response streams (no length, or server-sent events), as
// ReverseProxy does.
func (r *Router) copyBody(c *call, res *http.Response) error {
	stream := res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type"))
	buf := r.buffers.Get()
	defer r.buffers.Put(buf)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return err
			}
			if stream {
				if err := c.FlushError(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func isEventStream(contentType string) bool {
	const es = "text/event-stream"
	return len(contentType) >= len(es) && strings.EqualFold(contentType[:len(es)], es) &&
		(len(contentType) == len(es) || contentType[len(es)] == ';' || contentType[len(es)] == ' ')
}

// leanFailed answers a request that got no response: 499 if the client
// went away, 504 past the revision's timeout, 502 otherwise.
func (r *Router) leanFailed(c *call, req *http.Request, deadline time.Time, err error) {
	r.opts.logger.Debug("router: proxying failed",
		"namespace", c.namespace, "route", c.route, "revision", c.revision, "addr", c.backend.Addr, "error", err)
	if c.clientCtx.Err() != nil {
		r.ended(c, c.clientCtx.Err())
		return
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		r.ended(c, context.DeadlineExceeded)
		return
	}
	c.fail(http.StatusBadGateway, fmt.Sprintf("revision %s at %s did not answer: %v", c.revision, c.backend.Addr, err))
}

// hopHeaders are the hop-by-hop headers ReverseProxy removes (RFC 7230
// 6.1 and RFC 2616 13.5.1), canonical.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// notForwarded are the request headers the lean path writes itself or
// drops: hop-by-hop, the client's X-Forwarded-* and Forwarded (replaced,
// as with ReverseProxy.Rewrite), the target header, and the framing.
var notForwarded = map[string]bool{
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	TargetHeader: true, "Host": true, "Content-Length": true,
}

// namedByConnection reports whether the Connection header values list
// key (a canonical header name) as hop-by-hop.
func namedByConnection(conn []string, key string) bool {
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(tok), key) {
				return true
			}
		}
	}
	return false
}

// removeHopByHop removes a response's hop-by-hop headers.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for k := range hopHeaders {
		delete(h, k)
	}
}

// copyHeader adds src's values to dst.
func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		dst[k] = append(dst[k], vv...)
	}
}

// writeRequest writes req's request line and header for the revision's
// process: what ReverseProxy with our rewrite would send, without cloning
// the request or its header.
func writeRequest(bw *bufio.Writer, req *http.Request) {
	// A bufio.Writer's error is sticky: the caller's Flush reports it.
	w := func(s string) { _, _ = bw.WriteString(s) }
	w(req.Method)
	w(" ")
	w(req.URL.RequestURI())
	w(" HTTP/1.1\r\nHost: ")
	w(req.Host)
	w("\r\n")
	conn := req.Header["Connection"]
	for k, vv := range req.Header {
		if hopHeaders[k] || notForwarded[k] || (len(conn) > 0 && namedByConnection(conn, k)) {
			continue
		}
		for _, v := range vv {
			w(k)
			w(": ")
			w(v)
			w("\r\n")
		}
	}
	// ReverseProxy keeps "Te: trailers" (gRPC needs it).
	if te := req.Header["Te"]; len(te) > 0 && !namedByConnection(conn, "Te") && hasToken(te, "trailers") {
		w("Te: trailers\r\n")
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		w("X-Forwarded-For: ")
		w(ip)
		w("\r\n")
	}
	w("X-Forwarded-Host: ")
	w(req.Host)
	if req.TLS == nil {
		w("\r\nX-Forwarded-Proto: http\r\n")
	} else {
		w("\r\nX-Forwarded-Proto: https\r\n")
	}
	w("\r\n")
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(tok), token) {
				return true
			}
		}
	}
	return false
}
