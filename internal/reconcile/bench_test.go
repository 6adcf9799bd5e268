package reconcile_test

import (
	"fmt"
	"testing"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// BenchmarkResync measures one resync pass over 1,000 services with three
// revisions each, on the embedded store:
//
//	go test ./internal/reconcile -run '^$' -bench Resync -benchmem
//
// "unchanged" must make 0 writes; "one-change" changes one service's image
// and converges, so its writes are those of one rollout, not of the world.
func BenchmarkResync(b *testing.B) {
	const services = 1000
	f := newFixture(b, reconcile.Options{})
	for i := range services {
		f.create(service(fmt.Sprintf("svc-%04d", i), "img:1", v1alpha1.StrategyAutomatic))
	}
	f.converge()
	for img := 2; img <= 3; img++ {
		for i := range services {
			f.setImage(fmt.Sprintf("svc-%04d", i), fmt.Sprintf("img:%d", img))
		}
		f.converge()
	}
	b.Run("unchanged", func(b *testing.B) {
		start := f.rec.Writes()
		b.ReportAllocs()
		for b.Loop() {
			if _, errs := f.r.Pass(f.ctx, ""); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
		writes := f.rec.Writes() - start
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
		if writes != 0 {
			b.Fatalf("an unchanged world got %d writes", writes)
		}
	})
	b.Run("one-change", func(b *testing.B) {
		start := f.rec.Writes()
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n++
			f.setImage("svc-0500", fmt.Sprintf("img:x%d", n))
			f.converge()
		}
		b.ReportMetric(float64(f.rec.Writes()-start)/float64(b.N), "writes/op")
	})
}
