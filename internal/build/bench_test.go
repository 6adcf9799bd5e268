package build

import (
	"compress/gzip"
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/local/process/processtest"
)

// BenchmarkGoBuild builds examples/hello for linux/amd64 and linux/arm64
// and pushes it to a local registry: cold (from a git commit, a fresh
// GOCACHE and work directory each time, so the standard library is
// compiled too), warm (from a git commit, one GOCACHE filled before
// timing: each build clones again into a directory of its own, as each
// revision does), and warm-worktree (the working tree, as elafros up and
// bench/build build it: a new Builder on one work directory each time, so
// the kept binaries and the layer cache carry over from disk only).
//
//	go test -run '^$' -bench GoBuild -benchtime 1x ./internal/build/
//	go test -run '^$' -bench 'GoBuild/warm' -benchtime 10x -v ./internal/build/  # and the log of each phase
func BenchmarkGoBuild(b *testing.B) {
	src, err := os.ReadFile("../../examples/hello/main.go")
	if err != nil {
		b.Fatal(err)
	}
	reg := processtest.StartRegistry(b)
	r := newRepo(b)
	sha := r.commit("hello", map[string]string{"go.mod": "module example.com/hello\n\ngo 1.22\n", "main.go": string(src)})
	spec := gitSpec(r.url(), sha, TemplateGo)

	run := func(b *testing.B, bld *Builder, spec v1alpha1.BuildSpec, i int) {
		b.Helper()
		name := "hello-" + strconv.Itoa(i)
		if _, err := bld.Build(context.Background(), "bench", name, spec, ""); err != nil {
			b.Fatalf("%v\n%s", err, bld.Log("bench", name))
		}
		if testing.Verbose() && i < 0 {
			b.Log(bld.Log("bench", name))
		}
	}
	b.Run("cold", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			bld := newBuilder(b, Options{Registry: reg, GoEnv: []string{"GOCACHE=" + b.TempDir()}})
			run(b, bld, spec, i)
		}
	})
	gocache := b.TempDir()
	b.Run("warm", func(b *testing.B) {
		bld := newBuilder(b, Options{Registry: reg, GoEnv: []string{"GOCACHE=" + gocache}})
		run(b, bld, spec, 1_000_000)
		for i := 0; b.Loop(); i++ {
			run(b, bld, spec, i)
		}
		run(b, bld, spec, -1)
	})
	b.Run("warm-worktree", func(b *testing.B) {
		work := b.TempDir()
		opts := Options{WorkDir: work, Registry: reg, DefaultSource: r.dir, GoEnv: []string{"GOCACHE=" + gocache}}
		tree := v1alpha1.BuildSpec{Template: spec.Template}
		run(b, newBuilder(b, opts), tree, 1_000_000)
		for i := 0; b.Loop(); i++ {
			run(b, newBuilder(b, opts), tree, i)
		}
		run(b, newBuilder(b, opts), tree, -1)
	})
}

// BenchmarkAppLayer makes the /app layer of a real Go binary (this test's
// own executable): compressed (a binary not built before) and known from
// the layer cache (a rebuild that kept its binary: it is hashed, not
// compressed).
//
//	go test -run '^$' -bench AppLayer -benchtime 5x ./internal/build/
func BenchmarkAppLayer(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("compressed", func(b *testing.B) {
		b.SetBytes(int64(len(bin)))
		for b.Loop() {
			if _, cached, err := newLayerCache("").appLayer(bin); err != nil || cached {
				b.Fatalf("appLayer: cached %v, %v", cached, err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newLayerCache(b.TempDir())
		if _, _, err := c.appLayer(bin); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(bin)))
		for b.Loop() {
			// A new cache on the directory each time: the entry is read
			// from disk, as a new process reads it.
			if _, cached, err := newLayerCache(c.dir).appLayer(bin); err != nil || !cached {
				b.Fatalf("appLayer: cached %v, %v", cached, err)
			}
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
