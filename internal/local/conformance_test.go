package local

import (
	"path/filepath"
	"testing"

	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/conformance"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
)

// TestConformance runs the seed's scenarios on the embedded store.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Backend {
		s, err := Open(filepath.Join(t.TempDir(), "elafros.db"), WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		rt, tr, b := reconciletest.NewRuntime(), reconciletest.NewTraffic(), reconciletest.NewBuilder(false)
		return conformance.Backend{
			Store: s, Runtime: rt, Traffic: tr, Builder: b,
			Hold: rt.Hold, Release: rt.Release, Fail: rt.Fail,
			CompleteBuild: b.Complete, FailBuild: b.Fail,
			Plan: func(ns, name string) (reconcile.TrafficPlan, bool) { return tr.Plan(ns, name) },
		}
	})
}
