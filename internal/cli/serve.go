package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local/serve"
)

func newServeCommand(s IOStreams) *cobra.Command {
	o := serve.Options{}
	var verbose, reset, yes bool
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			if yes && !reset {
				return errors.New("--yes confirms --reset; it does nothing alone")
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			o.Logger = slog.New(slog.NewTextHandler(s.ErrOut, &slog.HandlerOptions{Level: level}))
			if reset {
				if !yes {
					return fmt.Errorf("--reset deletes every deployment, pushed image, unpacked image, log and build in %s; add --yes to confirm", o.DataDir)
				}
				if err := serve.Reset(o.DataDir, o.Logger); err != nil {
					return err
				}
				fmt.Fprintf(s.Out, "Reset %s\n", o.DataDir)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv, err := serve.Start(ctx, o)
			if err != nil {
				return err
			}
			defer srv.Close()
			_, port, _ := net.SplitHostPort(srv.HTTPAddr)
			fmt.Fprintf(s.Out, "elafros serve\n  API:      %s\n  Router:   http://<service>.<namespace>.%s:%s\n  Registry: %s\n  Data:     %s\n",
				srv.APIURL, srv.Domain, port, srv.RegistryAddr, o.DataDir)
			fmt.Fprintf(s.Out, "Push images to %s, then: elafros deploy --server %s --service NAME --image %s/NAME@sha256:...\n", srv.RegistryAddr, srv.APIURL, srv.RegistryAddr)
			select {
			case <-ctx.Done():
				fmt.Fprintln(s.Out, "stopping")
				return nil
			case err := <-srv.Errors():
				return err
			}
		},
	}
	f := cmd.Flags()
	planeFlags(f, &o, &verbose)
	f.BoolVar(&reset, "reset", false, "delete everything in --data-dir first (needs --yes)")
	f.BoolVar(&yes, "yes", false, "confirm --reset")
	return cmd
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
	f.BoolVarP(verbose, "verbose", "v", false, "log debug events")
}

func newLogsCommand(s IOStreams, t *target) *cobra.Command {
	return &cobra.Command{
		Use:   "logs REVISION",
		Short: "Print a revision's process output (elafros serve)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if t.cluster() {
				return errors.New("logs reads elafros serve's revision processes; on a cluster use kubectl logs -l elafros.dev/revision=" + args[0])
			}
			st, err := t.store()
			if err != nil {
				return err
			}
			c, ok := st.(*client.Store)
			if !ok {
				return errors.New("logs needs the elafros serve API")
			}
			b, err := c.Logs(context.WithoutCancel(cmd.Context()), t.namespace, args[0])
			if err != nil {
				return t.explain(err)
			}
			_, err = s.Out.Write(b)
			return err
		},
	}
}
