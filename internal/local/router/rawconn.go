package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// rawReadSize is a raw connection's read buffer: a request head that does
// not fit goes to net/http (which takes up to 1 MB and answers 431
// past it).
const rawReadSize = 4 << 10

// rawOutSize is the client write buffer: a response is written with one
// write when it fits.
const rawOutSize = 16 << 10

// rawConn is one client connection served by the raw loop.
type rawConn struct {
	s     *Server
	c     net.Conn
	state atomic.Int32

	in   []byte // in[r:w] is read and not yet used
	r, w int
	out  []byte // pending output, written at flush

	// The client watch (see watch.go).
	watch     atomic.Int32
	waitSince atomic.Int64
	gone      atomic.Bool
	upstream  atomic.Pointer[upConn]
	watchDone chan int // the byte the watcher read, or -1
	extra     int      // a byte the watcher read and the loop has not, or -1

	req      rawRequest
	remoteIP string // X-Forwarded-For's value, "" if RemoteAddr has none
	host     []byte // scratch for the canonical host
	upHead   []byte // scratch for the process's response head
	upReq    []byte // scratch for the request to the process
	sw       sendWaiter
	upLines  [maxRespHeaders]respHeader
	dateSec  int64
	date     []byte
}

var rawConnPool = sync.Pool{New: func() any {
	return &rawConn{
		in:        make([]byte, rawReadSize),
		out:       make([]byte, 0, rawOutSize),
		host:      make([]byte, 0, 64),
		watchDone: make(chan int, 1),
	}
}}

func newRawConn(s *Server, c net.Conn) *rawConn {
	rc := rawConnPool.Get().(*rawConn)
	rc.s, rc.c = s, c
	rc.sw.init(c)
	rc.r, rc.w = 0, 0
	rc.out = rc.out[:0]
	rc.state.Store(stateIdle)
	rc.gone.Store(false)
	rc.extra = -1
	rc.remoteIP = ""
	if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		rc.remoteIP = ip
	}
	return rc
}

func (rc *rawConn) release() {
	rc.s.forget(rc)
	rc.s, rc.c = nil, nil
	rc.sw.raw = nil
	rc.req = rawRequest{}
	clear(rc.upLines[:])
	if cap(rc.out) > 4*rawOutSize {
		rc.out = make([]byte, 0, rawOutSize)
	}
	if cap(rc.upHead) > 64<<10 {
		rc.upHead = nil
	}
	rawConnPool.Put(rc)
}

// serve is the connection's loop: read a head, answer it, repeat.
func (rc *rawConn) serve() {
	defer func() {
		if rc.c != nil { // not handed off
			_ = rc.c.Close()
		}
		rc.release()
	}()
	rc.loop()
}

// resume finishes a request the event loop began and gave up (its
// answer must be streamed), then serves the connection as serve does.
// The request's in-flight series was raised by the loop.
func (rc *rawConn) resume(c *call, ch *choice, uc *upConn, end int, inFlight prometheus.Gauge, deadline time.Time) {
	defer func() {
		if rc.c != nil { // not handed off
			_ = rc.c.Close()
		}
		rc.release()
	}()
	rc.startWatch(c.start)
	rc.upstream.Store(uc)
	keep := false
	res, err := rc.awaitResponse(ch, uc)
	switch {
	case err == nil:
		keep, _ = rc.forward(c, ch, uc, &res)
		keep = keep && !rc.gone.Load()
	case errors.Is(err, errClientGone) || rc.gone.Load():
		c.code = statusClientClosed
	default:
		keep = rc.failed(c, ch, deadline, err)
	}
	// Not kept for another request: it came with the loop's bytes.
	_ = uc.conn.Close()
	rc.endWatch()
	rc.s.Router.record(c) // counted before it leaves the in-flight gauge
	inFlight.Dec()
	rc.r += end
	if !keep || rc.s.closing.Load() {
		_ = rc.flush()
		return
	}
	rc.loop()
}

// loop reads a head, answers it, and repeats until the connection is
// done or handed to net/http.
func (rc *rawConn) loop() {
	for {
		end, ok := rc.readHead()
		if !ok {
			return
		}
		if end < 0 || !parseRequestHead(rc.in[rc.r:rc.r+end], &rc.req) {
			if rc.flush() == nil {
				rc.handOff(nil)
			}
			return
		}
		// The answer stays in rc.out: readHead writes it, in one go with
		// waiting for the next request when it can.
		keep, pinned := rc.serveRequest()
		if pinned != nil {
			if rc.flush() == nil {
				rc.handOff(pinned)
			}
			return
		}
		rc.r += end
		if !keep || rc.s.closing.Load() {
			_ = rc.flush()
			return
		}
	}
}

// readHead reads until in[r:] holds a whole request head, and returns its
// length, or -1 if the head is not the raw loop's to parse (it goes to
// net/http). ok is false if the connection is done.
func (rc *rawConn) readHead() (end int, ok bool) {
	if rc.r == rc.w && rc.extra < 0 {
		rc.r, rc.w = 0, 0
	} else if len(rc.out) > 0 {
		// A pipelined request is waiting: the answer before it goes out
		// first.
		if rc.flush() != nil {
			return 0, false
		}
	}
	if rc.extra >= 0 {
		if rc.w == len(rc.in) {
			if rc.r == 0 {
				return -1, true // handOff takes the byte along
			}
			rc.w = copy(rc.in, rc.in[rc.r:rc.w])
			rc.r = 0
		}
		rc.in[rc.w] = byte(rc.extra)
		rc.w++
		rc.extra = -1
	}
	deadline := false
	defer func() {
		if deadline {
			_ = rc.c.SetReadDeadline(time.Time{})
		}
	}()
	for {
		if rc.w > rc.r {
			end, st := headEnd(rc.in[rc.r:rc.w])
			switch st {
			case headComplete:
				return end, true
			case headNotMine:
				return -1, true
			}
			if rc.w == len(rc.in) {
				if rc.r == 0 {
					return -1, true // too large for the raw loop
				}
				rc.w = copy(rc.in, rc.in[rc.r:rc.w])
				rc.r = 0
			}
			if !deadline && rc.s.ReadHeaderTimeout > 0 {
				deadline = true
				_ = rc.c.SetReadDeadline(time.Now().Add(rc.s.ReadHeaderTimeout))
			}
		} else {
			if !rc.state.CompareAndSwap(stateActive, stateIdle) && rc.state.Load() == stateClosing {
				_ = rc.flush()
				return 0, false
			}
			if len(rc.out) > 0 {
				if rc.flushAndWait() != nil {
					return 0, false
				}
			}
		}
		n, err := rc.c.Read(rc.in[rc.w:])
		if n > 0 {
			if rc.r == rc.w && !rc.state.CompareAndSwap(stateIdle, stateActive) && rc.state.Load() == stateClosing {
				return 0, false // Shutdown closed it as idle
			}
			rc.w += n
		}
		if err != nil {
			return 0, false
		}
	}
}

// handOff gives the connection, with what was read and not used, to the
// net/http server.
func (rc *rawConn) handOff(pinned *choice) {
	pending := bytes.Clone(rc.in[rc.r:rc.w])
	if rc.extra >= 0 {
		pending = append(pending, byte(rc.extra))
	}
	hc := &handoffConn{Conn: rc.c, pending: pending, pinned: pinned}
	rc.c = nil
	rc.s.forget(rc)
	if !rc.s.handoff.deliver(hc) {
		_ = hc.Conn.Close()
	}
}

// bytesString views b as a string without copying, for map lookups and
// comparisons that do not keep it; b must not change while it is used.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// serveRequest answers rc.req. keep: the connection may serve another
// request. A non-nil pinned: the request needs net/http (queueing at a
// single-threaded revision's gate); the connection goes to it with the
// choice already made.
func (rc *rawConn) serveRequest() (keep bool, pinned *choice) {
	c := call{start: time.Now()}
	var ch choice
	if done, keep, pinned := rc.route(&c, &ch); done {
		return keep, pinned
	}
	inFlight := inFlightGauge(rc.s.Router, &c)
	inFlight.Inc()
	rc.startWatch(c.start)
	keep = rc.proxy(&c, &ch)
	rc.endWatch()
	rc.s.Router.record(&c)
	inFlight.Dec()
	return keep, nil
}

// route chooses where rc.req goes. done: it is answered (an error
// answer in rc.out, recorded; keep says whether the connection stays) or,
// with a non-nil pinned, it needs net/http (queueing at a
// single-threaded revision's gate) with the choice already made. Not
// done: c.backend is the process to proxy it to.
func (rc *rawConn) route(c *call, ch *choice) (done, keep bool, pinned *choice) {
	r := rc.s.Router
	req := &rc.req
	rc.host = canonicalHostBytes(rc.host, req.host)
	var tag string
	if req.hasTag {
		tag = bytesString(req.tag)
	}
	*ch = r.choose(bytesString(rc.host), tag, rc.cookie)
	if t := ch.table; t != nil {
		c.table = t
		c.namespace, c.route = t.key.namespace, t.key.name
	}
	c.revision = ch.revision
	if ch.code != 0 {
		keep = rc.answer(c, ch, ch.code, ch.msg)
		r.record(c)
		return true, keep, nil
	}
	b, ok := r.resolver.Backend(c.namespace, c.revision)
	if !ok {
		keep = rc.answer(c, ch, http.StatusServiceUnavailable, fmt.Sprintf("revision %s has no running process yet", c.revision))
		r.record(c)
		return true, keep, nil
	}
	if b.SingleThreaded || r.opts.transport != nil {
		p := *ch
		return true, false, &p
	}
	c.backend = b
	return false, false, nil
}

// inFlightGauge is the in-flight series of c's revision.
func inFlightGauge(r *Router, c *call) prometheus.Gauge {
	if m := c.metrics(); m != nil {
		return m.get().inFlight
	}
	return r.metrics.inFlight.WithLabelValues(c.namespace, c.route, c.revision)
}

// cookie reads a request cookie as net/http does (only sticky routes
// ask, and only clients that sent cookies pay for it).
func (rc *rawConn) cookie(name string) (string, bool) {
	if !rc.req.cookies {
		return "", false
	}
	h := http.Header{}
	for _, hd := range rc.req.headers[:rc.req.n] {
		if equalFold(hd.name, "Cookie") {
			h.Add("Cookie", string(hd.value))
		}
	}
	ck, err := (&http.Request{Header: h}).Cookie(name)
	if err != nil {
		return "", false
	}
	return ck.Value, true
}

// appendHeader appends the header line "name: value" to out.
func appendHeader(out []byte, name, value string) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, "\r\n"...)
}

// answer writes an error answer as http.Error does through net/http.
func (rc *rawConn) answer(c *call, ch *choice, code int, msg string) (keep bool) {
	c.code = code
	keep = !rc.req.closeConn && !rc.s.closing.Load()
	out := append(rc.out, statusLine(code)...)
	out = append(out, "Content-Type: text/plain; charset=utf-8\r\n"...)
	if ch.revision != "" {
		out = appendHeader(out, RevisionHeader, ch.revision)
	}
	if ch.setCookie {
		out = appendHeader(out, "Set-Cookie", ch.entry.cookie)
	}
	out = append(out, "X-Content-Type-Options: nosniff\r\nDate: "...)
	out = append(out, rc.httpDate()...)
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(msg)+1), 10)
	if !keep {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	if string(rc.req.method) != http.MethodHead {
		out = append(out, msg...)
		out = append(out, '\n')
	}
	rc.out = out
	return keep
}

// flushAndWait writes the pending answer and waits for the client's
// next request (sendWaiter).
func (rc *rawConn) flushAndWait() error {
	out := rc.out
	rc.out = rc.out[:0]
	if rc.sw.raw == nil {
		_, err := rc.c.Write(out)
		return err
	}
	rest, err := rc.sw.sendWait(out)
	if len(rest) > 0 {
		// Not all written: the socket's buffer was full, or the wait
		// failed before the write (Shutdown's deadline). The answer
		// still goes out whole.
		if _, werr := rc.c.Write(rest); werr != nil {
			return werr
		}
	}
	return err
}

func (rc *rawConn) flush() error {
	if len(rc.out) == 0 {
		return nil
	}
	_, err := rc.c.Write(rc.out)
	rc.out = rc.out[:0]
	return err
}

// httpDate is the Date header's value for now, formatted once a second.
func (rc *rawConn) httpDate() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != rc.dateSec || rc.date == nil {
		rc.dateSec = sec
		rc.date = now.UTC().AppendFormat(rc.date[:0], http.TimeFormat)
	}
	return rc.date
}

// statusLines are net/http's status lines, by code.
var statusLines = func() (l [600]string) {
	for code := range l {
		if code < 100 {
			continue
		}
		if text := http.StatusText(code); text != "" {
			l[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		} else {
			l[code] = fmt.Sprintf("HTTP/1.1 %03d status code %d\r\n", code, code)
		}
	}
	return l
}()

func statusLine(code int) string { return statusLines[code] }

// proxy sends rc.req to c.backend over the lean path's pool and streams
// the answer back. It reports whether the client connection stays open.
func (rc *rawConn) proxy(c *call, ch *choice) (keep bool) {
	r := rc.s.Router
	p := r.upstreams.pool(c.backend.Addr)
	var deadline time.Time
	if c.backend.Timeout > 0 {
		deadline = time.Now().Add(c.backend.Timeout)
	}
	var (
		uc  *upConn
		res respHead
		err error
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		uc, reused, err = r.upstreams.attempt(context.Background(), p, c.backend.Addr, deadline, attempt)
		if err != nil {
			return rc.failed(c, ch, deadline, err)
		}
		rc.upstream.Store(uc)
		if rc.gone.Load() { // the watch may have missed the new connection
			_ = uc.conn.SetDeadline(aLongTimeAgo)
		}
		res, err = rc.roundTrip(c, ch, uc)
		if err == nil {
			break
		}
		_ = uc.conn.Close()
		uc = nil
		var nr errNoResponse
		if errors.Is(err, errClientGone) || rc.gone.Load() {
			c.code = statusClientClosed
			return false
		}
		if !reused || !errors.As(err, &nr) || errors.Is(err, os.ErrDeadlineExceeded) {
			return rc.failed(c, ch, deadline, err)
		}
	}
	keep, upOK := rc.forward(c, ch, uc, &res)
	if rc.gone.Load() {
		keep, upOK = false, false
	}
	if upOK {
		r.upstreams.put(p, uc)
	} else {
		_ = uc.conn.Close()
	}
	return keep
}

// errClientGone: writing to the client failed.
var errClientGone = errors.New("the client went away")

// failed answers a request that got no response: 504 past the revision's
// timeout, 502 otherwise, as leanFailed does.
func (rc *rawConn) failed(c *call, ch *choice, deadline time.Time, err error) bool {
	r := rc.s.Router
	r.opts.logger.Debug("router: proxying failed",
		"namespace", c.namespace, "route", c.route, "revision", c.revision, "addr", c.backend.Addr, "error", err)
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return rc.answer(c, ch, http.StatusGatewayTimeout, fmt.Sprintf("revision %s did not answer within its timeout of %s", c.revision, c.backend.Timeout))
	}
	return rc.answer(c, ch, http.StatusBadGateway, fmt.Sprintf("revision %s at %s did not answer: %v", c.revision, c.backend.Addr, err))
}

// appendUpstream appends rc.req as written for the revision's process:
// what writeRequest writes for the same request through net/http.
func (rc *rawConn) appendUpstream(b []byte) []byte {
	req := &rc.req
	b = append(b, req.method...)
	b = append(b, ' ')
	b = append(b, req.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.host...)
	b = append(b, "\r\n"...)
	for i := range req.n {
		h := &req.headers[i]
		if h.skip {
			continue
		}
		b = appendCanonical(b, h.name)
		b = append(b, ": "...)
		b = append(b, h.value...)
		b = append(b, "\r\n"...)
	}
	if req.teTrailers {
		b = append(b, "Te: trailers\r\n"...)
	}
	if rc.remoteIP != "" {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, rc.remoteIP...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, req.host...)
	return append(b, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
}

// appendCanonical appends a header name (a valid token) as
// textproto.CanonicalMIMEHeaderKey spells it.
func appendCanonical(out, name []byte) []byte {
	upper := true
	for _, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
		upper = c == '-'
	}
	return out
}

// roundTrip writes the request and reads the final response's head,
// relaying 1xx answers (but 101) to the client as the lean path does.
func (rc *rawConn) roundTrip(c *call, ch *choice, uc *upConn) (respHead, error) {
	rc.upReq = rc.appendUpstream(rc.upReq[:0])
	uc.readLimit = maxResponseHeaderBytes
	rest := rc.upReq
	if uc.sw.raw != nil && uc.br.Buffered() == 0 {
		var err error
		if rest, err = uc.sw.sendWait(rest); err != nil {
			return respHead{}, errNoResponse{err}
		}
	}
	if len(rest) > 0 {
		if _, err := uc.conn.Write(rest); err != nil {
			return respHead{}, errNoResponse{err}
		}
	}
	if _, err := uc.br.Peek(1); err != nil {
		return respHead{}, errNoResponse{err}
	}
	return rc.awaitResponse(ch, uc)
}

// awaitResponse reads the final response's head from uc, relaying 1xx
// answers (but 101) to the client.
func (rc *rawConn) awaitResponse(ch *choice, uc *upConn) (respHead, error) {
	for {
		res, err := rc.readRespHead(uc.br)
		if err != nil {
			return res, err
		}
		switch {
		case res.code == http.StatusSwitchingProtocols:
			return res, errors.New("101 Switching Protocols to a request that asked for no upgrade")
		case res.code < 200:
			rc.write1xx(ch, &res)
			if err := rc.flush(); err != nil {
				return res, errClientGone
			}
			continue
		}
		uc.readLimit = math.MaxInt64
		return res, nil
	}
}

// write1xx relays an informational answer as net/http writes one for
// the lean path: the process's header (but framing) with the header the
// router had set so far.
func (rc *rawConn) write1xx(ch *choice, res *respHead) {
	out := append(rc.out, statusLine(res.code)...)
	out = append(out, "Elafros-Revision: "...)
	out = append(out, ch.revision...)
	out = append(out, "\r\n"...)
	if ch.setCookie {
		out = append(out, "Set-Cookie: "...)
		out = append(out, ch.entry.cookie...)
		out = append(out, "\r\n"...)
		// The lean path's header map is cleared after a 1xx: the cookie
		// goes out with it only.
		ch.setCookie = false
	}
	for i := range res.n {
		h := &rc.upLines[i]
		name := rc.upHead[h.name0:h.name1]
		if equalFold(name, "Content-Length") || equalFold(name, "Transfer-Encoding") {
			continue
		}
		out = appendCanonical(out, name)
		out = append(out, ": "...)
		out = append(out, rc.upHead[h.val0:h.val1]...)
		out = append(out, "\r\n"...)
	}
	rc.out = append(out, "\r\n"...)
}

// errDoubt: the process's answer is in a form the raw path does not take
// apart; it fails the request with 502 rather than guess.
type errDoubt struct{ what string }

func (e errDoubt) Error() string { return "the router cannot read the response: " + e.what }
