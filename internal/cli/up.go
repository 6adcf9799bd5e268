package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/store"
)

// UpOptions are "elafros up"'s.
type UpOptions struct {
	IO       IOStreams
	Dir      string        // absolute
	Plane    serve.Options // its Logger and BuildSource are made by runUp
	Verbose  bool
	Watch    bool
	Timeout  time.Duration
	Debounce time.Duration
}

func newUpCommand(s IOStreams, runF func(context.Context, *UpOptions) error) *cobra.Command {
	o := &UpOptions{IO: s}
	cmd := &cobra.Command{
		Use:   "up [dir]",
		Short: "Build dir's elafros.yaml from the working tree, deploy it on the embedded control plane, and serve",
		Long: `up is the one command to see elafros work: it starts the embedded control plane
(as "elafros serve" does, with the same flags), builds the services of
dir/elafros.yaml from the working tree (committed or not), deploys them,
prints their URLs and traffic, and serves until interrupted.

With --watch it then rebuilds on every saved change and deploys each as a
new revision with the service's strategy (a canary gets its first step),
printing the traffic after each change. A change that does not compile is
printed and not applied: the last good revision keeps serving.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPlane(&o.Plane); err != nil {
				return err
			}
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			o.Dir = abs
			if o.Debounce <= 0 {
				return fmt.Errorf("--debounce %s: want a positive duration, e.g. %s", o.Debounce, DefaultDebounce)
			}
			return orRun(runF, runUp)(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	planeFlags(f, &o.Plane, &o.Verbose)
	f.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long to wait for the build and the rollout (with --watch: of each change)")
	f.BoolVarP(&o.Watch, "watch", "w", false, "after the first deploy, rebuild on every saved change and deploy it as a new revision with the service's strategy")
	f.DurationVar(&o.Debounce, "debounce", DefaultDebounce, "with --watch: how long the tree must be quiet after a change before rebuilding")
	return cmd
}

func runUp(ctx context.Context, o *UpOptions) error {
	s, p := o.IO, o.Plane
	p.Logger = logger(s.ErrOut, slog.LevelWarn, o.Verbose)
	p.BuildSource = o.Dir
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := Up(ctx, o.Dir, p, o.Timeout, s)
	if err != nil {
		return err
	}
	defer srv.Close()
	watched := make(chan error, 1)
	if o.Watch {
		go func() {
			watched <- Watch(ctx, srv, o.Dir, WatchOptions{Debounce: o.Debounce, Timeout: o.Timeout}, s)
		}()
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.ErrOut, "stopping")
		if o.Watch {
			// A build in flight ends with ctx; an error here is the
			// watch's own, from before it could start.
			return <-watched
		}
		return nil
	case err := <-srv.Errors():
		return err
	case err := <-watched:
		if err == nil { // ctx ended while a change was deploying
			fmt.Fprintln(s.ErrOut, "stopping")
		}
		return err
	}
}

// Up starts the control plane, deploys dir's manifest from the working
// tree, and returns the running server; its last line of output is
// "Deployed to <url>".
func Up(ctx context.Context, dir string, o serve.Options, timeout time.Duration, s IOStreams) (*serve.Server, error) {
	m, err := loadManifest(dir, s)
	if err != nil {
		return nil, err
	}
	provenance := provenanceBeside(dir)
	srv, err := serve.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.Out, "elafros: control plane up (API %s, router %s, registry %s)\n", srv.APIURL, srv.HTTPAddr, srv.RegistryAddr)
	ign, err := newIgnorer(dir)
	if err != nil {
		srv.Close()
		return nil, err
	}
	digest, err := treeDigest(dir, ign)
	if err != nil {
		srv.Close()
		return nil, err
	}
	objs := treeObjects(m, digest)
	c := deploy.New(srv.Store, v1alpha1.DefaultNamespace)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, o := range objs {
		if k := store.KindOf(o); k == store.KindService || k == store.KindRoute {
			fmt.Fprintf(s.Out, "  Deploying %s [%s] from %s:\n", strings.ToLower(string(k)), o.GetName(), dir)
		}
	}
	prov, note := provenance()
	fmt.Fprint(s.Out, note)
	out, err := c.Ship(wctx, objs, deploy.ShipOptions{
		Provenance: prov,
		Wait:       true,
		Progress:   func(p deploy.Progress) { fmt.Fprintf(s.Out, "✓ %s\n", p.Step) },
	})
	if err != nil {
		srv.Close()
		return nil, upFailed(err, s)
	}
	_, port, _ := net.SplitHostPort(srv.HTTPAddr)
	var urls []string
	for _, sh := range out.Shipped {
		if err := deploy.RenderTraffic(s.Out, deploy.Text, deploy.TrafficView{Title: sh.Name, After: sh.After}); err != nil {
			srv.Close()
			return nil, err
		}
		urls = append(urls, deploy.TargetURL("http", sh.Domain, port, ""))
	}
	fmt.Fprintln(s.Out, "  Done. Serving until interrupted (Ctrl-C).")
	for _, u := range urls {
		fmt.Fprintf(s.Out, "Deployed to %s\n", u)
	}
	return srv, nil
}

// loadManifest reads dir's elafros.yaml; its errors are reported (file:
// line:column) and become exit status 1.
func loadManifest(dir string, s IOStreams) (*manifest.Manifest, error) {
	m, err := manifest.Load(filepath.Join(dir, manifest.DefaultFile))
	var errs manifest.Errors
	if errors.As(err, &errs) {
		report("text", errs, s)
		return nil, &ExitError{Code: 1}
	}
	return m, err
}

// treeObjects are the manifest's objects, each built one stamped with the
// working tree's digest: what is built is the working tree, so its digest
// (not only the commit) decides whether there is a new revision.
func treeObjects(m *manifest.Manifest, digest string) []store.Object {
	var objs []store.Object
	for _, d := range m.Documents {
		o := d.Object.(store.Object)
		if spec := deploy.ConfigurationSpecOf(o); spec != nil && spec.Build != nil {
			(deploy.Provenance{SourceDigest: digest}).Stamp(o)
		}
		objs = append(objs, o)
	}
	return objs
}

// treeProvenance is the commit and author of dir's HEAD, when dir is in a
// git repository. A tree with uncommitted changes is built as it is (up
// is for the inner loop); note says so, and its image's
// org.opencontainers.image.revision label says <sha>-dirty.
func treeProvenance(dir string) (p deploy.Provenance, note string) {
	src, err := build.Open(dir, true)
	if err != nil {
		return deploy.Provenance{}, ""
	}
	deployer := src.Author
	if i := strings.Index(deployer, " <"); i > 0 {
		deployer = deployer[:i]
	}
	if src.Dirty {
		note = fmt.Sprintf("  Source: %s at %.12s-dirty (uncommitted changes are built as they are)\n", src.Repository, src.Commit)
	}
	return deploy.Provenance{Commit: src.Commit, Deployer: deployer}, note
}

// provenanceBeside starts treeProvenance (a git status: 0.1-0.2 s on a
// large tree) beside other work; the function it returns waits for it.
func provenanceBeside(dir string) func() (deploy.Provenance, string) {
	type result struct {
		p    deploy.Provenance
		note string
	}
	ch := make(chan result, 1)
	go func() {
		p, note := treeProvenance(dir)
		ch <- result{p, note}
	}()
	return func() (deploy.Provenance, string) {
		r := <-ch
		return r.p, r.note
	}
}

func upFailed(err error, s IOStreams) error {
	var failed *deploy.FailedError
	if errors.As(err, &failed) {
		fmt.Fprintf(s.Out, "✗ %s\n  Revision %s failed: %s\n%s\n", failed.Step, failed.Revision, failed.Reason, indent(failed.Detail))
		return &ExitError{Code: 1}
	}
	return err
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "    " + lines[i]
	}
	return strings.Join(lines, "\n")
}

// treeDigest hashes the files of dir that a build can see (names and
// contents; hidden entries and what .gitignore or .dockerignore exclude
// are skipped), so that an uncommitted edit changes the revision template
// and a build product or an editor's swap file does not.
func treeDigest(dir string, ign *ignorer) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && (strings.HasPrefix(d.Name(), ".") || ign.ignored(p, d.IsDir())) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading the working tree: %w", err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
