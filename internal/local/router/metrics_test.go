package router

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/elafros/elafros/internal/reconcile"
)

// TestMetricsAcrossPlans: the series a table looks up once per plan are
// the same series across plans, so a traffic shift neither resets nor
// splits a revision's counts, and a revision only gets series once it
// serves.
func TestMetricsAcrossPlans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("a", nil, Backend{})
	e.serve("b", nil, Backend{})
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 100), Hosts: map[string]reconcile.NamedTarget{"b." + domain: {Tag: "b", Revision: "b"}}})
	for range 4 {
		e.get(domain, nil)
	}
	if n := testutil.CollectAndCount(e.rt.metrics.requests, MetricRequests); n != 1 {
		t.Errorf("%d request series after a served alone, want 1 (b has served nothing)", n)
	}
	e.apply(reconcile.TrafficPlan{Domain: domain, Split: split("a", 50, "b", 50)})
	for range 4 {
		e.get(domain, nil)
	}
	m := e.rt.metrics
	for rev, want := range map[string]float64{"a": 6, "b": 2} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(ns, svc, rev, "200")); got != want {
			t.Errorf("%s{revision=%q,code=200} = %v, want %v", MetricRequests, rev, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.duration, MetricDuration); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
	if got := testutil.CollectAndCount(m.requests, MetricRequests); got != 2 {
		t.Errorf("%d request series, want 2", got)
	}
}
