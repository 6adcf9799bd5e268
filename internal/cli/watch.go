package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/store"
)

// DefaultDebounce is how long the tree must be quiet after a change before
// up --watch rebuilds: an editor's save is often several writes (a
// temporary file, a rename, a chmod), and a formatter on save writes again.
const DefaultDebounce = 250 * time.Millisecond

// WatchOptions configure Watch.
type WatchOptions struct {
	// Debounce is the quiet time after a change before a rebuild.
	// Default DefaultDebounce.
	Debounce time.Duration
	// Timeout bounds each change's build and rollout. Default 10 minutes.
	Timeout time.Duration
}

// Watch redeploys dir on srv after every saved change until ctx ends (then
// it returns nil): each change that alters the tree's digest is compiled
// first (build.Check), and only a source that compiles is applied, through
// deploy.Ship with the Service's own strategy, so a canary gets its first
// step here as on a cluster. After each change it prints the traffic
// before and after. A compile error, a bad manifest or a revision that
// cannot start is printed and changes nothing that serves; the watch goes
// on. "Watching <dir> …" is printed once the watcher is armed and the tree
// has been compared with what is deployed (after a rebuild, if it differed).
func Watch(ctx context.Context, srv *serve.Server, dir string, o WatchOptions, s IOStreams) error {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	ign, err := newIgnorer(dir)
	if err != nil {
		return err
	}
	w, err := newTreeWatcher(dir, ign)
	if err != nil {
		return err
	}
	defer w.close()
	l := &watchLoop{srv: srv, dir: dir, o: o, s: s, c: deploy.New(srv.Store, v1alpha1.DefaultNamespace)}
	// A change saved between the first deploy and the watcher being armed
	// is not lost: the tree is compared with what is deployed, not with
	// the last event. "Watching" comes after that look, so that a save
	// made once it is printed is always reported as the event it is.
	if err := l.redeploy(ctx, nil); err != nil {
		return stopped(ctx, err)
	}
	fmt.Fprintf(s.Out, "Watching %s for changes (Ctrl-C stops).\n", dir)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.errs:
			// An overflow of the kernel's queue loses events: rebuild to
			// be sure nothing was missed.
			fmt.Fprintf(s.ErrOut, "watch: %v\n", err)
			timer.Reset(o.Debounce)
		case <-w.kick:
			timer.Reset(o.Debounce)
		case <-timer.C:
			if err := l.redeploy(ctx, w.take()); err != nil {
				return stopped(ctx, err)
			}
		}
	}
}

// stopped is nil when err is only ctx ending (Ctrl-C during a build).
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type watchLoop struct {
	srv *serve.Server
	dir string
	o   WatchOptions
	s   IOStreams
	c   *deploy.Client
}

// redeploy deploys the tree if its digest differs from what the built
// Services run. It returns an error only when watching cannot go on.
func (l *watchLoop) redeploy(ctx context.Context, changed []string) error {
	out := l.s.Out
	// .gitignore and .dockerignore may be what changed.
	ign, err := newIgnorer(l.dir)
	if err != nil {
		fmt.Fprintf(out, "✗ %v\n", err)
		return nil
	}
	digest, err := treeDigest(l.dir, ign)
	if err != nil {
		fmt.Fprintf(out, "✗ %v\n", err)
		return nil
	}
	m, err := manifest.Load(filepath.Join(l.dir, manifest.DefaultFile))
	var errs manifest.Errors
	if errors.As(err, &errs) {
		fmt.Fprintf(out, "\n%s changed: %s has errors; nothing applied.\n", describeChange(changed), manifest.DefaultFile)
		report("text", errs, IOStreams{Out: out, ErrOut: out})
		return l.stillServing(ctx, nil)
	}
	if err != nil {
		fmt.Fprintf(out, "✗ %v\n", err)
		return nil
	}
	objs := treeObjects(m, digest)
	if same, err := l.deployed(ctx, objs, digest); err != nil {
		return err
	} else if same {
		return nil // a save that changed nothing a build sees
	}
	fmt.Fprintf(out, "\n%s changed: rebuilding.\n", describeChange(changed))
	cctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	provenance := provenanceBeside(l.dir) // beside the compile checks
	for _, o := range objs {
		spec := deploy.ConfigurationSpecOf(o)
		if spec == nil || spec.Build == nil || spec.Build.Source != nil {
			continue // not built from this tree
		}
		if err := build.Check(cctx, l.dir, *spec.Build, nil, io.Discard); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(out, "✗ Building %s\n%s\n  Nothing applied.\n", o.GetName(), indent(err.Error()))
			return l.stillServing(ctx, objs)
		}
	}
	prov, _ := provenance()
	start := time.Now()
	shipped, err := l.c.Ship(cctx, objs, deploy.ShipOptions{
		Provenance: prov,
		Wait:       true,
		Progress:   func(p deploy.Progress) { fmt.Fprintf(out, "✓ %s\n", p.Step) },
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var failed *deploy.FailedError
		if errors.As(err, &failed) {
			fmt.Fprintf(out, "✗ %s\n  Revision %s failed: %s\n%s\n  Traffic did not move.\n", failed.Step, failed.Revision, failed.Reason, indent(failed.Detail))
			return l.stillServing(ctx, objs)
		}
		fmt.Fprintf(out, "✗ %v\n", err)
		return nil
	}
	for _, sh := range shipped.Shipped {
		if err := deploy.RenderTraffic(out, deploy.Text, deploy.TrafficView{Title: sh.Name, Before: sh.Before, After: sh.After}); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "  Deployed in %s. Watching.\n", time.Since(start).Round(10*time.Millisecond))
	return nil
}

// deployed tells whether every built Service or Configuration of objs
// already runs the tree of this digest.
func (l *watchLoop) deployed(ctx context.Context, objs []store.Object, digest string) (bool, error) {
	for _, o := range objs {
		spec := deploy.ConfigurationSpecOf(o)
		if spec == nil || spec.Build == nil {
			continue
		}
		got, err := l.srv.Store.Get(ctx, store.KindOf(o), v1alpha1.DefaultNamespace, o.GetName())
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if cur := deploy.ConfigurationSpecOf(got); cur == nil || cur.RevisionTemplate.Annotations[v1alpha1.SourceDigestAnnotationKey] != digest {
			return false, nil
		}
	}
	return true, nil
}

// stillServing prints what the routes of objs (every route, when objs is
// nil) serve, so that a refused change ends with what is live.
func (l *watchLoop) stillServing(ctx context.Context, objs []store.Object) error {
	names := map[string]bool{}
	for _, o := range objs {
		if k := store.KindOf(o); k == store.KindService || k == store.KindRoute {
			names[o.GetName()] = true
		}
	}
	routes, err := l.srv.Store.List(ctx, store.KindRoute, v1alpha1.DefaultNamespace, nil)
	if err != nil {
		return err
	}
	for _, r := range routes {
		rt := r.(*v1alpha1.Route)
		if objs != nil && !names[rt.Name] {
			continue
		}
		fmt.Fprintf(l.s.Out, "  Still serving:\n")
		if err := deploy.RenderTraffic(l.s.Out, deploy.Text, deploy.TrafficView{Title: rt.Name, After: rt.Status.Traffic}); err != nil {
			return err
		}
	}
	return nil
}

// describeChange names the changed files, at most three.
func describeChange(paths []string) string {
	switch {
	case len(paths) == 0:
		return "The tree"
	case len(paths) > 3:
		return fmt.Sprintf("%s and %d more", strings.Join(paths[:3], ", "), len(paths)-3)
	}
	return strings.Join(paths, ", ")
}

// treeWatcher reports changes under a directory through fsnotify (inotify
// on Linux, kqueue, ReadDirectoryChangesW), one watch per directory that
// is not ignored; directories created later are added as they appear.
type treeWatcher struct {
	dir  string
	ign  *ignorer
	fw   *fsnotify.Watcher
	kick chan struct{}
	errs chan error
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	changed map[string]bool
}

func newTreeWatcher(dir string, ign *ignorer) (*treeWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	w := &treeWatcher{dir: dir, ign: ign, fw: fw, kick: make(chan struct{}, 1), errs: make(chan error, 1),
		done: make(chan struct{}), changed: map[string]bool{}}
	if err := w.add(dir); err != nil {
		_ = fw.Close()
		return nil, err
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// skipDir tells whether a directory is not watched: hidden ones (.git),
// vendor (generated by go mod vendor, not edited, and often thousands of
// directories: one watch each), and ignored ones. The digest still covers
// vendor, so a vendor change is deployed with the next watched change.
func (w *treeWatcher) skipDir(p string) bool {
	if p == w.dir {
		return false
	}
	n := filepath.Base(p)
	return strings.HasPrefix(n, ".") || n == "vendor" || w.ign.ignored(p, true)
}

// add watches p and the directories below it.
func (w *treeWatcher) add(p string) error {
	return filepath.WalkDir(p, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone again already
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if w.skipDir(p) {
			return filepath.SkipDir
		}
		if err := w.fw.Add(p); err != nil {
			return fmt.Errorf("watching %s: %w", p, err)
		}
		return nil
	})
}

func (w *treeWatcher) run() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			select {
			case w.errs <- err:
			default:
			}
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			w.event(ev)
		}
	}
}

func (w *treeWatcher) event(ev fsnotify.Event) {
	if ev.Op == fsnotify.Chmod {
		return // touch, or an editor's metadata: not a change of content
	}
	rel, err := filepath.Rel(w.dir, ev.Name)
	if err != nil {
		return
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if strings.HasPrefix(part, ".") && part != ".gitignore" && part != ".dockerignore" {
			return // .git, editor swap files (.main.go.swp)
		}
	}
	info, statErr := os.Lstat(ev.Name)
	isDir := statErr == nil && info.IsDir()
	if w.ign.ignored(ev.Name, isDir) {
		return
	}
	if ev.Has(fsnotify.Create) && isDir && !w.skipDir(ev.Name) {
		if err := w.add(ev.Name); err != nil {
			select {
			case w.errs <- err:
			default:
			}
		}
	}
	w.mu.Lock()
	w.changed[filepath.ToSlash(rel)] = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// take returns the changed paths since the last take, sorted.
func (w *treeWatcher) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.changed))
	for p := range w.changed {
		out = append(out, p)
	}
	clear(w.changed)
	sort.Strings(out)
	return out
}

func (w *treeWatcher) close() {
	close(w.done)
	_ = w.fw.Close()
	w.wg.Wait()
}

// ignorer matches the paths a build does not see: what the repository's
// .gitignore files (from its root down, read with go-git's gitignore
// package) and dir's .dockerignore exclude. .dockerignore lines are read
// as gitignore patterns rooted at dir; the two syntaxes agree on the
// common cases (names, globs, **, ! negation).
type ignorer struct {
	root string // the repository's working tree, or dir outside git
	m    gitignore.Matcher
}

func newIgnorer(dir string) (*ignorer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root := abs
	if repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true}); err == nil {
		if wt, err := repo.Worktree(); err == nil {
			root = wt.Filesystem.Root()
		}
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		root, rel = abs, "."
	}
	var domain []string
	if rel != "." {
		domain = strings.Split(filepath.ToSlash(rel), "/")
	}
	// The .gitignore files above dir, from the root down: ReadPatterns
	// below reads only dir's own and those beneath it.
	var ps []gitignore.Pattern
	for i := 0; i < len(domain); i++ {
		more, err := readPatterns(filepath.Join(root, filepath.Join(domain[:i]...), ".gitignore"), domain[:i])
		if err != nil {
			return nil, err
		}
		ps = append(ps, more...)
	}
	below, err := gitignore.ReadPatterns(osfs.New(root), domain)
	if err != nil {
		return nil, fmt.Errorf("reading the .gitignore files of %s: %w", dir, err)
	}
	ps = append(ps, below...)
	docker, err := readPatterns(filepath.Join(abs, ".dockerignore"), domain)
	if err != nil {
		return nil, err
	}
	ps = append(ps, docker...)
	return &ignorer{root: root, m: gitignore.NewMatcher(ps)}, nil
}

// readPatterns reads one ignore file (none: no patterns).
func readPatterns(file string, domain []string) ([]gitignore.Pattern, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	defer f.Close()
	var ps []gitignore.Pattern
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, domain))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return ps, nil
}

// ignored tells whether the absolute path p is excluded.
func (i *ignorer) ignored(p string, isDir bool) bool {
	if i == nil {
		return false
	}
	rel, err := filepath.Rel(i.root, p)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return false
	}
	return i.m.Match(strings.Split(filepath.ToSlash(rel), "/"), isDir)
}
