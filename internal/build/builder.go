package build

import (
	git "github.com/go-git/go-git/v5"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/github"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// Reasons of a failed build.
const (
	ReasonBuildStepFailed = "BuildStepFailed"
	ReasonSourceMissing   = "SourceMissing"
	ReasonUnknownBuilder  = "UnknownBuilder"
)

// Options configure a Builder.
type Options struct {
	// WorkDir holds clones and caches. Required.
	WorkDir string
	// Registry is the default destination registry host: an image with
	// no destination goes to <Registry>/<namespace>/<name>.
	Registry string
	// DefaultSource is the local directory built when a BuildSpec has no
	// source (the working tree of "elafros up").
	DefaultSource string
	// AllowDirty builds DefaultSource even with uncommitted changes.
	AllowDirty bool
	// Logger receives build events. Default: discarded.
	Logger *slog.Logger
	// Keychain authenticates pulls and pushes. Default: the Docker config
	// and GITHUB_TOKEN (for ghcr.io).
	Keychain authn.Keychain
	// Concurrency is how many builds run at once. Default 1.
	Concurrency int
	// GoEnv is added to the environment of the go command, e.g.
	// GOCACHE=/some/dir.
	GoEnv []string
	// DockerHost is the daemon the docker builder talks to (DOCKER_HOST,
	// e.g. unix:///run/user/1000/docker.sock). Default: the environment's.
	DockerHost string
}

// Builder builds images from BuildSpecs; it implements reconcile.Builder.
type Builder struct {
	opts Options
	sem  chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	builds map[string]*record

	// layers knows the /app layers of binaries built before.
	layers *layerCache
}

var _ reconcile.Builder = (*Builder)(nil)

// record is one build's state and log.
type record struct {
	mu    sync.Mutex
	state reconcile.BuildState
	log   bytes.Buffer
}

func (r *record) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Write(p)
}

// New returns a Builder.
func New(opts Options) (*Builder, error) {
	if opts.WorkDir == "" {
		return nil, errors.New("build: Options.WorkDir is required (it holds clones and caches)")
	}
	abs, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("build: work directory %s: %w", opts.WorkDir, err)
	}
	opts.WorkDir = abs
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.NewMultiKeychain(authn.DefaultKeychain, github.Keychain)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	return &Builder{opts: opts, sem: make(chan struct{}, opts.Concurrency), builds: map[string]*record{},
		layers: newLayerCache(filepath.Join(opts.WorkDir, "layers"))}, nil
}

func key(namespace, name string) string { return namespace + "/" + name }

// Start begins the build namespace/name in the background; starting a
// known build again does nothing.
func (b *Builder) Start(ctx context.Context, namespace, name string, spec v1alpha1.BuildSpec, image string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := key(namespace, name)
	if _, ok := b.builds[k]; ok {
		return nil
	}
	rec := &record{}
	b.builds[k] = rec
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		// The build outlives the request that started it.
		state := b.run(context.WithoutCancel(ctx), namespace, name, spec, image, rec)
		rec.mu.Lock()
		rec.state = state
		rec.mu.Unlock()
	}()
	return nil
}

// Status reports the build namespace/name; found is false for a build
// never started.
func (b *Builder) Status(_ context.Context, namespace, name string) (reconcile.BuildState, bool, error) {
	b.mu.Lock()
	rec, ok := b.builds[key(namespace, name)]
	b.mu.Unlock()
	if !ok {
		return reconcile.BuildState{}, false, nil
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.state, true, nil
}

// Log is the full output of the build namespace/name so far.
func (b *Builder) Log(namespace, name string) string {
	b.mu.Lock()
	rec, ok := b.builds[key(namespace, name)]
	b.mu.Unlock()
	if !ok {
		return ""
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.log.String()
}

// Close waits for the running builds.
func (b *Builder) Close() error {
	b.wg.Wait()
	return nil
}

// BuildError is a failed build: its Reason and Message are those of the
// BuildState.
type BuildError struct {
	Reason, Message string
}

func (e *BuildError) Error() string { return e.Reason + ": " + e.Message }

// Build builds namespace/name synchronously and records it (Status and
// Log report it afterwards). A failed build returns its state (Failed,
// with Reason and Message) and a *BuildError.
func (b *Builder) Build(ctx context.Context, namespace, name string, spec v1alpha1.BuildSpec, image string) (reconcile.BuildState, error) {
	rec := &record{}
	b.mu.Lock()
	b.builds[key(namespace, name)] = rec
	b.mu.Unlock()
	state := b.run(ctx, namespace, name, spec, image, rec)
	rec.mu.Lock()
	rec.state = state
	rec.mu.Unlock()
	if state.Failed {
		return state, &BuildError{Reason: state.Reason, Message: state.Message}
	}
	return state, nil
}

// run builds, one of Concurrency at a time, and returns the final state.
func (b *Builder) run(ctx context.Context, namespace, name string, spec v1alpha1.BuildSpec, image string, log io.Writer) reconcile.BuildState {
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return failed(ReasonBuildStepFailed, "waiting for a build slot: "+ctx.Err().Error())
	}
	defer func() { <-b.sem }()
	start := time.Now()
	lg := b.opts.Logger.With("namespace", namespace, "name", name, "template", spec.Template.Name)
	lg.Info("build started")
	state := b.build(ctx, namespace, name, spec, image, log)
	if state.Failed {
		lg.Warn("build failed", "reason", state.Reason, "message", state.Message, "duration", time.Since(start))
		_, _ = fmt.Fprintf(log, "build failed: %s: %s\n", state.Reason, state.Message)
	} else {
		lg.Info("build done", "image", state.Image, "duration", time.Since(start))
		_, _ = fmt.Fprintf(log, "built %s in %s\n", state.Image, time.Since(start).Round(time.Millisecond))
	}
	return state
}

func failed(reason, message string) reconcile.BuildState {
	return reconcile.BuildState{Done: true, Failed: true, Reason: reason, Message: message}
}

func (b *Builder) build(ctx context.Context, namespace, name string, spec v1alpha1.BuildSpec, image string, log io.Writer) reconcile.BuildState {
	tmpl, known := Builtin(spec.Template.Name)
	if !known && !seedTemplateRE.MatchString(spec.Template.Name) {
		return failed(ReasonUnknownBuilder, fmt.Sprintf("unknown build template %q: the accepted ones are %s", spec.Template.Name, strings.Join(Templates, ", ")))
	}
	dest := image
	if dest == "" {
		dest, _ = spec.Template.Argument(v1alpha1.ArgImage)
	}
	if dest == "" {
		if b.opts.Registry == "" {
			return failed(ReasonBuildStepFailed, "no destination image: set the revision's image, the _IMAGE argument, or the builder's default registry")
		}
		dest = b.opts.Registry + "/" + namespace + "/" + name
	}

	start := time.Now()
	prov, settle, err := b.source(ctx, namespace, name, spec, log)
	if err != nil {
		return failed(ReasonSourceMissing, err.Error())
	}
	logf(log, "source %s at %s (%s)", prov.Dir, prov.Commit, time.Since(start).Round(time.Millisecond))
	pkg, _ := spec.Template.Argument(ArgPackage)
	if pkg == "" {
		pkg = "."
	}
	pkgDir := filepath.Join(prov.Dir, filepath.FromSlash(pkg))
	if rel, err := filepath.Rel(prov.Root, pkgDir); err != nil || strings.HasPrefix(rel, "..") {
		return failed(ReasonBuildStepFailed, fmt.Sprintf("%s %q leaves the repository", ArgPackage, pkg))
	}

	if !known {
		// A language template of the seed's kind (nodejs_8_9_4) that no
		// builder here implements: a Dockerfile says how to build it.
		if _, err := os.Stat(filepath.Join(pkgDir, "Dockerfile")); err != nil {
			return failed(ReasonUnknownBuilder, unbuildable(spec.Template.Name))
		}
		tmpl = TemplateDocker
		fmt.Fprintf(log, "template %s: building with the docker builder (the source has a Dockerfile)\n", spec.Template.Name)
	}

	// The working tree's git status settles while go builds; a tree that
	// is refused (dirty, not allowed) stops the build before anything is
	// pushed, with the same SourceMissing as if it had been read first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var settled error
	settledDone := make(chan struct{})
	go func() {
		defer close(settledDone)
		start := time.Now()
		if settled = settle(); settled != nil {
			cancel()
			return
		}
		status := "clean"
		if prov.Dirty {
			status = "uncommitted changes, built as they are"
		}
		logf(log, "git status: %s (%s)", status, time.Since(start).Round(time.Millisecond))
	}()
	sourceReady := func() error {
		<-settledDone
		return settled
	}

	var ref string
	switch tmpl {
	case TemplateDocker:
		// docker pushes as it builds: nothing starts before the source is
		// known to be buildable.
		if err = sourceReady(); err == nil {
			ref, err = dockerBuild(ctx, pkgDir, dest, b.opts.DockerHost, b.opts.Keychain, log)
		}
	default:
		ref, err = b.goImage(ctx, tmpl, spec, pkgDir, dest, prov, sourceReady, log)
	}
	if serr := sourceReady(); serr != nil {
		return failed(ReasonSourceMissing, serr.Error())
	}
	if err != nil {
		return failed(ReasonBuildStepFailed, err.Error())
	}
	return reconcile.BuildState{Done: true, Image: ref, Source: prov.ImageSource()}
}

// source fetches the spec's source, or opens the default one. settle
// finishes the provenance (a working tree's git status, see openLazy); it
// must return before the Provenance's Dirty is read.
func (b *Builder) source(ctx context.Context, namespace, name string, spec v1alpha1.BuildSpec, log io.Writer) (*Provenance, func() error, error) {
	settled := func() error { return nil }
	if spec.Source != nil && spec.Source.Git != nil {
		g := spec.Source.Git
		dir := filepath.Join(b.opts.WorkDir, "src", namespace, name)
		_, _ = fmt.Fprintf(log, "cloning %s at %s\n", g.URL, g.Commit)
		p, err := Clone(ctx, g.URL, g.Commit, dir)
		return p, settled, err
	}
	if b.opts.DefaultSource == "" {
		return nil, nil, errors.New("the build has no source and the builder no default source directory")
	}
	_, _ = fmt.Fprintf(log, "building %s\n", b.opts.DefaultSource)
	p, settle, err := openLazy(b.opts.DefaultSource, b.opts.AllowDirty)
	if err != nil && b.opts.AllowDirty && errors.Is(err, git.ErrRepositoryNotExists) {
		// A working tree outside git (a newcomer's first directory) still
		// builds; it just has no commit to record.
		abs, aerr := filepath.Abs(b.opts.DefaultSource)
		if aerr != nil {
			return nil, nil, aerr
		}
		_, _ = fmt.Fprintf(log, "%s is not in a git repository: building it without commit provenance\n", abs)
		return &Provenance{Repository: "file://" + abs, Context: ".", Root: abs, Dir: abs, Dirty: true}, settled, nil
	}
	return p, settle, err
}

// goImage builds with the go or go-function builder and pushes the index.
// sourceReady returns once the provenance is complete (nil) or the source
// refused; it is waited for before the image's labels are written.
func (b *Builder) goImage(ctx context.Context, tmpl string, spec v1alpha1.BuildSpec, pkgDir, dest string, prov *Provenance, sourceReady func() error, log io.Writer) (string, error) {
	platSpec, ok := spec.Template.Argument(ArgPlatforms)
	if !ok || platSpec == "" {
		platSpec = DefaultPlatforms
	}
	plats, err := parsePlatforms(platSpec)
	if err != nil {
		return "", err
	}
	s, cleanup, err := goSpecFor(ctx, tmpl, spec, pkgDir, plats, b.opts.GoEnv, log)
	if err != nil {
		return "", err
	}
	defer cleanup()
	// The base is resolved (a pull, for a named one) while go builds.
	type baseResult struct {
		bases     map[platform]v1.Image
		isDefault bool
		err       error
	}
	based := make(chan baseResult, 1)
	go func() {
		start := time.Now()
		baseRef, _ := spec.Template.Argument(v1alpha1.ArgBaseImage)
		bases, isDefault, err := baseImages(ctx, baseRef, plats, b.opts.Keychain)
		logf(log, "base resolved (%s)", time.Since(start).Round(time.Millisecond))
		based <- baseResult{bases, isDefault, err}
	}()
	// Each platform's layer is made in its own goroutine as soon as its
	// binary is linked, from the layer cache when the binary is one built
	// before.
	layers := make(map[platform]v1.Layer, len(plats))
	var layersMu sync.Mutex
	s.then = func(p platform, bin []byte) error {
		start := time.Now()
		l, cached, err := b.layers.appLayer(bin)
		if err != nil {
			return fmt.Errorf("/app layer for %s: %w", p, err)
		}
		size, err := l.Size()
		if err != nil {
			return fmt.Errorf("/app layer for %s: %w", p, err)
		}
		how := "compressed"
		if cached {
			how = "known from the layer cache"
		}
		logf(log, "/app layer for %s: binary %d bytes, layer %d bytes, %s (%s)", p, len(bin), size, how, time.Since(start).Round(time.Millisecond))
		layersMu.Lock()
		layers[p] = l
		layersMu.Unlock()
		return nil
	}
	s.outDir = b.binDir(s, prov)
	start := time.Now()
	err = goBuild(ctx, s)
	logf(log, "go build, all platforms (%s)", time.Since(start).Round(time.Millisecond))
	base := <-based
	if err != nil {
		return "", err
	}
	bases, isDefault := base.bases, base.isDefault
	if base.err != nil {
		return "", base.err
	}
	if err := sourceReady(); err != nil {
		return "", err
	}
	var images []platformImage
	for _, p := range plats {
		img, err := appImage(bases[p], p, layers[p], isDefault, prov)
		if err != nil {
			return "", fmt.Errorf("image for %s: %w", p, err)
		}
		images = append(images, platformImage{p, img})
	}
	start = time.Now()
	ref, err := push(ctx, dest, imageIndex(images), b.opts.Keychain)
	if err != nil {
		return "", err
	}
	logf(log, "pushed %s as %s (%s)", dest, ref, time.Since(start).Round(time.Millisecond))
	return ref, nil
}

// binDir is where the binaries of s are kept between builds: one
// directory per repository, package and target, not per checkout, so that
// a revision cloned into a directory of its own still finds the binary of
// the one before. Sharing is safe: go build keeps a binary only when its
// build ID says that it is what the build would link (with -trimpath the
// checkout's path is not part of it), and outLocks serializes the builds
// of one file.
func (b *Builder) binDir(s goBuildSpec, prov *Provenance) string {
	rel, err := filepath.Rel(prov.Root, s.dir)
	if err != nil {
		rel = s.dir
	}
	h := sha256.Sum256([]byte(prov.Repository + "\x00" + filepath.ToSlash(rel) + "\x00" + s.target))
	return filepath.Join(b.opts.WorkDir, "bin", hex.EncodeToString(h[:12]))
}

// goSpecFor is the go build of a go or go-function template: for a
// function, the generated main in an overlay (removed by cleanup).
// inModule says, before go does in words a newcomer may not place, that
// the go builders build a Go module: pkgDir or a directory above it must
// hold go.mod (unless env turns modules off).
func inModule(pkgDir string, env []string) error {
	mode := os.Getenv("GO111MODULE")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GO111MODULE="); ok {
			mode = v
		}
	}
	if mode == "off" {
		return nil
	}
	for dir := pkgDir; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return fmt.Errorf("no go.mod in %s or any directory above it: the go builders build a Go module; run `go mod init <module path>` at the root of the source (and commit go.mod), or use a Dockerfile with the docker template", pkgDir)
		}
		dir = up
	}
}

func goSpecFor(ctx context.Context, tmpl string, spec v1alpha1.BuildSpec, pkgDir string, plats []platform, env []string, log io.Writer) (goBuildSpec, func(), error) {
	s := goBuildSpec{dir: pkgDir, target: ".", platforms: plats, env: env, log: log}
	if err := inModule(pkgDir, env); err != nil {
		return s, nil, err
	}
	if tmpl != TemplateGoFunction {
		return s, func() {}, nil
	}
	entry, _ := spec.Template.Argument(v1alpha1.ArgEntryPoint)
	ip, err := importPath(ctx, pkgDir, env)
	if err != nil {
		return s, nil, err
	}
	if err := checkEntryPoint(pkgDir, ip, entry); err != nil {
		return s, nil, err
	}
	tmp, err := os.MkdirTemp("", "elafros-fn-")
	if err != nil {
		return s, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	overlay, mainDir, err := functionOverlay(tmp, pkgDir, ip, entry)
	if err != nil {
		cleanup()
		return s, nil, err
	}
	s.overlay, s.target = overlay, "./"+filepath.Base(mainDir)
	return s, cleanup, nil
}
