// Command build measures build-and-push of the same Go app to the same
// local registry by the elafros go builder and by ko, in three interleaved
// runs (within a run each mode builds with both, back to back; which goes
// first alternates from run to run, so that neither always gets the
// warmer machine): cold (a fresh Go build cache for each
// run and each builder), warm (the same cache, no change), and a warm
// rebuild after a one-line change, for linux/amd64 and linux/arm64, with
// the size of each image (linux/amd64: compressed layers + config +
// manifest). Both get the same base image (the elafros default: CA
// certificates only) through KO_DEFAULTBASEIMAGE. Each run ends with the
// inner loop: "elafros up --watch" on the app, one edit of its greeting,
// and the time until the router serves the new text from a new revision.
//
// The app is examples/hello copied into a git repository of its own (one
// commit, its own go.mod), as a user's service is: the same sources for
// both builders, and an edit that leaves this repository untouched. Run it
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
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/cli"
	"github.com/elafros/elafros/internal/local/serve"
)

const platforms = "linux/amd64,linux/arm64"

func main() {
	ko := flag.String("ko", "bench/.bin/ko", "the ko binary")
	app := flag.String("app", "examples/hello", "the Go main package to build (copied into a repository of its own)")
	runs := flag.Int("runs", 3, "how many interleaved runs")
	verbose := flag.Bool("v", false, "print the elafros builder's log of each build (its step timings)")
	flag.Parse()
	if err := run(*ko, *app, *runs, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// The three builds of a run, in order.
var modes = []string{"cold", "warm", "change"}

const (
	ours   = "elafros"
	koTool = "ko"
)

type measure struct {
	took time.Duration
	ref  string
}

// greeting is the line of examples/hello that the one-line change edits.
const greeting = `"Hello %s!\n"`

func run(ko, app string, runs int, verbose bool) error {
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
	// The base goes up as an index of the two platforms: ko builds one
	// image per platform of its base's index, but only one image (its
	// base's platform) from a single-image base, whatever --platform
	// says, which would have it compile half of what our builder does.
	baseIndex, err := platformIndex(base)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(baseRef, baseIndex); err != nil {
		return fmt.Errorf("pushing the base: %w", err)
	}
	tmp, err := os.MkdirTemp("", "elafros-bench-build")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	koBin, err := filepath.Abs(ko)
	if err != nil {
		return err
	}

	results := make([]map[string]map[string]measure, runs)
	serving := make([]time.Duration, runs)
	for i := range runs {
		results[i] = map[string]map[string]measure{ours: {}, koTool: {}}
		order := []string{ours, koTool}
		if i%2 == 1 {
			order = []string{koTool, ours}
		}
		// Each mode alternates the builders back to back, so that the two
		// builds compared ran seconds apart: on a shared machine the load
		// of other work swings by a factor of two within minutes, and a
		// builder that ran all its modes first would be measured under
		// another load than the one that ran second.
		dirs, caches := map[string]string{}, map[string]string{}
		for _, tool := range order {
			dirs[tool] = filepath.Join(tmp, fmt.Sprintf("run%d-%s", i+1, tool))
			if err := copyApp(app, dirs[tool]); err != nil {
				return err
			}
			caches[tool] = filepath.Join(tmp, fmt.Sprintf("gocache-%d-%s", i+1, tool))
		}
		for _, mode := range modes {
			for _, tool := range order {
				dir, gocache := dirs[tool], caches[tool]
				if mode == "change" {
					if err := edit(filepath.Join(dir, "main.go"), greeting, fmt.Sprintf(`"Hello %%s, run %d!\n"`, i+1)); err != nil {
						return err
					}
				}
				var m measure
				if tool == ours {
					m, err = buildOurs(ctx, dir, reg, gocache, filepath.Join(tmp, fmt.Sprintf("work-%d", i+1)), fmt.Sprintf("hello-%d-%s", i+1, mode), verbose)
				} else {
					m, err = buildKo(koBin, dir, reg, gocache, filepath.Join(tmp, fmt.Sprintf("kocache-%d", i+1)))
				}
				if err != nil {
					return fmt.Errorf("run %d, %s, %s: %w", i+1, tool, mode, err)
				}
				// Both must have built every platform: the figures
				// compare the same work.
				if err := hasPlatforms(m.ref); err != nil {
					return fmt.Errorf("run %d, %s, %s: %w", i+1, tool, mode, err)
				}
				results[i][tool][mode] = m
				fmt.Fprintf(os.Stderr, "run %d: %-8s %-7s %s\n", i+1, tool, mode, m.took.Round(10*time.Millisecond))
			}
		}
		if serving[i], err = editToServing(ctx, app, filepath.Join(tmp, fmt.Sprintf("up-%d", i+1)), i+1); err != nil {
			return fmt.Errorf("run %d, edit to serving: %w", i+1, err)
		}
		fmt.Fprintf(os.Stderr, "run %d: edit → serving %s\n", i+1, serving[i].Round(10*time.Millisecond))
	}

	sizes := map[string]int64{}
	for _, tool := range []string{ours, koTool} {
		if sizes[tool], err = amd64Size(results[0][tool]["cold"].ref); err != nil {
			return fmt.Errorf("%s: %w", tool, err)
		}
	}
	fmt.Printf("build and push %s for %s to a local registry, same base image, %d interleaved runs\n\n", app, platforms, runs)
	fmt.Printf("%-4s %-10s %10s %10s %17s\n", "run", "builder", "cold", "warm", "one-line change")
	for i, r := range results {
		for _, tool := range []string{ours, koTool} {
			m := r[tool]
			fmt.Printf("%-4d %-10s %10s %10s %17s\n", i+1, tool, round(m["cold"].took), round(m["warm"].took), round(m["change"].took))
		}
	}
	fmt.Printf("\nratios (elafros / ko):\n")
	for i, r := range results {
		o, k := r[ours], r[koTool]
		fmt.Printf("  run %d: cold %.2f, warm %.2f, one-line change %.2f\n", i+1,
			ratio(o["cold"], k["cold"]), ratio(o["warm"], k["warm"]), ratio(o["change"], k["change"]))
	}
	fmt.Printf("\nimage (linux/amd64): elafros %.2f MB, ko %.2f MB (%.2f)\n", float64(sizes[ours])/1e6, float64(sizes[koTool])/1e6, float64(sizes[ours])/float64(sizes[koTool]))
	for _, tool := range []string{ours, koTool} {
		same := true
		for _, r := range results {
			same = same && r[tool]["cold"].ref == r[tool]["warm"].ref
		}
		fmt.Printf("%s: same digest cold and warm in every run: %v\n", tool, same)
	}
	fmt.Printf("\nedit → new revision serving (elafros up --watch, one edit of the greeting, until the router answers with it):\n")
	for i, d := range serving {
		fmt.Printf("  run %d: %s\n", i+1, round(d))
	}
	return nil
}

func round(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func ratio(a, b measure) float64 { return a.took.Seconds() / b.took.Seconds() }

// buildOurs builds dir with the go builder, as the control plane does: a
// builder whose default source is the working tree. The work directory
// lives as long as ko's KOCACHE, one run: it keeps the binaries and the
// layer cache from one mode to the next, as serve's data directory does
// (a new Builder for each build, as a new "elafros up" process would
// have, so that nothing is kept in memory).
func buildOurs(ctx context.Context, dir, reg, gocache, work, name string, verbose bool) (measure, error) {
	b, err := build.New(build.Options{WorkDir: work, Registry: reg, DefaultSource: dir,
		AllowDirty: true, GoEnv: []string{"GOCACHE=" + gocache}})
	if err != nil {
		return measure{}, err
	}
	spec := v1alpha1.BuildSpec{Template: v1alpha1.TemplateInstantiationSpec{Name: "go",
		Arguments: []v1alpha1.ArgumentSpec{{Name: "_PLATFORMS", Value: platforms}}}}
	t0 := time.Now()
	st, err := b.Build(ctx, "bench", name, spec, reg+"/ours/hello")
	took := time.Since(t0)
	_ = b.Close()
	if verbose {
		fmt.Fprint(os.Stderr, b.Log("bench", name))
	}
	if err != nil {
		return measure{}, fmt.Errorf("%w\n%s", err, b.Log("bench", name))
	}
	return measure{took: took, ref: st.Image}, nil
}

// buildKo builds dir with ko, as its documentation says to.
func buildKo(ko, dir, reg, gocache, kocache string) (measure, error) {
	cmd := exec.Command(ko, "build", "--bare", "--sbom=none", "--platform="+platforms, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOCACHE="+gocache, "KO_DOCKER_REPO="+reg+"/ko/hello",
		"KO_DEFAULTBASEIMAGE="+reg+"/base:latest", "KOCACHE="+kocache)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return measure{}, fmt.Errorf("ko build: %w\n%s", err, errb.String())
	}
	return measure{took: time.Since(t0), ref: strings.TrimSpace(out.String())}, nil
}

// copyApp copies the app's non-test Go files and manifest into dir, with
// a go.mod of its own, and commits them in a new git repository.
func copyApp(app, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(app)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(app, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return err
	}
	_, err = wt.Commit("hello", &git.CommitOptions{Author: &object.Signature{Name: "bench", Email: "bench@example.com", When: time.Unix(1500000000, 0)}})
	return err
}

// edit replaces old with new in file: a one-line change.
func edit(file, old, new string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(old)) {
		return fmt.Errorf("%s does not hold %s", file, old)
	}
	return os.WriteFile(file, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
}

// lockedBuffer is up's output, read while it writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// editToServing runs elafros up --watch (in process, on its own data
// directory and free ports, with the user's Go build cache as up has) on
// a copy of app, edits the greeting once, and returns the time from the
// save to the router's first answer with the new text.
func editToServing(ctx context.Context, app, dir string, run int) (time.Duration, error) {
	if err := copyApp(app, filepath.Join(dir, "src")); err != nil {
		return 0, err
	}
	src := filepath.Join(dir, "src")
	o := serve.Options{DataDir: filepath.Join(dir, "data"), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), BuildSource: src}
	out := &lockedBuffer{}
	s := cli.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out}
	srv, err := cli.Up(ctx, src, o, 10*time.Minute, s)
	if err != nil {
		return 0, fmt.Errorf("up: %w\n%s", err, out)
	}
	defer srv.Close()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cli.Watch(wctx, srv, src, cli.WatchOptions{}, s) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "bench: watch:", err)
		}
	}()
	if err := until(time.Minute, func() bool { return strings.Contains(out.String(), "Watching ") }); err != nil {
		return 0, fmt.Errorf("the watch did not start: %w\n%s", err, out)
	}
	want := fmt.Sprintf("Hello world, edit %d!\n", run)
	start := time.Now()
	if err := edit(filepath.Join(src, "main.go"), greeting, fmt.Sprintf(`"Hello %%s, edit %d!\n"`, run)); err != nil {
		return 0, err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	err = until(5*time.Minute, func() bool {
		req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr+"/", nil)
		req.Host = "hello.default.localhost"
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return string(body) == want
	})
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("the edit was not served: %w\n%s", err, out)
	}
	return took, nil
}

// until polls cond every 10 ms until it holds or timeout passes.
func until(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// platformIndex is an index of base for each of platforms, each entry's
// config naming its platform.
func platformIndex(base v1.Image) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for _, p := range strings.Split(platforms, ",") {
		os, arch, _ := strings.Cut(p, "/")
		cf, err := base.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = os, arch
		img, err := mutate.ConfigFile(base, cf)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), nil
}

// hasPlatforms checks that ref is an index with an image for each of
// platforms.
func hasPlatforms(ref string) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	idx, err := remote.Index(r)
	if err != nil {
		return fmt.Errorf("%s is not an index of %s: %w", ref, platforms, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var got []string
	for _, d := range m.Manifests {
		if d.Platform != nil {
			got = append(got, d.Platform.OS+"/"+d.Platform.Architecture)
		}
	}
	if strings.Join(got, ",") != platforms {
		return fmt.Errorf("%s has platforms %v, want %s", ref, got, platforms)
	}
	return nil
}
