package router

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultQueueLimit is how many requests may wait for a SingleThreaded
// revision unless WithQueueLimit says otherwise.
const DefaultQueueLimit = 100

// Option tunes a Router built by New.
type Option func(*options)

type options struct {
	sticky     bool
	queueLimit int
	registerer prometheus.Registerer
	logger     *slog.Logger
	transport  http.RoundTripper
}

// WithSticky turns sticky assignment on or off (default off). When on, a
// cookie named elafros-<namespace>-<route> keeps a client on the revision
// it was first sent to for as long as that revision keeps a share of the
// split and is ready.
func WithSticky(on bool) Option {
	return func(o *options) { o.sticky = on }
}

// WithQueueLimit bounds how many requests may wait for a SingleThreaded
// revision while another is in flight (default DefaultQueueLimit). Past
// it, requests get 503. A negative n is taken as 0: nothing waits.
func WithQueueLimit(n int) Option {
	return func(o *options) { o.queueLimit = max(n, 0) }
}

// WithRegisterer registers the router's metrics on reg instead of on a
// private registry. If reg is also a prometheus.Gatherer (as a
// *prometheus.Registry is), MetricsHandler serves it.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

// WithLogger sets where proxy errors are logged, at debug level
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithTransport replaces the shared transport to the revisions' processes
// (default: an HTTP/1.1 keep-alive pool of up to 256 idle connections per
// process, never through an HTTP proxy). With a transport given, every
// request goes through it, including those the router would otherwise
// proxy on its own lean path (see upstream.go).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.transport = rt }
}
