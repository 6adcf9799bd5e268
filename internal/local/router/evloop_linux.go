//go:build linux

package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// The event loop. One goroutine per connection, even one that makes only
// the four system calls a proxied request needs, pays Go's scheduler for
// every wait: the goroutine parks, the poller finds it ready, another
// thread is woken to run it. Under wrk that was a fifth of the router's
// CPU (findRunnable, futex, netpoll), and most of what nginx, which waits
// for all its connections in one epoll_wait, does not pay. An evLoop is
// what nginx's worker is: one goroutine holding an epoll instance of its
// own, edge-triggered, with every client connection and every connection
// to a revision's process it owns; each epoll_wait hands it all the
// sockets that are ready, and it reads, routes, writes the request,
// parses and writes the answer without parking anything.
//
// It takes only the common case, as the raw loop does, through the same
// code (parseRequestHead, route, appendUpstream, readRespHead, forward),
// and gives the connection to the raw loop's goroutine, with every byte
// it has read, for anything else: a request head it does not take, an
// answer that must be streamed (chunked, close-delimited, 1xx, larger
// than evMaxAnswer), a process addressed by name. From then on the
// connection stays with the goroutine, as it would have without loops.

const (
	// evMaxAnswer bounds an answer (head and body) the loop forwards
	// whole; a larger one is streamed by the raw loop.
	evMaxAnswer = 64 << 10
	// evSweep is how often waiting requests are checked against their
	// revision's timeout and partial heads against ReadHeaderTimeout.
	evSweep = 50 * time.Millisecond
	// evDialTimeout is the lean path's dial timeout.
	evDialTimeout = 5 * time.Second
	// evUpRead is the first read buffer of a connection to a process.
	evUpRead = 4 << 10
	// evRawWait is evLoop.rawWait where there are Ps to spare, in ms.
	evRawWait = 2
)

// evEvents is what the loop waits for on each socket: edge-triggered
// reading, writing and the peer's close (EPOLLET is bit 31, which the
// syscall package's constant overflows in a uint32).
const evEvents = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | 1<<31

// startLoops starts the server's event loops, if it has any.
func (s *Server) startLoops() {
	n := s.EventLoops
	if n < 0 {
		return
	}
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	for range n {
		l, err := newEvLoop(s)
		if err != nil {
			// No loop is a slower server, not a broken one.
			s.Router.opts.logger.Warn("router: no event loop, serving a goroutine per connection", "error", err)
			break
		}
		liveLoops.Add(1)
		l.rawWait.Store(rawWait())
		s.loops = append(s.loops, l)
		go l.run()
	}
}

// liveLoops counts the event loops running in the process, every
// server's: together they may hold as many Ps as there are loops.
var liveLoops atomic.Int32

// rawWait is evLoop.rawWait for the loops running now.
func rawWait() int32 { return rawWaitFor(runtime.GOMAXPROCS(0), int(liveLoops.Load())) }

// rawWaitFor is evLoop.rawWait where GOMAXPROCS is procs and loops event
// loops run: none unless a P is left to the rest of the process.
func rawWaitFor(procs, loops int) int32 {
	if procs <= loops {
		return 0
	}
	return evRawWait
}

// adopt gives the accepted connection rc to an event loop, and reports
// whether one took it.
func (s *Server) adopt(rc *rawConn) bool {
	if len(s.loops) == 0 || s.closing.Load() {
		return false
	}
	sc, ok := rc.c.(*net.TCPConn)
	if !ok {
		return false
	}
	l := s.loops[s.nextLoop.Add(1)%uint32(len(s.loops))]
	if l.gone() { // stopped by an epoll error: goroutines serve on
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	_ = raw.Control(func(f uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if e == 0 {
			fd = int(r)
		}
	})
	if fd < 0 {
		return false
	}
	// The duplicate keeps the socket: closing the net.Conn only takes
	// it out of Go's poller.
	_ = rc.c.Close()
	rc.c, rc.sw.raw = nil, nil
	if !l.add(fd, rc) {
		// The loop stopped since gone (the server is closing, or an
		// epoll error): the connection ends here.
		_ = syscall.Close(fd)
		rc.release()
	}
	return true
}

// loopConns is how many client connections the loops hold.
func (s *Server) loopConns() int {
	n := 0
	for _, l := range s.loops {
		n += int(l.owned.Load())
	}
	return n
}

// wakeLoops has each loop look at the server's state (closing).
func (s *Server) wakeLoops() {
	for _, l := range s.loops {
		l.wake()
	}
}

// stopLoops ends the loops; with now, their connections are closed at
// once, otherwise they end when their last connection does.
func (s *Server) stopLoops(now bool) {
	for _, l := range s.loops {
		if now {
			l.closeAll.Store(true)
		}
		l.stopping.Store(true)
		l.wake()
	}
}

// waitLoops waits until the server's loops have returned, or ctx is done.
func (s *Server) waitLoops(ctx context.Context) error {
	for _, l := range s.loops {
		select {
		case <-l.returned:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

type evLoop struct {
	s    *Server
	epfd int
	pipe [2]int // a byte on pipe[1] wakes the loop

	mu   sync.Mutex
	adds []evAdd
	// exited: the loop is gone and its pipe closed (its numbers may
	// already name other files).
	exited bool

	owned    atomic.Int32
	stopping atomic.Bool
	closeAll atomic.Bool
	returned chan struct{} // closed when run has returned

	// rawWait is how long, in milliseconds, the loop waits for events
	// before a blocking wait, without leaving the Go scheduler's running
	// state: its P stays with it. A blocking system call hands the P off
	// once other work wants it (sysmon takes it after 20 µs), and the
	// loop then needs a P again to go on, sometimes only after another
	// thread has run: on a busy machine, a tail in the latency of every
	// request in flight. So while events come within rawWait of each
	// other, the loop never goes through the scheduler. It costs no CPU
	// (the thread sleeps in epoll_pwait) and one P for at most rawWait;
	// a stop-the-world or preemption signal ends the wait early (EINTR;
	// with GODEBUG=asyncpreemptoff=1 a stop-the-world waits for it).
	// 0 when the loops would hold every P (GOMAXPROCS not above the
	// number of loops in the process, every server's), looked at again at
	// each sweep.
	rawWait atomic.Int32

	// Owned by the loop's goroutine.
	items     []evItem // by fd
	gen       int32
	clients   map[*evClient]struct{}
	pools     map[string]*evPool
	idleUps   int
	events    [256]syscall.EpollEvent
	nextSweep int64
	// now is when the last epoll_wait returned: the start of the
	// requests read in its batch, and the sweep's clock.
	now time.Time
	rd  bytes.Reader
	br  *bufio.Reader
	fwd upConn
}

type evAdd struct {
	fd int
	rc *rawConn
}

// evItem is what a file descriptor is to the loop; gen tells a stale
// event (for an fd closed and reused within one batch) from a live one.
type evItem struct {
	gen int32
	cl  *evClient
	up  *evUp
}

// evClient is a client connection the loop holds. The raw loop's rawConn
// holds its buffers and request.
type evClient struct {
	fd int
	rc *rawConn

	readable bool // the socket may have bytes the loop has not read
	// hup: epoll reported the client's end of sending (or an error), so
	// a short read is not the end of what there is to read: the end of
	// stream after it raises no new edge.
	hup       bool
	eof       bool // the client closed or reset it
	closed    bool
	headSince int64

	// The request at its process.
	busy     bool
	end      int // its head's length
	c        call
	ch       choice
	inFlight prometheus.Gauge
	deadline time.Time
	up       *evUp
	attempt  int

	sent       int  // how much of rc.out is written
	closeAfter bool // close once rc.out is written
}

// evUp is a connection to a revision's process.
type evUp struct {
	fd         int
	pool       *evPool
	buf        []byte
	out        []byte // request bytes not yet written
	cl         *evClient
	connecting bool
	readable   bool  // an answer may wait while the request is still written
	hup        bool  // as evClient.hup
	since      int64 // dial start, or when it went idle
	reused     bool
	gen        uint64
	eof        bool
}

type evPool struct {
	addr string
	sa   syscall.Sockaddr
	ap   netip.AddrPort
	idle []*evUp
}

func newEvLoop(s *Server) (*evLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	l := &evLoop{s: s, epfd: epfd, clients: map[*evClient]struct{}{}, pools: map[string]*evPool{}, returned: make(chan struct{})}
	if err := syscall.Pipe2(l.pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.pipe[0], &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.pipe[0])}); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l.br = bufio.NewReaderSize(&l.rd, 4<<10)
	l.fwd.br = l.br
	return l, nil
}

func (l *evLoop) closeFDs() {
	_ = syscall.Close(l.pipe[0])
	_ = syscall.Close(l.pipe[1])
	_ = syscall.Close(l.epfd)
}

func (l *evLoop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.exited {
		var b = [1]byte{1}
		_, _ = syscall.Write(l.pipe[1], b[:]) // EAGAIN: a wake is pending anyway
	}
}

// gone reports whether the loop has exited.
func (l *evLoop) gone() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exited
}

// add gives the loop a client connection; false if the loop is gone
// (fd is then the caller's).
func (l *evLoop) add(fd int, rc *rawConn) bool {
	l.mu.Lock()
	if l.exited {
		l.mu.Unlock()
		return false
	}
	l.owned.Add(1)
	l.adds = append(l.adds, evAdd{fd, rc})
	l.mu.Unlock()
	l.wake()
	return true
}

// register adds fd to the epoll set as it, edge-triggered for reading,
// writing and the peer's close, as Go's poller does.
func (l *evLoop) register(fd int, it evItem) error {
	for fd >= len(l.items) {
		l.items = append(l.items, evItem{})
	}
	l.gen++
	it.gen = l.gen
	l.items[fd] = it
	ev := syscall.EpollEvent{Events: evEvents, Fd: int32(fd), Pad: it.gen}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.items[fd] = evItem{}
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (l *evLoop) run() {
	defer close(l.returned) // after exit
	defer l.exit()
	for {
		timeout := -1
		if len(l.clients) > 0 || l.idleUps > 0 {
			timeout = int(evSweep / time.Millisecond)
		}
		// Under load the next events are often there already: a
		// non-blocking look costs no trip through the scheduler's
		// syscall bookkeeping (entersyscall/exitsyscall, and the P
		// handed off while the wait blocks). If not, they usually come
		// within a millisecond: a short wait that keeps the loop's P
		// (see rawWait) before the wait that gives it up.
		n, err := epollPoll(l.epfd, l.events[:], 0)
		if wait := int(l.rawWait.Load()); n == 0 && err == nil && wait > 0 {
			n, err = epollPoll(l.epfd, l.events[:], wait)
		}
		if n == 0 && err == nil {
			n, err = syscall.EpollWait(l.epfd, l.events[:], timeout)
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			l.s.Router.opts.logger.Error("router: event loop stopped", "error", os.NewSyscallError("epoll_wait", err))
			return
		}
		l.now = time.Now()
		for i := range max(n, 0) {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.pipe[0] {
				l.woken()
				continue
			}
			if fd >= len(l.items) || l.items[fd].gen != ev.Pad {
				continue
			}
			switch it := l.items[fd]; {
			case it.cl != nil:
				l.clientEvent(it.cl, ev.Events)
			case it.up != nil:
				l.upEvent(it.up, ev.Events)
			}
		}
		if l.closeAll.Load() {
			for cl := range l.clients {
				l.closeClient(cl)
			}
		}
		if l.stopping.Load() && len(l.clients) == 0 && l.pendingAdds() == 0 {
			return
		}
		if now := l.now.UnixNano(); now >= l.nextSweep {
			l.nextSweep = now + int64(evSweep)
			// GOMAXPROCS follows the CPU limit of the process's cgroup
			// as it changes.
			l.rawWait.Store(rawWait())
			l.sweep(now)
		}
	}
}

func (l *evLoop) pendingAdds() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.adds)
}

// exit closes what the loop still holds.
func (l *evLoop) exit() {
	liveLoops.Add(-1)
	for cl := range l.clients {
		l.closeClient(cl)
	}
	l.mu.Lock()
	adds := l.adds
	l.adds = nil
	l.exited = true
	l.closeFDs()
	l.mu.Unlock()
	for _, a := range adds {
		_ = syscall.Close(a.fd)
		a.rc.release()
		l.owned.Add(-1)
	}
	for _, p := range l.pools {
		for _, up := range p.idle {
			_ = syscall.Close(up.fd)
		}
		p.idle = nil
	}
	l.idleUps = 0
}

// woken takes the new connections and looks at the server's state.
func (l *evLoop) woken() {
	var b [64]byte
	for {
		n, _ := syscall.Read(l.pipe[0], b[:])
		if n < len(b) {
			break
		}
	}
	l.mu.Lock()
	adds := l.adds
	l.adds = nil
	l.mu.Unlock()
	for _, a := range adds {
		cl := &evClient{fd: a.fd, rc: a.rc, readable: true}
		if err := l.register(a.fd, evItem{cl: cl}); err != nil {
			_ = syscall.Close(a.fd)
			a.rc.release()
			l.owned.Add(-1)
			continue
		}
		l.clients[cl] = struct{}{}
		l.advance(cl)
	}
	if l.s.closing.Load() {
		for cl := range l.clients {
			l.advance(cl) // closes it if idle
		}
	}
}

func (l *evLoop) clientEvent(cl *evClient, events uint32) {
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		cl.readable = true
	}
	if events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		cl.hup = true
	}
	if events&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 && cl.sent < len(cl.rc.out) {
		if !l.writeClient(cl) {
			return
		}
	}
	l.advance(cl)
}

// advance reads what the client sent and answers what can be answered,
// until it must wait for the client, its process or the socket.
func (l *evLoop) advance(cl *evClient) {
	rc := cl.rc
	for !cl.closed {
		if cl.readable && !cl.eof {
			l.readClient(cl)
		}
		if cl.eof && cl.busy {
			l.clientGone(cl)
			return
		}
		if cl.busy || cl.sent < len(rc.out) {
			return
		}
		if !l.next(cl) {
			return
		}
	}
}

// readClient reads until the socket has nothing more or the buffer is
// full (then readable stays set).
func (l *evLoop) readClient(cl *evClient) {
	rc := cl.rc
	for {
		if rc.w == len(rc.in) {
			if cl.busy || rc.r == 0 {
				return
			}
			rc.w = copy(rc.in, rc.in[rc.r:rc.w])
			rc.r = 0
		}
		space := len(rc.in) - rc.w
		n, errno := rawRead(cl.fd, rc.in[rc.w:])
		switch {
		case n > 0:
			rc.w += n
			if n < space && !cl.hup {
				cl.readable = false
				return
			}
		case errno == syscall.EAGAIN:
			cl.readable = false
			return
		case errno == syscall.EINTR:
		default: // 0: the client closed its side; or an error
			cl.eof, cl.readable = true, false
			return
		}
	}
}

// next takes the next request in the buffer. It reports whether it did
// (the caller goes on) or must wait for more.
func (l *evLoop) next(cl *evClient) bool {
	rc := cl.rc
	if rc.r == rc.w {
		rc.r, rc.w = 0, 0
		cl.headSince = 0
		if cl.eof || cl.closeAfter || l.s.closing.Load() {
			l.closeClient(cl)
		}
		return false
	}
	end, st := headEnd(rc.in[rc.r:rc.w])
	switch st {
	case headIncomplete:
		switch {
		case cl.eof:
			l.closeClient(cl)
		case rc.w == len(rc.in) && rc.r == 0:
			l.toGoroutine(cl) // too large for the raw loop: net/http's
		case rc.w == len(rc.in):
			rc.w = copy(rc.in, rc.in[rc.r:rc.w])
			rc.r = 0
			return true
		case cl.headSince == 0:
			cl.headSince = l.now.UnixNano()
		}
		return false
	case headNotMine:
		l.toGoroutine(cl)
		return false
	}
	if !parseRequestHead(rc.in[rc.r:rc.r+end], &rc.req) {
		l.toGoroutine(cl)
		return false
	}
	cl.headSince = 0
	cl.c = call{start: l.now}
	done, keep, pinned := rc.route(&cl.c, &cl.ch)
	switch {
	case pinned != nil:
		l.toNetHTTP(cl, pinned)
		return false
	case done:
		rc.r += end
		return l.answered(cl, keep)
	}
	p := l.pool(cl.c.backend.Addr)
	if p == nil { // not an IP address: net/http's dialer resolves it
		ch := cl.ch
		l.toNetHTTP(cl, &ch)
		return false
	}
	cl.busy, cl.end, cl.attempt = true, end, 0
	cl.inFlight = inFlightGauge(l.s.Router, &cl.c)
	cl.inFlight.Inc()
	cl.deadline = time.Time{}
	if t := cl.c.backend.Timeout; t > 0 {
		cl.deadline = cl.c.start.Add(t)
	}
	rc.upReq = rc.appendUpstream(rc.upReq[:0])
	l.send(cl, p)
	return !cl.busy
}

// answered writes the answer in rc.out; it reports whether the
// connection may go on to the next request.
func (l *evLoop) answered(cl *evClient, keep bool) bool {
	if !keep {
		cl.closeAfter = true
	}
	if !l.writeClient(cl) {
		return false
	}
	if cl.sent < len(cl.rc.out) {
		return false // EPOLLOUT goes on
	}
	if cl.closeAfter {
		l.closeClient(cl)
		return false
	}
	return true
}

// writeClient writes the rest of rc.out; false: the client is gone (and
// closed).
func (l *evLoop) writeClient(cl *evClient) bool {
	rc := cl.rc
	for cl.sent < len(rc.out) {
		n, errno := rawWrite(cl.fd, rc.out[cl.sent:])
		switch {
		case n > 0:
			cl.sent += n
		case errno == syscall.EAGAIN:
			return true
		case errno == syscall.EINTR:
		default:
			l.closeClient(cl)
			return false
		}
	}
	rc.out = rc.out[:0]
	cl.sent = 0
	if cl.closeAfter && !cl.busy {
		l.closeClient(cl)
		return false
	}
	return true
}

// pool is the loop's pool of connections to addr; nil if addr is not an
// IP address and port.
func (l *evLoop) pool(addr string) *evPool {
	if p := l.pools[addr]; p != nil {
		return p
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil
	}
	p := &evPool{addr: addr, ap: ap}
	if a := ap.Addr().Unmap(); a.Is4() {
		p.sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		p.sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	l.pools[addr] = p
	return p
}

// send gives cl's request to an idle connection of p, or a new one.
func (l *evLoop) send(cl *evClient, p *evPool) {
	gen := l.s.Router.upstreams.gen.Load()
	var up *evUp
	for len(p.idle) > 0 && up == nil {
		u := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		l.idleUps--
		if u.gen != gen { // Router.Close closed the idle ones since
			l.closeUp(u)
			continue
		}
		up = u
		up.reused = true
	}
	if up == nil {
		var err error
		if up, err = l.dial(p); err != nil {
			l.failed(cl, nil, err, false)
			return
		}
	}
	up.cl, cl.up = cl, up
	up.buf = up.buf[:0]
	up.out = cl.rc.upReq
	if !up.connecting {
		l.writeUp(up)
	}
}

// dial starts a connection to p's process.
func (l *evLoop) dial(p *evPool) (*evUp, error) {
	family := syscall.AF_INET
	if _, ok := p.sa.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	fail := func(op string, err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(p.ap), Err: os.NewSyscallError(op, err)}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fail("socket", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	up := &evUp{fd: fd, pool: p, buf: make([]byte, 0, evUpRead), since: l.now.UnixNano(), gen: l.s.Router.upstreams.gen.Load()}
	switch err := syscall.Connect(fd, p.sa); err {
	case nil:
	case syscall.EINPROGRESS, syscall.EINTR:
		up.connecting = true
	default:
		_ = syscall.Close(fd)
		return nil, fail("connect", err)
	}
	if err := l.register(fd, evItem{up: up}); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	return up, nil
}

func (l *evLoop) upEvent(up *evUp, events uint32) {
	cl := up.cl
	if cl == nil {
		if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			// Idle: the process closed it (or said something unasked).
			l.dropIdle(up)
		}
		return
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		up.readable = true
	}
	if events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		up.hup = true
	}
	if up.connecting {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if e, err := syscall.GetsockoptInt(up.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || e != 0 {
			if err == nil {
				err = syscall.Errno(e)
			}
			l.failed(cl, up, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(up.pool.ap), Err: os.NewSyscallError("connect", err)}, false)
			return
		}
		up.connecting = false
	}
	if len(up.out) > 0 && !l.writeUp(up) {
		l.advance(cl)
		return
	}
	if up.readable && len(up.out) == 0 {
		l.readUp(up)
	}
	l.advance(cl)
}

// writeUp writes the rest of the request; false: the request failed.
func (l *evLoop) writeUp(up *evUp) bool {
	for len(up.out) > 0 {
		n, errno := rawWrite(up.fd, up.out)
		switch {
		case n > 0:
			up.out = up.out[n:]
		case errno == syscall.EAGAIN:
			return true
		case errno == syscall.EINTR:
		default:
			l.failed(up.cl, up, &net.OpError{Op: "write", Net: "tcp", Addr: net.TCPAddrFromAddrPort(up.pool.ap), Err: os.NewSyscallError("write", errno)}, true)
			return false
		}
	}
	return true
}

// readUp reads the process's answer and forwards it once it is whole.
func (l *evLoop) readUp(up *evUp) {
	cl := up.cl
	up.readable = false
	for {
		if len(up.buf) == cap(up.buf) {
			if cap(up.buf) >= evMaxAnswer {
				break // too large to take whole: the answer decides below
			}
			up.buf = slices.Grow(up.buf, min(2*cap(up.buf), evMaxAnswer)-len(up.buf))
		}
		space := cap(up.buf) - len(up.buf)
		n, errno := rawRead(up.fd, up.buf[len(up.buf):cap(up.buf)])
		if n > 0 {
			up.buf = up.buf[:len(up.buf)+n]
			if n < space && !up.hup {
				break
			}
			continue
		}
		if errno == syscall.EAGAIN {
			break
		}
		if errno == syscall.EINTR {
			continue
		}
		up.eof = true
		break
	}
	l.answer(cl, up)
}

// answer forwards the process's answer if it is all there.
func (l *evLoop) answer(cl *evClient, up *evUp) {
	rc := cl.rc
	if len(up.buf) == 0 {
		if up.eof {
			l.failed(cl, up, io.EOF, true)
		}
		return
	}
	l.rd.Reset(up.buf)
	l.br.Reset(&l.rd)
	res, err := rc.readRespHead(l.br)
	if err != nil {
		var doubt errDoubt
		switch {
		case errors.As(err, &doubt):
			l.failed(cl, up, err, false)
		case up.eof:
			l.failed(cl, up, err, false)
		case len(up.buf) >= evMaxAnswer:
			l.toGoroutineMid(cl, up) // a head this large: let the raw loop read it
		}
		return // else: not all of the head yet
	}
	headLen := len(up.buf) - l.rd.Len() - l.br.Buffered()
	if res.code == http.StatusSwitchingProtocols {
		l.failed(cl, up, errors.New("101 Switching Protocols to a request that asked for no upgrade"), false)
		return
	}
	whole := headLen
	switch {
	case res.code < 200, res.chunked && bodyAllowedForStatus(res.code) && string(rc.req.method) != http.MethodHead:
		l.toGoroutineMid(cl, up) // 1xx or chunked: streamed
		return
	case string(rc.req.method) == http.MethodHead || !bodyAllowedForStatus(res.code):
	case res.contentLength < 0:
		l.toGoroutineMid(cl, up) // close-delimited: streamed
		return
	default:
		whole += int(res.contentLength)
		if res.contentLength > evMaxAnswer || whole > evMaxAnswer {
			l.toGoroutineMid(cl, up)
			return
		}
	}
	if len(up.buf) < whole {
		if up.eof { // cut short: the client's connection is cut as well
			cl.c.code = res.code
			l.closeUp(up)
			l.done(cl, false)
			l.closeClient(cl)
			return
		}
		if cap(up.buf) < whole {
			up.buf = slices.Grow(up.buf, whole-len(up.buf))
		}
		return
	}
	// The whole answer is in up.buf: forward writes it into rc.out in
	// one piece (it never needs to flush with this much room).
	room := whole + 1024 + len(cl.ch.revision)
	if cl.ch.setCookie {
		room += len(cl.ch.entry.cookie)
	}
	rc.out = slices.Grow(rc.out, room)
	keep, upOK := rc.forward(&cl.c, &cl.ch, &l.fwd, &res)
	upOK = upOK && len(up.buf) == whole && !up.eof
	up.cl, cl.up = nil, nil
	if upOK {
		up.pool.idle = append(up.pool.idle, up)
		l.idleUps++
		up.since = l.now.UnixNano()
		up.reused = false
	} else {
		l.closeUp(up)
	}
	l.done(cl, keep)
	l.answered(cl, keep)
}

// done ends cl's request at its process: metrics, and the buffer moves
// past its head.
func (l *evLoop) done(cl *evClient, keep bool) {
	cl.busy = false
	l.s.Router.record(&cl.c) // counted before it leaves the in-flight gauge
	cl.inFlight.Dec()
	cl.inFlight = nil
	cl.rc.r += cl.end
	cl.end = 0
	if !keep {
		cl.closeAfter = true
	}
}

// failed ends a request that got no answer: once more on a new
// connection if a reused one failed before answering (as the lean path
// does), else 504 past the timeout and 502 otherwise.
func (l *evLoop) failed(cl *evClient, up *evUp, err error, noResponse bool) {
	reused := up != nil && up.reused
	if up != nil {
		cl.up, up.cl = nil, nil
		l.closeUp(up)
	}
	if noResponse && reused && cl.attempt == 0 && (cl.deadline.IsZero() || time.Now().Before(cl.deadline)) {
		cl.attempt++
		p := l.pool(cl.c.backend.Addr)
		l.send(cl, p)
		return
	}
	rc := cl.rc
	keep := rc.failed(&cl.c, &cl.ch, cl.deadline, err)
	l.done(cl, keep)
	l.answered(cl, keep)
}

// clientGone ends a request whose client went away: its process's
// connection is cut, and it is recorded as 499.
func (l *evLoop) clientGone(cl *evClient) {
	if up := cl.up; up != nil {
		cl.up, up.cl = nil, nil
		l.closeUp(up)
	}
	cl.c.code = statusClientClosed
	l.done(cl, false)
	l.closeClient(cl)
}

// sweep fails requests past their revision's timeout or their dial's,
// closes clients past ReadHeaderTimeout in a head, and connections to
// processes idle for idleTimeout.
func (l *evLoop) sweep(now int64) {
	for cl := range l.clients {
		switch {
		case cl.busy && cl.up != nil && cl.up.connecting && now-cl.up.since > int64(evDialTimeout):
			l.failed(cl, cl.up, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(cl.up.pool.ap), Err: os.ErrDeadlineExceeded}, false)
			l.advance(cl)
		case cl.busy && !cl.deadline.IsZero() && now >= cl.deadline.UnixNano():
			l.failed(cl, cl.up, os.ErrDeadlineExceeded, false)
			l.advance(cl)
		case !cl.busy && cl.headSince != 0 && l.s.ReadHeaderTimeout > 0 && now-cl.headSince >= int64(l.s.ReadHeaderTimeout):
			l.closeClient(cl)
		}
	}
	if l.idleUps == 0 {
		return
	}
	cutoff := now - int64(idleTimeout)
	gen := l.s.Router.upstreams.gen.Load()
	for addr, p := range l.pools {
		keep := p.idle[:0]
		for _, up := range p.idle {
			if up.since < cutoff || up.gen != gen {
				l.closeUp(up)
				l.idleUps--
			} else {
				keep = append(keep, up)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		if len(keep) == 0 {
			delete(l.pools, addr)
		}
	}
}

// dropIdle closes an idle connection to a process.
func (l *evLoop) dropIdle(up *evUp) {
	p := up.pool
	if i := slices.Index(p.idle, up); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
		l.idleUps--
	}
	l.closeUp(up)
}

func (l *evLoop) closeUp(up *evUp) {
	if up.fd < 0 {
		return
	}
	l.items[up.fd] = evItem{}
	_ = syscall.Close(up.fd)
	up.fd = -1
}

func (l *evLoop) closeClient(cl *evClient) {
	if cl.closed {
		return
	}
	if cl.busy {
		cl.c.code = statusClientClosed
		if up := cl.up; up != nil {
			cl.up, up.cl = nil, nil
			l.closeUp(up)
		}
		l.done(cl, false)
	}
	cl.closed = true
	l.items[cl.fd] = evItem{}
	_ = syscall.Close(cl.fd)
	delete(l.clients, cl)
	cl.rc.release()
	cl.rc = nil
	l.owned.Add(-1)
}

// detach takes fd out of the loop as a net.Conn of Go's poller.
func (l *evLoop) detach(fd int) (net.Conn, error) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	l.items[fd] = evItem{}
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	_ = f.Close()
	return c, err
}

// release gives cl's connection up to the goroutine world: it leaves the
// loop, and rc, with a net.Conn, joins the server's connections.
func (l *evLoop) release(cl *evClient) (*rawConn, bool) {
	rc := cl.rc
	c, err := l.detach(cl.fd)
	cl.closed = true
	delete(l.clients, cl)
	l.owned.Add(-1)
	if err != nil {
		l.s.Router.opts.logger.Warn("router: handing a connection over failed", "error", err)
		rc.release()
		return nil, false
	}
	rc.c = c
	rc.sw.init(c)
	if rc.r < rc.w {
		rc.state.Store(stateActive)
	}
	l.s.mu.Lock()
	l.s.conns[rc] = struct{}{}
	l.s.mu.Unlock()
	return rc, true
}

// toGoroutine gives a connection between requests to the raw loop.
func (l *evLoop) toGoroutine(cl *evClient) {
	if rc, ok := l.release(cl); ok {
		go rc.serve()
	}
}

// toNetHTTP gives a connection whose request is routed to pinned to
// net/http.
func (l *evLoop) toNetHTTP(cl *evClient, pinned *choice) {
	if rc, ok := l.release(cl); ok {
		go func() {
			rc.handOff(pinned)
			rc.release()
		}()
	}
}

// toGoroutineMid gives a request whose answer must be streamed, with its
// process's connection and what it has answered so far, to the raw loop.
func (l *evLoop) toGoroutineMid(cl *evClient, up *evUp) {
	c, ch, end, inFlight, deadline := cl.c, cl.ch, cl.end, cl.inFlight, cl.deadline
	upc, err := l.detach(up.fd)
	up.fd = -1
	if err != nil {
		l.failed(cl, nil, err, false)
		return
	}
	rc, ok := l.release(cl)
	if ok {
		rc.state.Store(stateActive)
	} else {
		_ = upc.Close()
		c.code = statusClientClosed
		l.s.Router.record(&c)
		inFlight.Dec()
		return
	}
	uc := &upConn{conn: &handoffConn{Conn: upc, pending: bytes.Clone(up.buf)}, readLimit: maxResponseHeaderBytes}
	uc.br = bufio.NewReaderSize(limitedReader{uc}, 4<<10)
	if !deadline.IsZero() {
		_ = upc.SetDeadline(deadline)
	}
	go rc.resume(&c, &ch, uc, end, inFlight, deadline)
}

// epollPoll is epoll_wait as a raw system call, waiting at most ms
// milliseconds (0 never blocks): the goroutine keeps its P meanwhile (see
// evLoop.rawWait).
func epollPoll(epfd int, events []syscall.EpollEvent, ms int) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(ms), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}
