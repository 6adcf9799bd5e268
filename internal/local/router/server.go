package router

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves a Router on listeners, HTTP/1.1 in plain text. The common
// request (see rawhead.go) is read, routed and proxied by a loop of the
// router's own, one goroutine per client connection doing both sides of
// the round trip; any connection whose next request is anything else is
// handed, with the bytes already read, to a net/http server running the
// Router's ServeHTTP, which keeps it from then on. The two give the same
// answers (TestRawServerParity).
//
// Profiling the router under wrk showed net/http's server side costing
// about as much CPU per request as the whole proxying: a background read
// goroutine per request, a header map, an *http.Request, a context and a
// response writer per request, and a flush of its own. The raw loop reads
// a request with one read, writes the answer with one write, and
// allocates nothing on its path.
type Server struct {
	// Router serves the requests.
	Router *Router
	// ReadHeaderTimeout bounds the time from the first byte of a
	// request to the end of its head; 0: no bound.
	ReadHeaderTimeout time.Duration
	// EventLoops is how many event loops (evloop_linux.go) serve the
	// connections: 0 is one per two CPUs (GOMAXPROCS), at least one;
	// negative is none, a goroutine per connection. Only Linux has
	// them.
	EventLoops int

	loops    []*evLoop
	nextLoop atomic.Uint32

	once     sync.Once
	handoff  *handoffListener
	fallback *http.Server
	fbDone   chan struct{}

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*rawConn]struct{}
	closing   atomic.Bool
	stopWatch chan struct{}
	stopOnce  sync.Once
}

func (s *Server) init() {
	s.once.Do(func() {
		s.handoff = &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})}
		s.fallback = &http.Server{
			Handler:           s.Router,
			ReadHeaderTimeout: s.ReadHeaderTimeout,
			// A handed-off connection's first request may come with the
			// revision already chosen (see handoffConn).
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if hc, ok := c.(*handoffConn); ok && hc.pinned != nil {
					return context.WithValue(ctx, pinnedKey{}, hc)
				}
				return ctx
			},
		}
		s.fbDone = make(chan struct{})
		s.stopWatch = make(chan struct{})
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*rawConn]struct{}{}
		go s.watchClients() // after conns is made: it reads it
		s.startLoops()
		go func() {
			defer close(s.fbDone)
			_ = s.fallback.Serve(s.handoff)
		}()
	})
}

// Serve accepts connections on l until Shutdown or Close, and returns
// http.ErrServerClosed then; it closes l.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return http.ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		_ = l.Close()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			// As net/http does: ride out running out of file
			// descriptors rather than stop serving.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		rc := newRawConn(s, c)
		if s.adopt(rc) {
			continue
		}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = c.Close()
			return http.ErrServerClosed
		}
		s.conns[rc] = struct{}{}
		s.mu.Unlock()
		go rc.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, lets the requests in flight finish (closing
// each connection once its request is answered, idle ones at once), then
// does the same for the connections net/http holds, as
// http.Server.Shutdown does. It returns ctx's error if ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closeListeners()
	// Poll as net/http does: from 1 ms, doubling, up to 500 ms.
	wait := time.Millisecond
	for !s.closeIdle() {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = s.fallback.Close()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	err := s.fallback.Shutdown(ctx)
	s.stopLoops(false)
	if werr := s.waitLoops(ctx); err == nil {
		err = werr
	}
	s.handoff.close()
	s.stopOnce.Do(func() { close(s.stopWatch) })
	return err
}

// Close closes every listener and connection at once, and returns once
// the event loops have.
func (s *Server) Close() error {
	s.init()
	s.closeListeners()
	s.mu.Lock()
	for rc := range s.conns {
		_ = rc.c.Close()
	}
	s.mu.Unlock()
	s.stopLoops(true)
	_ = s.waitLoops(context.Background()) // they close what they hold at once
	err := s.fallback.Close()
	s.handoff.close()
	s.stopOnce.Do(func() { close(s.stopWatch) })
	return err
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	s.closing.Store(true)
	for l := range s.listeners {
		_ = l.Close()
	}
	s.mu.Unlock()
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.wakeLoops()
	s.mu.Lock()
	defer s.mu.Unlock()
	for rc := range s.conns {
		if rc.state.CompareAndSwap(stateIdle, stateClosing) {
			// Unblock its read; its goroutine closes it.
			_ = rc.c.SetReadDeadline(aLongTimeAgo)
		}
	}
	return len(s.conns) == 0 && s.loopConns() == 0
}

func (s *Server) forget(rc *rawConn) {
	s.mu.Lock()
	delete(s.conns, rc)
	s.mu.Unlock()
}

// A raw connection's state, for Shutdown: idle while it waits for the
// first byte of a request, active from then until its answer is out.
const (
	stateIdle int32 = iota
	stateActive
	stateClosing
)

// handoffListener yields the connections the raw loop hands to net/http.
type handoffListener struct {
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close is called by http.Server.Shutdown; hand-offs then fail and the
// raw loop closes the connection instead.
func (h *handoffListener) Close() error {
	h.close()
	return nil
}

func (h *handoffListener) close() { h.closeOnce.Do(func() { close(h.done) }) }

func (h *handoffListener) Addr() net.Addr { return handoffAddr{} }

// deliver gives c to net/http, or reports false if it no longer serves.
func (h *handoffListener) deliver(c net.Conn) bool {
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		return false
	}
}

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }

// handoffConn is a client connection handed to net/http: it reads first
// the bytes the raw loop had already read.
type handoffConn struct {
	net.Conn
	pending []byte
	// pinned, if set, is what routing already chose for the first
	// request (the split's round-robin must not advance twice for one
	// request); ServeHTTP takes it once.
	pinned *choice
	taken  atomic.Bool
}

func (c *handoffConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection, as net/http does before it
// closes one it answered with an error (so that the client reads the
// answer rather than a reset).
func (c *handoffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type pinnedKey struct{}

// pinnedChoice returns the choice made for req by the raw loop before it
// handed req's connection over, if req is that connection's first
// request.
func pinnedChoice(req *http.Request) (choice, bool) {
	hc, ok := req.Context().Value(pinnedKey{}).(*handoffConn)
	if !ok || !hc.taken.CompareAndSwap(false, true) {
		return choice{}, false
	}
	return *hc.pinned, true
}
