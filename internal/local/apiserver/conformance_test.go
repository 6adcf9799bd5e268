package apiserver_test

import (
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/apiserver"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/conformance"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
)

// newServer serves the API over a fresh embedded store and returns a REST
// client for it and the server's URL.
func newServer(t *testing.T) (*client.Store, string) {
	t.Helper()
	st, err := local.Open(filepath.Join(t.TempDir(), "elafros.db"), local.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(apiserver.New(st, nil))
	t.Cleanup(func() {
		srv.Close()
		_ = st.Close()
	})
	c, err := client.ForServer(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv.URL
}

// TestConformanceOverHTTP runs the seed's scenarios with every read and
// write (the suite's and the reconciler's) going through the HTTP API and
// the REST client.
func TestConformanceOverHTTP(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Backend {
		c, _ := newServer(t)
		rt, tr, b := reconciletest.NewRuntime(), reconciletest.NewTraffic(), reconciletest.NewBuilder(false)
		return conformance.Backend{
			Store: c, Runtime: rt, Traffic: tr, Builder: b,
			Hold: rt.Hold, Release: rt.Release, Fail: rt.Fail,
			CompleteBuild: b.Complete, FailBuild: b.Fail,
			Plan: func(ns, name string) (reconcile.TrafficPlan, bool) { return tr.Plan(ns, name) },
		}
	})
}
