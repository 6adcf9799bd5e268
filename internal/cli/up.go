package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/reconcile"
)

// SourceDigestAnnotation records a digest of the working tree on revision
// templates built by "elafros up", so that an edit makes a new revision
// even before it is committed.
const SourceDigestAnnotation = v1alpha1.GroupName + "/sourceDigest"

func newUpCommand(s IOStreams) *cobra.Command {
	o := serve.Options{}
	var (
		verbose bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up [dir]",
		Short: "Build dir's elafros.yaml from the working tree, deploy it on the embedded control plane, and serve",
		Long: `up is the one command to see elafros work: it starts the embedded control plane
(as "elafros serve" does, with the same flags), builds the services of
dir/elafros.yaml from the working tree (committed or not), deploys them,
prints their URLs and traffic, and serves until interrupted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			o.Logger = slog.New(slog.NewTextHandler(s.ErrOut, &slog.HandlerOptions{Level: level}))
			o.BuildSource = abs
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv, err := Up(ctx, abs, o, timeout, s)
			if err != nil {
				return err
			}
			defer srv.Close()
			select {
			case <-ctx.Done():
				fmt.Fprintln(s.ErrOut, "stopping")
				return nil
			case err := <-srv.Errors():
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", serve.DefaultDataDir(), "where the store, unpacked images, logs and registry blobs live")
	f.StringVar(&o.APIAddr, "api-addr", serve.DefaultAPIAddr, "the API's address (port 0 picks a free port)")
	f.StringVar(&o.HTTPAddr, "http-addr", serve.DefaultHTTPAddr, "the router's address")
	f.StringVar(&o.RegistryAddr, "registry-addr", serve.DefaultRegistryAddr, "the OCI registry's address")
	f.StringVar(&o.Domain, "domain", serve.DefaultDomain, "the domain suffix: <route>.<namespace>.<domain>")
	f.BoolVar(&o.Sticky, "sticky", false, "keep each client on one revision during a canary (cookie)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug events")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the build and the rollout")
	return cmd
}

// Up starts the control plane, deploys dir's manifest from the working
// tree, and returns the running server; its last line of output is
// "Deployed to <url>".
func Up(ctx context.Context, dir string, o serve.Options, timeout time.Duration, s IOStreams) (*serve.Server, error) {
	file := filepath.Join(dir, manifest.DefaultFile)
	m, err := manifest.Load(file)
	var errs manifest.Errors
	if errors.As(err, &errs) {
		report("text", errs, s)
		return nil, &ExitError{Code: 1}
	}
	if err != nil {
		return nil, err
	}
	srv, err := serve.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.Out, "elafros: control plane up (API %s, router %s, registry %s)\n", srv.APIURL, srv.HTTPAddr, srv.RegistryAddr)
	digest, err := treeDigest(dir)
	if err != nil {
		srv.Close()
		return nil, err
	}
	deployer, sha := "", ""
	if p, err := build.Open(dir, true); err == nil {
		deployer, sha = p.Author, p.Commit
		if i := strings.Index(deployer, " <"); i > 0 {
			deployer = deployer[:i]
		}
	}
	var objs []reconcile.Object
	for _, d := range m.Documents {
		o := d.Object.(reconcile.Object)
		if spec := configSpec(o); spec != nil && spec.Build != nil {
			a := spec.RevisionTemplate.Annotations
			if a == nil {
				a = map[string]string{}
			}
			a[SourceDigestAnnotation] = digest
			if sha != "" {
				a[v1alpha1.GitCommitAnnotationKey] = sha
			}
			if deployer != "" {
				a[v1alpha1.DeployerAnnotationKey] = deployer
			}
			spec.RevisionTemplate.Annotations = a
		}
		objs = append(objs, o)
	}
	c := &deploy.Client{Store: srv.Store}
	applied, err := c.Apply(ctx, objs)
	if err != nil {
		srv.Close()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, port, _ := net.SplitHostPort(srv.HTTPAddr)
	var urls []string
	for _, a := range applied {
		var domain string
		switch reconcile.Kind(a.Kind) {
		case reconcile.KindService:
			fmt.Fprintf(s.Out, "  Deploying service [%s] from %s:\n", a.Name, dir)
			o, err := srv.Store.Get(ctx, reconcile.KindService, v1alpha1.DefaultNamespace, a.Name)
			if err != nil {
				srv.Close()
				return nil, err
			}
			svc, err := c.Wait(wctx, a.Name, o.GetGeneration(), func(step deploy.Step) { fmt.Fprintf(s.Out, "✓ %s\n", step) })
			if err != nil {
				srv.Close()
				return nil, upFailed(err, s)
			}
			domain = svc.Status.Domain
		case reconcile.KindRoute:
			fmt.Fprintf(s.Out, "  Deploying route [%s] from %s:\n", a.Name, dir)
			rt, err := waitRoute(wctx, c, a.Name)
			if err != nil {
				srv.Close()
				return nil, upFailed(err, s)
			}
			fmt.Fprintln(s.Out, "✓ Promoting")
			domain = rt.Status.Domain
		default:
			continue
		}
		if err := printTraffic(ctx, srv, a.Name, s.Out); err != nil {
			srv.Close()
			return nil, err
		}
		urls = append(urls, "http://"+domain+":"+port)
	}
	fmt.Fprintln(s.Out, "  Done. Serving until interrupted (Ctrl-C).")
	for _, u := range urls {
		fmt.Fprintf(s.Out, "Deployed to %s\n", u)
	}
	return srv, nil
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

func configSpec(o reconcile.Object) *v1alpha1.ConfigurationSpec {
	switch x := o.(type) {
	case *v1alpha1.Service:
		return &x.Spec.ConfigurationSpec
	case *v1alpha1.Configuration:
		return &x.Spec
	}
	return nil
}

// waitRoute waits until a route serves its spec with every revision Ready,
// and reports a failing revision behind it.
func waitRoute(ctx context.Context, c *deploy.Client, name string) (*v1alpha1.Route, error) {
	for {
		o, err := c.Store.Get(ctx, reconcile.KindRoute, v1alpha1.DefaultNamespace, name)
		if err == nil {
			rt := o.(*v1alpha1.Route)
			if rt.Status.ObservedGeneration == rt.Generation && rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete) {
				return rt, nil
			}
			for _, t := range rt.Spec.Rollout.Traffic {
				if t.ConfigurationName == "" {
					continue
				}
				co, err := c.Store.Get(ctx, reconcile.KindConfiguration, v1alpha1.DefaultNamespace, t.ConfigurationName)
				if err != nil {
					continue
				}
				cond := co.(*v1alpha1.Configuration).Status.Conditions.Get(v1alpha1.ConditionLatestRevisionReady)
				if cond != nil && cond.Status == "False" {
					return nil, &deploy.FailedError{Step: deploy.StepBuilding, Revision: co.(*v1alpha1.Configuration).Status.LatestCreatedRevisionName, Reason: cond.Reason, Detail: cond.Message}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for route %s: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printTraffic(ctx context.Context, srv *serve.Server, route string, w io.Writer) error {
	o, err := srv.Store.Get(ctx, reconcile.KindRoute, v1alpha1.DefaultNamespace, route)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  Name\tRevision\tTraffic")
	for _, t := range o.(*v1alpha1.Route).Status.Traffic {
		fmt.Fprintf(tw, "  %s\t%s\t%d%%\n", t.Name, t.RevisionName, t.Percent)
	}
	return tw.Flush()
}

// treeDigest hashes the files of dir (names and contents; hidden entries
// skipped), so that an uncommitted edit changes the revision template.
func treeDigest(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
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
