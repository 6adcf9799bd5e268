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
	f.StringVar(&o.DataDir, "data-dir", serve.DefaultDataDir(), "where the store, unpacked images, logs and the registry live")
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
	var objs []store.Object
	for _, d := range m.Documents {
		o := d.Object.(store.Object)
		if spec := deploy.ConfigurationSpecOf(o); spec != nil && spec.Build != nil {
			// What is built is the working tree, so its digest (not only the
			// commit) decides whether there is a new revision.
			(deploy.Provenance{SourceDigest: digest}).Stamp(o)
		}
		objs = append(objs, o)
	}
	c := deploy.New(srv.Store, v1alpha1.DefaultNamespace)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, o := range objs {
		if k := store.KindOf(o); k == store.KindService || k == store.KindRoute {
			fmt.Fprintf(s.Out, "  Deploying %s [%s] from %s:\n", strings.ToLower(string(k)), o.GetName(), dir)
		}
	}
	out, err := c.Ship(wctx, objs, deploy.ShipOptions{
		Provenance: deploy.Provenance{Commit: sha, Deployer: deployer},
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
