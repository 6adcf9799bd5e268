package router

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, for scraping and tests.
const (
	// MetricRequests counts requests by namespace, route, revision and
	// status code. revision is "" when none was chosen (unknown host,
	// unknown tag, empty split).
	MetricRequests = "elafros_router_requests_total"
	// MetricDuration observes request durations in seconds by namespace,
	// route and revision, queueing included.
	MetricDuration = "elafros_router_request_duration_seconds"
	// MetricInFlight is the number of requests sent to, or waiting for, a
	// revision, by namespace, route and revision.
	MetricInFlight = "elafros_router_requests_in_flight"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	labels := []string{"namespace", "route", "revision"}
	return &metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "Requests the router answered, by route, revision and status code.",
		}, append(labels, "code"))),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricDuration,
			Help:    "Time from a request's arrival at the router to its response, queueing for a single-threaded revision included.",
			Buckets: prometheus.DefBuckets,
		}, labels)),
		inFlight: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricInFlight,
			Help: "Requests being proxied to, or queued for, a revision.",
		}, labels)),
	}
}

// register registers c on reg; if an identical collector is already
// registered (a second Router on the same registry), that one is shared.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("router: registering metrics: " + err.Error())
	}
	return c
}

// revMetrics are one revision's series under one route, looked up once
// per applied plan rather than by label values on every request (hashing
// three or four strings under a read lock, three times per request).
// They are the series WithLabelValues returns, looked up on first use so
// that a revision that never served has no series, as before.
type revMetrics struct {
	m                          *metrics
	namespace, route, revision string

	once     sync.Once
	inFlight prometheus.Gauge
	duration prometheus.Observer
	// okCounter is code 200's series, by far the most counted.
	okCounter atomic.Pointer[prometheus.Counter]
}

func (rm *revMetrics) get() *revMetrics {
	rm.once.Do(func() {
		rm.inFlight = rm.m.inFlight.WithLabelValues(rm.namespace, rm.route, rm.revision)
		rm.duration = rm.m.duration.WithLabelValues(rm.namespace, rm.route, rm.revision)
	})
	return rm
}

// count counts one answer with code.
func (rm *revMetrics) count(code int) {
	if code != http.StatusOK {
		rm.m.requests.WithLabelValues(rm.namespace, rm.route, rm.revision, codeLabel(code)).Inc()
		return
	}
	// Racing first requests may both look the series up: it is the
	// same series either way.
	c := rm.okCounter.Load()
	if c == nil {
		v := rm.m.requests.WithLabelValues(rm.namespace, rm.route, rm.revision, codeLabel(code))
		c = &v
		rm.okCounter.Store(c)
	}
	(*c).Inc()
}

func (m *metrics) forRevision(namespace, route, revision string) *revMetrics {
	return &revMetrics{m: m, namespace: namespace, route: route, revision: revision}
}

// codeLabels holds the code label of every status code, so that counting
// a request does not format one.
var codeLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// Registry is the private registry the router's metrics are registered
// on, or nil if they were registered elsewhere (WithRegisterer).
func (r *Router) Registry() *prometheus.Registry { return r.registry }

// MetricsHandler serves the router's metrics in the Prometheus exposition
// format: the private registry's, or WithRegisterer's registerer's if it
// is also a Gatherer. Otherwise it answers 404.
func (r *Router) MetricsHandler() http.Handler {
	if r.gatherer == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the router's metrics are registered on a registerer given by WithRegisterer; serve them from its registry", http.StatusNotFound)
		})
	}
	return promhttp.HandlerFor(r.gatherer, promhttp.HandlerOpts{})
}
