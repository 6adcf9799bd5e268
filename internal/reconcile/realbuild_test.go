package reconcile_test

import (
	"path/filepath"
	"testing"

	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/conformance"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
)

// TestSeedBuildsWithTheRealBuilder runs the seed's scenarios 4 and 5 on
// the embedded store with the real builder (go-git sources, the
// go-function builder for go_1_9_fn, an OCI registry).
func TestSeedBuildsWithTheRealBuilder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go function; skipped with -short")
	}
	registry := processtest.StartRegistry(t)
	conformance.RunBuilds(t, func(t *testing.T) conformance.Backend {
		s, err := local.Open(filepath.Join(t.TempDir(), "elafros.db"), local.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		b, err := build.New(build.Options{WorkDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		rt, tr := reconciletest.NewRuntime(), reconciletest.NewTraffic()
		return conformance.Backend{Store: s, Runtime: rt, Traffic: tr, Builder: b, Hold: rt.Hold, Release: rt.Release, Fail: rt.Fail,
			Plan: func(ns, name string) (reconcile.TrafficPlan, bool) { return tr.Plan(ns, name) }}
	}, registry)
}
