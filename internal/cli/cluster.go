package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/reconcile"
)

// restConfig is the cluster a command acts on: --kubeconfig/--context, or
// the default loading rules (including the in-cluster ServiceAccount).
func (t *target) restConfig() (*rest.Config, error) {
	return client.Kubeconfig(t.kubeconfig, t.context)
}

func newInstallCommand(s IOStreams, t *target) *cobra.Command {
	var rbac bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the elafros.dev CRDs (and the RBAC roles) into a Kubernetes cluster",
		Long: `install server-side-applies the elafros.dev CustomResourceDefinitions to the
cluster of --kubeconfig/--context (or the current kubeconfig context) and
waits until they are served; with --rbac (the default) also the roles of the
action, the bot and the reconciler, with their ServiceAccounts in
elafros-system. The Gateway API CRDs are the cluster's (install them with your
gateway implementation).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := t.restConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := kube.InstallCRDs(ctx, cfg, kube.CRDs()...); err != nil {
				return err
			}
			fmt.Fprintln(s.Out, "✓ CRDs: configurations, revisions, routes, services.elafros.dev")
			if rbac {
				if err := kube.ApplyManifests(ctx, cfg, kube.RBAC()...); err != nil {
					return err
				}
				fmt.Fprintln(s.Out, "✓ RBAC: elafros-reconciler, elafros-deployer, elafros-rollout; ServiceAccounts elafros-action, elafros-bot in elafros-system")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&rbac, "rbac", true, "also install the roles, ServiceAccounts and bindings of config/rbac")
	return cmd
}

// parseMirrors reads --mirror HOST=MIRROR flags.
func parseMirrors(vs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, v := range vs {
		host, mirror, ok := strings.Cut(v, "=")
		if !ok || host == "" || mirror == "" {
			return nil, fmt.Errorf("--mirror %q: want REGISTRY=MIRROR, e.g. gcr.io=registry.internal:5000", v)
		}
		m[host] = mirror
	}
	return m, nil
}

func newReconcileCommand(s IOStreams, t *target) *cobra.Command {
	var (
		gateway, domain string
		logURL          string
		mirrors         []string
		once            bool
		timeout         time.Duration
		verbose         bool
	)
	cmd := &cobra.Command{
		Use:   "reconcile --gateway NAMESPACE/NAME",
		Short: "Run the bundled reconciler against a Kubernetes cluster",
		Long: `reconcile runs the bundled reconciler against the cluster of
--kubeconfig/--context: revisions become Deployments and Services, routes
become Gateway API HTTPRoutes attached to --gateway. With --once it converges
and exits (what the action does after applying elafros.yaml); otherwise it
watches until interrupted. With -n it watches and reconciles that namespace
only, so the elafros-reconciler role can be bound there with a RoleBinding
instead of cluster-wide.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gw, err := kube.ParseGateway(gateway)
			if err != nil {
				return fmt.Errorf("--gateway %w", err)
			}
			m, err := parseMirrors(mirrors)
			if err != nil {
				return err
			}
			cfg, err := t.restConfig()
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(s.ErrOut, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ns := "" // every namespace, unless -n names one: then only it
			if f := cmd.Flag("namespace"); f != nil && f.Changed {
				ns = t.namespace
			}
			if domain == "" {
				return errors.New("--domain-suffix must not be empty")
			}
			r, err := kube.NewReconciler(ctx, cfg, kube.ReconcilerOptions{
				Traffic: kube.TrafficOptions{Gateway: gw}, Runtime: kube.RuntimeOptions{Mirrors: m},
				Namespace: ns, Reconcile: reconcile.Options{DomainSuffix: domain, LogURLTemplate: logURL},
			})
			if err != nil {
				return err
			}
			if once {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				if err := r.Converge(cctx, ns); err != nil {
					return err
				}
				fmt.Fprintln(s.Out, "✓ converged")
				return nil
			}
			return r.Run(ctx, reconcile.RunOptions{Logger: logger, Notify: r.Notify})
		},
	}
	f := cmd.Flags()
	f.StringVar(&gateway, "gateway", "", "the Gateway every HTTPRoute attaches to: NAMESPACE/NAME[:LISTENER] (required)")
	f.StringVar(&domain, "domain-suffix", "example.com", "routes are served at <route>.<namespace>.<suffix>")
	f.StringArrayVar(&mirrors, "mirror", nil, "resolve image tags of REGISTRY through MIRROR: REGISTRY=MIRROR (repeatable)")
	f.BoolVar(&once, "once", false, "converge once and exit instead of watching")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "with --once, how long to wait for convergence")
	f.StringVar(&logURL, "log-url-template", "", "each revision's status.logUrl, e.g. a Grafana or Cloud Logging link: {namespace}, {name} and {configuration} are replaced; {name} is required")
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug events")
	_ = cmd.MarkFlagRequired("gateway")
	return cmd
}
