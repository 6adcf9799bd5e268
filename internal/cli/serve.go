package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local/serve"
)

// ServeOptions are "elafros serve"'s.
type ServeOptions struct {
	IO         IOStreams
	Plane      serve.Options // its Logger is made by runServe from Verbose
	Verbose    bool
	Reset, Yes bool
}

func newServeCommand(s IOStreams, runF func(context.Context, *ServeOptions) error) *cobra.Command {
	o := &ServeOptions{IO: s}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the embedded control plane: the API, a registry, revision processes and the router",
		Long: `serve runs elafros on this machine: the elafros.dev API (in the Kubernetes REST
dialect, so the seed's curl examples work), an OCI registry for builds, every
Ready revision as a process, and a router that splits real HTTP traffic:
http://<service>.<namespace>.localhost:8080. It runs until interrupted.

Everything lives in --data-dir and survives a restart or a crash: the next
serve runs every Ready revision again from its unpacked image, on the same
hosts, without building or pulling. One serve owns a data directory at a
time. To start over, elafros serve --reset --yes deletes the store, the
registry's images, the unpacked images, logs and builds, then serves.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkPlane(&o.Plane); err != nil {
				return err
			}
			if o.Yes && !o.Reset {
				return errors.New("--yes confirms --reset; it does nothing alone")
			}
			if o.Reset && !o.Yes {
				return fmt.Errorf("--reset deletes every deployment, pushed image, unpacked image, log and build in %s; add --yes to confirm", o.Plane.DataDir)
			}
			return orRun(runF, runServe)(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	planeFlags(f, &o.Plane, &o.Verbose)
	f.BoolVar(&o.Reset, "reset", false, "delete everything in --data-dir first (needs --yes)")
	f.BoolVar(&o.Yes, "yes", false, "confirm --reset")
	return cmd
}

// logger is a text logger to w at info level, or debug when verbose.
func logger(w io.Writer, base slog.Level, verbose bool) *slog.Logger {
	if verbose {
		base = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: base}))
}

func runServe(ctx context.Context, o *ServeOptions) error {
	s, p := o.IO, o.Plane
	p.Logger = logger(s.ErrOut, slog.LevelInfo, o.Verbose)
	if o.Reset {
		if err := serve.Reset(p.DataDir, p.Logger); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "Reset %s\n", p.DataDir)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := serve.Start(ctx, p)
	if err != nil {
		return err
	}
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.HTTPAddr)
	fmt.Fprintf(s.Out, "elafros serve\n  API:      %s\n  Router:   http://<service>.<namespace>.%s:%s\n  Registry: %s\n  Data:     %s\n",
		srv.APIURL, srv.Domain, port, srv.RegistryAddr, p.DataDir)
	fmt.Fprintf(s.Out, "Push images to %s, then: elafros deploy --server %s --service NAME --image %s/NAME@sha256:...\n", srv.RegistryAddr, srv.APIURL, srv.RegistryAddr)
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.Out, "stopping")
		return nil
	case err := <-srv.Errors():
		return err
	}
}

// checkPlane refuses plane flags that parse but mean nothing.
func checkPlane(o *serve.Options) error {
	if o.RouterLoops < -1 {
		return fmt.Errorf("--router-loops %d: want -1 (a goroutine per connection), 0 (one loop per two CPUs) or a number of loops", o.RouterLoops)
	}
	return nil
}

// planeFlags are the flags of the embedded control plane, which serve and
// up both start: one declaration, so the two commands cannot drift apart.
func planeFlags(f *pflag.FlagSet, o *serve.Options, verbose *bool) {
	f.StringVar(&o.DataDir, "data-dir", serve.DefaultDataDir(), "where the store, registry, unpacked images and logs live")
	f.StringVar(&o.APIAddr, "api-addr", serve.DefaultAPIAddr, "the API's address (port 0 picks a free port and prints it)")
	f.StringVar(&o.HTTPAddr, "http-addr", serve.DefaultHTTPAddr, "the router's address")
	f.StringVar(&o.RegistryAddr, "registry-addr", serve.DefaultRegistryAddr, "the OCI registry's address")
	f.StringVar(&o.Domain, "domain", serve.DefaultDomain, "the domain suffix: <route>.<namespace>.<domain>")
	f.BoolVar(&o.Sticky, "sticky", false, "keep each client on one revision during a canary (cookie)")
	f.IntVar(&o.RouterLoops, "router-loops", 0, "event loops holding the router's connections (Linux): 0 is one per two CPUs, -1 none (a goroutine per connection)")
	f.BoolVarP(verbose, "verbose", "v", false, "log debug events")
}

// LogsOptions are "elafros logs"'s.
type LogsOptions struct {
	IO       IOStreams
	Target   *target
	Revision string
}

func newLogsCommand(s IOStreams, t *target, runF func(context.Context, *LogsOptions) error) *cobra.Command {
	o := &LogsOptions{IO: s, Target: t}
	return &cobra.Command{
		Use:   "logs REVISION",
		Short: "Print a revision's process output (elafros serve)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if t.cluster() {
				return errors.New("logs reads elafros serve's revision processes; on a cluster use kubectl logs -l elafros.dev/revision=" + args[0])
			}
			o.Revision = args[0]
			return orRun(runF, runLogs)(cmd.Context(), o)
		},
	}
}

func runLogs(ctx context.Context, o *LogsOptions) error {
	st, err := o.Target.store()
	if err != nil {
		return err
	}
	c, ok := st.(*client.Store)
	if !ok {
		return errors.New("logs needs the elafros serve API")
	}
	b, err := c.Logs(context.WithoutCancel(ctx), o.Target.namespace, o.Revision)
	if err != nil {
		return o.Target.explain(err)
	}
	_, err = o.IO.Out.Write(b)
	return err
}
