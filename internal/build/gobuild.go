package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Builder template names and their arguments.
const (
	TemplateGo         = "go"
	TemplateGoFunction = "go-function"
	TemplateDocker     = "docker"

	// ArgPackage is the directory of the package built, relative to the
	// build context. Default ".".
	ArgPackage = "_PACKAGE"
	// ArgPlatforms lists the platforms built. Default DefaultPlatforms.
	ArgPlatforms = "_PLATFORMS"
	// DefaultPlatforms are the platforms of an image by default.
	DefaultPlatforms = "linux/amd64,linux/arm64"
)

// Templates are the accepted build template names, beside the seed's
// <language>_<version>[_fn] ones (go_1_9, go_1_9_fn; see Builtin).
var Templates = []string{TemplateGo, TemplateGoFunction, TemplateDocker}

// seedTemplateRE matches the seed's template names: a language, its
// version, and _fn for a function builder (nodejs_8_9_4, go_1_9_fn).
var seedTemplateRE = regexp.MustCompile(`^[a-z][a-z0-9]*(_[0-9]+)+(_fn)?$`)

// Builtin maps a template name to the builder that builds it: go,
// go-function and docker by name, and the seed's go_<version> (go) and
// go_<version>_fn (go-function, with _ENTRY_POINT). The version is not a
// toolchain choice: the source's go.mod says which Go builds it. Other
// names are not built in (false): a seed-style language template builds
// only from a Dockerfile.
func Builtin(name string) (string, bool) {
	switch {
	case name == TemplateGo, name == TemplateGoFunction, name == TemplateDocker:
		return name, true
	case strings.HasPrefix(name, "go_") && seedTemplateRE.MatchString(name) && strings.HasSuffix(name, "_fn"):
		return TemplateGoFunction, true
	case strings.HasPrefix(name, "go_") && seedTemplateRE.MatchString(name):
		return TemplateGo, true
	}
	return "", false
}

// unbuildable is the refusal of a language template with no builder
// here and no Dockerfile to build it with.
func unbuildable(name string) string {
	lang, _, _ := strings.Cut(name, "_")
	return fmt.Sprintf("build template %q needs a %s builder, which elafros does not have, and the source has no Dockerfile. "+
		"The builders are: go (also go_1_9 or any go_<version>), go-function (also go_1_9_fn or any go_<version>_fn, with _ENTRY_POINT), "+
		"and docker (any source with a Dockerfile). Add a Dockerfile to the source, or write template name: docker, go or go-function.", name, lang)
}

// goBuildSpec is one go build: the main package at pkgDir, for each
// platform, optionally through an overlay that adds the generated main.
type goBuildSpec struct {
	// dir is where go build runs (the package directory).
	dir string
	// target is the package argument of go build.
	target string
	// overlay is the -overlay file, or "".
	overlay   string
	platforms []platform
	// env is added to the environment of the go command (e.g. GOCACHE).
	env []string
	log io.Writer
	// outDir keeps the binaries between builds (one file per platform),
	// or is "" for a temporary directory. Kept, a binary lets the next go
	// build of an unchanged source skip the link, as ko's KOCACHE does: go
	// build compares the target's build ID with the one it would link and
	// leaves an up-to-date target alone.
	outDir string
	// then, when set, runs in a platform's goroutine as soon as its binary
	// is built (its layer is made while the other platforms still link).
	then func(p platform, bin []byte) error
}

// ldflags are the linker flags of every build: no symbol table or DWARF
// (the image is about half of ko's, which keeps them). The Go build ID is
// kept: it is what lets go build see that a kept binary is up to date
// (blanking it, -buildid=, relinked every build: 1.1 to 2 s of a 1.3 to
// 2.3 s warm build of examples/hello). It depends only on the inputs of
// the build (with -trimpath, not on the directory), so the image stays
// reproducible.
const ldflags = "-ldflags=-s -w"

// StepError is a failed build step with the tail of its output.
type StepError struct {
	// Step says what failed ("go build for linux/amd64").
	Step string
	// Err is the step's error.
	Err error
	// Output is the last lines of the step's output.
	Output string
}

func (e *StepError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("%s: %v:\n%s", e.Step, e.Err, e.Output)
}

func (e *StepError) Unwrap() error { return e.Err }

// tailLines is how many lines of a failed step's output a build's
// message keeps.
const tailLines = 20

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// goEnv is the environment of the go command for a platform: the
// process's, without what would change the build's meaning (GOFLAGS such
// as -mod=mod; the module's own vendor/mod settings stand), plus env.
func goEnv(p platform, env []string) []string {
	drop := map[string]bool{"GOFLAGS": true, "GOOS": true, "GOARCH": true, "CGO_ENABLED": true}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		drop[k] = true
	}
	var out []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if !drop[k] {
			out = append(out, e)
		}
	}
	out = append(out, "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	return append(out, env...)
}

// goBuild compiles the spec for each platform, all at once, and hands
// each binary to s.then. The platforms build concurrently, as ko's do: each go
// command is mostly one process at a time at its ends (loading packages,
// the link), so two of them keep the cores busier than one after the
// other, and the shared build cache is safe for concurrent use.
func goBuild(ctx context.Context, s goBuildSpec) error {
	if s.outDir == "" {
		tmp, err := os.MkdirTemp("", "elafros-gobuild-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		s.outDir = tmp
	}
	errs := make([]error, len(s.platforms))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range s.platforms {
		wg.Go(func() {
			bin, err := goBuildOne(ctx, s, p)
			if err == nil && s.then != nil {
				err = s.then(p, bin)
			}
			if err != nil {
				errs[i] = err
				cancel() // the build has failed: stop the other platforms
			}
		})
	}
	wg.Wait()
	// A compiler's message first: the others may only be cancellations
	// that it caused.
	var first error
	for _, err := range errs {
		var step *StepError
		if errors.As(err, &step) {
			return err
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// outLocks holds a *sync.Mutex per binary path: two builds of one source
// at once (a builder with Concurrency > 1) must not write one file while
// the other reads it.
var outLocks sync.Map

// goBuildOne compiles the spec for p into s.outDir and returns the binary.
func goBuildOne(ctx context.Context, s goBuildSpec, p platform) ([]byte, error) {
	exe := filepath.Join(s.outDir, "app-"+p.OS+"-"+p.Arch)
	mu, _ := outLocks.LoadOrStore(exe, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	args := []string{"build", "-trimpath", "-buildvcs=false", ldflags, "-o", exe}
	if s.overlay != "" {
		args = append(args, "-overlay="+s.overlay)
	}
	args = append(args, s.target)
	start := time.Now()
	out, err := runLogged(ctx, s.log, s.dir, goEnv(p, s.env), "go", args...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StepError{Step: "go build for " + p.String(), Err: err, Output: tail(out, tailLines)}
	}
	logf(s.log, "go build for %s took %s", p, time.Since(start).Round(time.Millisecond))
	return os.ReadFile(exe)
}

// runLogged runs a command in dir, copying its combined output to log,
// and returns that output.
func runLogged(ctx context.Context, log io.Writer, dir string, env []string, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	w := io.Writer(&out)
	if log != nil {
		w = io.MultiWriter(&out, log)
		_, _ = fmt.Fprintf(log, "$ %s %s\n", name, strings.Join(args, " "))
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	return out.String(), err
}

// logf writes a line to a build's log, if any.
func logf(log io.Writer, format string, args ...any) {
	if log != nil {
		_, _ = fmt.Fprintf(log, format+"\n", args...)
	}
}
