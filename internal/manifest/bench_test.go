package manifest

import (
	"os"
	"testing"
)

// BenchmarkParse measures loading the example manifest (decode, defaults,
// validation): go test ./internal/manifest -run '^$' -bench Parse -benchmem
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("../../examples/function/elafros.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := Parse("elafros.yaml", data); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}
