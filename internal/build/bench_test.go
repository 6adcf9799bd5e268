package build

import (
	"compress/gzip"
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/elafros/elafros/internal/local/process/processtest"
)

// BenchmarkGoBuild builds examples/hello for linux/amd64 and linux/arm64
// from a git commit and pushes it to a local registry: cold (a fresh
// GOCACHE each time, so the standard library is compiled too) and warm
// (one GOCACHE for every iteration, filled before timing).
//
//	go test -run '^$' -bench GoBuild -benchtime 1x ./internal/build/
func BenchmarkGoBuild(b *testing.B) {
	src, err := os.ReadFile("../../examples/hello/main.go")
	if err != nil {
		b.Fatal(err)
	}
	reg := processtest.StartRegistry(b)
	r := newRepo(b)
	sha := r.commit("hello", map[string]string{"go.mod": "module example.com/hello\n\ngo 1.22\n", "main.go": string(src)})
	spec := gitSpec(r.url(), sha, TemplateGo)

	run := func(b *testing.B, bld *Builder, i int) {
		b.Helper()
		name := "hello-" + strconv.Itoa(i)
		if _, err := bld.Build(context.Background(), "bench", name, spec, ""); err != nil {
			b.Fatalf("%v\n%s", err, bld.Log("bench", name))
		}
	}
	b.Run("cold", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			bld := newBuilder(b, Options{Registry: reg, GoEnv: []string{"GOCACHE=" + b.TempDir()}})
			run(b, bld, i)
		}
	})
	b.Run("warm", func(b *testing.B) {
		bld := newBuilder(b, Options{Registry: reg, GoEnv: []string{"GOCACHE=" + b.TempDir()}})
		run(b, bld, -1)
		if testing.Verbose() {
			b.Log(bld.Log("bench", "hello--1"))
		}
		for i := 0; b.Loop(); i++ {
			run(b, bld, i)
		}
	})
}

// BenchmarkLayer makes the /app layer of a real Go binary (this test's
// own executable) at gzip's fastest level (what layer uses, as ko does)
// and at its default level (what it used before), and reports the
// compressed size as a fraction of the binary.
//
//	go test -run '^$' -bench Layer -benchtime 5x ./internal/build/
func BenchmarkLayer(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	for _, level := range []struct {
		name  string
		level int
	}{{"BestSpeed", gzip.BestSpeed}, {"Default", gzip.DefaultCompression}} {
		b.Run(level.name, func(b *testing.B) {
			b.SetBytes(int64(len(bin)))
			var l *builtLayer
			for b.Loop() {
				if l, err = layerAt(level.level, tarFile{path: "app", mode: 0o755, content: bin}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(l.compressed))/float64(len(bin)), "compressed/binary")
		})
	}
}
