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

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local/serve"
)

func newServeCommand(s IOStreams) *cobra.Command {
	o := serve.Options{}
	var verbose bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the embedded control plane: the API, a registry, revision processes and the router",
		Long: `serve runs elafros on this machine: the elafros.dev API (in the Kubernetes REST
dialect, so the seed's curl examples work), an OCI registry for builds, every
Ready revision as a process, and a router that splits real HTTP traffic:
http://<service>.<namespace>.localhost:8080. It runs until interrupted.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			o.Logger = slog.New(slog.NewTextHandler(s.ErrOut, &slog.HandlerOptions{Level: level}))
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
	f.StringVar(&o.DataDir, "data-dir", serve.DefaultDataDir(), "where the store, unpacked images, logs and registry blobs live")
	f.StringVar(&o.APIAddr, "api-addr", serve.DefaultAPIAddr, "the API's address (port 0 picks a free port and prints it)")
	f.StringVar(&o.HTTPAddr, "http-addr", serve.DefaultHTTPAddr, "the router's address")
	f.StringVar(&o.RegistryAddr, "registry-addr", serve.DefaultRegistryAddr, "the OCI registry's address")
	f.StringVar(&o.Domain, "domain", serve.DefaultDomain, "the domain suffix: <route>.<namespace>.<domain>")
	f.BoolVar(&o.Sticky, "sticky", false, "keep each client on one revision during a canary (cookie)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug events")
	return cmd
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
