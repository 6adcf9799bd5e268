package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elafros/elafros/api/v1alpha1"
)

const (
	// TargetHeader on a request to a route's main host sends it to the
	// revision of the named target it names (Elafros-Target: next). The
	// router removes it before proxying.
	TargetHeader = v1alpha1.TargetHeader
	// RevisionHeader on a response names the revision that served it.
	RevisionHeader = "Elafros-Revision"
	// statusClientClosed is recorded (nginx's convention) when the client
	// went away before an answer.
	statusClientClosed = 499
)

// Router routes HTTP requests by Host to the revisions of Routes, with the
// splits Apply gives it, and proxies them to the revisions' processes
// found by its Resolver. It implements reconcile.Traffic and http.Handler;
// it is safe for concurrent use.
type Router struct {
	resolver Resolver
	opts     options

	mu   sync.Mutex // serializes Apply and Forget
	snap atomic.Pointer[snapshot]

	gates     gates
	upstreams upstreams
	buffers   *bufferPool
	proxy     *httputil.ReverseProxy
	transport http.RoundTripper
	metrics   *metrics
	registry  *prometheus.Registry
	gatherer  prometheus.Gatherer
}

// New returns a Router serving no route yet, which finds revisions'
// processes with resolver.
func New(resolver Resolver, opts ...Option) *Router {
	o := options{queueLimit: DefaultQueueLimit}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	r := &Router{resolver: resolver, opts: o, transport: o.transport, buffers: &bufferPool{}}
	r.upstreams.dialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if r.transport == nil {
		r.transport = newTransport()
	}
	reg := o.registerer
	if reg == nil {
		r.registry = prometheus.NewRegistry()
		reg, r.gatherer = r.registry, r.registry
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		r.gatherer = g
	}
	r.metrics = newMetrics(reg)
	r.snap.Store(&snapshot{routes: map[routeKey]*table{}, hosts: map[string]hostRef{}})
	r.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      r.transport,
		BufferPool:     r.buffers,
		ModifyResponse: modifyResponse,
		ErrorHandler:   r.proxyError,
		ErrorLog:       slog.NewLogLogger(o.logger.Handler(), slog.LevelDebug),
	}
	return r
}

// newTransport is the shared pool of connections to revisions' processes:
// plain HTTP/1.1 on loopback, kept alive, never through a proxy.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Close closes the idle connections to revisions' processes. The Router
// stays usable.
func (r *Router) Close() {
	r.upstreams.closeIdle()
	if t, ok := r.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// ServeHTTP routes req by its Host: a route's domain gets the route's
// split (or, with an Elafros-Target header, the tagged revision), a named
// target's host gets that revision, any other host 404.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	c := &call{w: w, start: time.Now()}

	ch, pinned := pinnedChoice(req)
	if !pinned {
		ch = r.choose(canonicalHost(req.Host), req.Header.Get(TargetHeader), func(name string) (string, bool) {
			ck, err := req.Cookie(name)
			if err != nil {
				return "", false
			}
			return ck.Value, true
		})
	}
	if t := ch.table; t != nil {
		c.table = t
		c.namespace, c.route = t.key.namespace, t.key.name
	}
	if ch.setCookie {
		c.Header().Add("Set-Cookie", ch.entry.cookie)
	}
	c.revision = ch.revision
	if ch.revision != "" {
		c.Header().Set(RevisionHeader, ch.revision)
	}
	if ch.code != 0 {
		c.fail(ch.code, ch.msg)
		r.record(c)
		return
	}
	r.serveRevision(c, req) // records c
}

// choice is what routing chose for a request: a revision to proxy to,
// or an answer (code and msg) when there is none.
type choice struct {
	table    *table
	revision string
	// entry is the split's entry when the split chose; setCookie: a
	// sticky client is to be given entry.cookie.
	entry     *splitEntry
	setCookie bool
	code      int
	msg       string
}

// choose routes a request for host (canonical) with the Elafros-Target
// tag ("" if none); cookie reads a request cookie by name. It advances the
// split's round-robin: a request must be chosen for once.
func (r *Router) choose(host, tag string, cookie func(name string) (string, bool)) choice {
	ref, ok := r.snap.Load().hosts[host]
	if !ok {
		return choice{code: http.StatusNotFound, msg: fmt.Sprintf("no route serves host %q", host)}
	}
	t := ref.table
	ch := choice{table: t, revision: ref.revision}
	if ch.revision != "" {
		return ch
	}
	if tag != "" {
		rev, ok := t.tags[tag]
		if !ok {
			accepted := "it has no named targets"
			if t.tagList != "" {
				accepted = "it accepts: " + t.tagList
			}
			ch.code, ch.msg = http.StatusNotFound, fmt.Sprintf("route %s has no target named %q (%s %s)", t.key, tag, TargetHeader, accepted)
			return ch
		}
		ch.revision = rev
		return ch
	}
	e, setCookie := r.pickSplit(t, cookie)
	if e == nil {
		ch.code, ch.msg = http.StatusServiceUnavailable, "no revision is ready to serve this route yet"
		return ch
	}
	ch.revision, ch.entry, ch.setCookie = e.revision, e, setCookie
	if !e.ready {
		ch.code, ch.msg = http.StatusServiceUnavailable, fmt.Sprintf("revision %s of route %s is not ready", e.revision, t.key)
	}
	return ch
}

// pickSplit chooses the split's revision, or returns nil if the split is
// empty; setCookie says whether a sticky client is to be given the
// entry's cookie. A sticky client whose revision still has a share and is
// ready keeps it without advancing the round-robin, so that sticky clients
// do not skew the split the others see.
func (r *Router) pickSplit(t *table, cookie func(name string) (string, bool)) (e *splitEntry, setCookie bool) {
	if len(t.split) == 0 {
		return nil, false
	}
	if !r.opts.sticky {
		return t.pick(), false
	}
	if v, ok := cookie(t.cookieName); ok {
		if e := t.entry(v); e != nil && e.ready {
			return e, false
		}
	}
	e = t.pick()
	return e, e.ready
}

// serveRevision proxies req to c.revision's process, through its gate if
// it is SingleThreaded and within its timeout, and records c.
func (r *Router) serveRevision(c *call, req *http.Request) {
	b, ok := r.resolver.Backend(c.namespace, c.revision)
	if !ok {
		c.fail(http.StatusServiceUnavailable, fmt.Sprintf("revision %s has no running process yet", c.revision))
		r.record(c)
		return
	}
	c.backend = b
	var inFlight prometheus.Gauge
	if m := c.metrics(); m != nil {
		inFlight = m.get().inFlight
	} else {
		inFlight = r.metrics.inFlight.WithLabelValues(c.namespace, c.route, c.revision)
	}
	inFlight.Inc()
	defer func() {
		r.record(c) // counted before it leaves the in-flight gauge
		inFlight.Dec()
	}()

	c.clientCtx = req.Context()
	ctx := c.clientCtx
	var deadline time.Time
	if b.Timeout > 0 {
		deadline = time.Now().Add(b.Timeout)
	}
	// The lean path needs a context only to wait at the gate: it puts the
	// deadline on the connection instead, sparing a timer and a context
	// per request.
	lean := r.opts.transport == nil && leanEligible(req)
	if b.Timeout > 0 && (b.SingleThreaded || !lean) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if b.SingleThreaded {
		key := routeKey{c.namespace, c.revision}
		g, err := r.gates.acquire(ctx, key, r.opts.queueLimit)
		if errors.Is(err, errQueueFull) {
			c.fail(http.StatusServiceUnavailable, fmt.Sprintf("revision %s is single-threaded and its queue is full (%d waiting)", c.revision, r.opts.queueLimit))
			return
		}
		if err != nil {
			r.ended(c, err)
			return
		}
		defer r.gates.release(key, g)
	}
	if lean {
		r.proxyLean(c, req, deadline)
		return
	}
	r.proxy.ServeHTTP(c, req.WithContext(context.WithValue(ctx, callKey{}, c)))
}

// ended answers a request whose context ended before its answer: 504 if
// its timeout passed, nothing useful if its client went away.
func (r *Router) ended(c *call, err error) {
	if c.clientCtx.Err() != nil {
		c.WriteHeader(statusClientClosed)
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		c.fail(http.StatusGatewayTimeout, fmt.Sprintf("revision %s did not answer within its timeout of %s", c.revision, c.backend.Timeout))
		return
	}
	c.fail(http.StatusBadGateway, fmt.Sprintf("revision %s: %v", c.revision, err))
}

// proxyError answers a request the proxy could not complete.
func (r *Router) proxyError(_ http.ResponseWriter, req *http.Request, err error) {
	c := req.Context().Value(callKey{}).(*call)
	r.opts.logger.Debug("router: proxying failed",
		"namespace", c.namespace, "route", c.route, "revision", c.revision, "addr", c.backend.Addr, "error", err)
	if req.Context().Err() != nil {
		r.ended(c, req.Context().Err())
		return
	}
	c.fail(http.StatusBadGateway, fmt.Sprintf("revision %s at %s did not answer: %v", c.revision, c.backend.Addr, err))
}

func rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = c.backend.Addr
	// Out.Host stays the client's: the revision sees the host it was
	// reached by.
	pr.Out.Header.Del(TargetHeader)
	pr.SetXForwarded()
}

// modifyResponse names the revision on the response: the header set
// before proxying does not survive a 1xx response, and the process's own
// header, if any, must not add a second value.
func modifyResponse(resp *http.Response) error {
	c := resp.Request.Context().Value(callKey{}).(*call)
	c.Header().Del(RevisionHeader)
	resp.Header.Set(RevisionHeader, c.revision)
	return nil
}

// record counts a request once it is answered.
func (r *Router) record(c *call) {
	code := c.code
	if code == 0 {
		code = http.StatusOK
	}
	elapsed := time.Since(c.start).Seconds()
	if m := c.metrics(); m != nil {
		m.count(code)
		m.get().duration.Observe(elapsed)
		return
	}
	r.metrics.requests.WithLabelValues(c.namespace, c.route, c.revision, codeLabel(code)).Inc()
	r.metrics.duration.WithLabelValues(c.namespace, c.route, c.revision).Observe(elapsed)
}

type callKey struct{}

// call is one request through the router: what was chosen for it, and
// the response writer that notes its status code.
type call struct {
	w                http.ResponseWriter
	start            time.Time
	code             int
	namespace, route string
	revision         string
	backend          Backend
	clientCtx        context.Context
	table            *table // the route's table, once the host matched one
}

// metrics are the series of c's revision, or nil before one is chosen.
func (c *call) metrics() *revMetrics {
	if c.table == nil || c.revision == "" {
		return nil
	}
	return c.table.metrics[c.revision]
}

func (c *call) Header() http.Header { return c.w.Header() }

func (c *call) WriteHeader(code int) {
	if c.code == 0 && code >= 200 {
		c.code = code
	}
	c.w.WriteHeader(code)
}

func (c *call) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.w.Write(p)
}

// FlushError lets the proxy stream responses (http.ResponseController).
func (c *call) FlushError() error { return http.NewResponseController(c.w).Flush() }

// Unwrap gives http.ResponseController the client's writer (to hijack it
// for protocol upgrades).
func (c *call) Unwrap() http.ResponseWriter { return c.w }

func (c *call) fail(code int, msg string) { http.Error(c, msg, code) }

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
