// Command build measures build-and-push of the same Go app to the same
// local registry by the elafros go builder and by ko, in one run: cold (a
// fresh Go build cache) and warm (the same cache again), for linux/amd64
// and linux/arm64, and the size of each image (linux/amd64: compressed
// layers + config + manifest). Both get the same base image (the elafros
// default: CA certificates only) through KO_DEFAULTBASEIMAGE. Run it
// through bench/run.sh build, which builds ko v0.19.1 from the Go module
// proxy.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/build"
)

const platforms = "linux/amd64,linux/arm64"

func main() {
	ko := flag.String("ko", "bench/.bin/ko", "the ko binary")
	app := flag.String("app", "examples/hello", "the Go main package to build (a directory of this module)")
	flag.Parse()
	if err := run(*ko, *app); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type measure struct {
	took time.Duration
	ref  string
	size int64
}

func run(ko, app string) error {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	reg := l.Addr().String()

	base, err := build.DefaultBase()
	if err != nil {
		return err
	}
	baseRef, err := name.ParseReference(reg+"/base:latest", name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(baseRef, base); err != nil {
		return fmt.Errorf("pushing the base: %w", err)
	}
	appDir, err := filepath.Abs(app)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "elafros-bench-build")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	results := map[string]map[string]measure{"elafros go builder": {}, "ko": {}}
	for _, mode := range []string{"cold", "warm"} {
		oursCache, koCache := filepath.Join(tmp, "gocache-ours"), filepath.Join(tmp, "gocache-ko")
		if mode == "cold" {
			_ = os.RemoveAll(oursCache)
			_ = os.RemoveAll(koCache)
		}
		b, err := build.New(build.Options{WorkDir: filepath.Join(tmp, "work-"+mode), Registry: reg, DefaultSource: appDir, AllowDirty: true,
			GoEnv: []string{"GOCACHE=" + oursCache}})
		if err != nil {
			return err
		}
		spec := v1alpha1.BuildSpec{Template: v1alpha1.TemplateInstantiationSpec{Name: "go",
			Arguments: []v1alpha1.ArgumentSpec{{Name: "_PLATFORMS", Value: platforms}}}}
		t0 := time.Now()
		st, err := b.Build(ctx, "bench", "hello-"+mode, spec, reg+"/ours/hello")
		took := time.Since(t0)
		_ = b.Close()
		if err != nil {
			return fmt.Errorf("elafros build: %w", err)
		}
		if st.Failed {
			return fmt.Errorf("elafros build failed: %s", st.Message)
		}
		results["elafros go builder"][mode] = measure{took: took, ref: st.Image}

		cmd := exec.Command(ko, "build", "--bare", "--sbom=none", "--platform="+platforms, "./"+filepath.ToSlash(app))
		cmd.Env = append(os.Environ(), "GOCACHE="+koCache, "KO_DOCKER_REPO="+reg+"/ko/hello",
			"KO_DEFAULTBASEIMAGE="+reg+"/base:latest", "KOCACHE="+filepath.Join(tmp, "kocache-"+mode))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		t0 = time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("ko build: %w\n%s", err, errb.String())
		}
		results["ko"][mode] = measure{took: time.Since(t0), ref: strings.TrimSpace(out.String())}
	}
	for tool, ms := range results {
		for mode, m := range ms {
			size, err := amd64Size(m.ref)
			if err != nil {
				return fmt.Errorf("%s %s: %w", tool, mode, err)
			}
			m.size = size
			results[tool][mode] = m
		}
	}
	fmt.Printf("build and push %s for %s to a local registry, same base image, one run\n\n", app, platforms)
	fmt.Printf("%-20s %10s %10s %14s\n", "builder", "cold", "warm", "image (amd64)")
	for _, tool := range []string{"elafros go builder", "ko"} {
		r := results[tool]
		fmt.Printf("%-20s %10s %10s %11.2f MB\n", tool, r["cold"].took.Round(10*time.Millisecond), r["warm"].took.Round(10*time.Millisecond), float64(r["cold"].size)/1e6)
	}
	o, k := results["elafros go builder"], results["ko"]
	fmt.Printf("\nratios (elafros / ko): cold %.2f, warm %.2f, image size %.2f\n",
		o["cold"].took.Seconds()/k["cold"].took.Seconds(), o["warm"].took.Seconds()/k["warm"].took.Seconds(), float64(o["cold"].size)/float64(k["cold"].size))
	fmt.Printf("same digest cold and warm: elafros %v, ko %v\n", o["cold"].ref == o["warm"].ref, k["cold"].ref == k["warm"].ref)
	return nil
}

// amd64Size is the linux/amd64 image's compressed layers, config and
// manifest, in bytes.
func amd64Size(ref string) (int64, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		return 0, err
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			return 0, err
		}
		total += s
	}
	m, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	c, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	return total + int64(len(m)) + int64(len(c)), nil
}
