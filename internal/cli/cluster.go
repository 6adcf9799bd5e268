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
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/reconcile"
)

// restConfig is the cluster a command acts on: --kubeconfig/--context, or
// the default loading rules (including the in-cluster ServiceAccount).
func (t *target) restConfig() (*rest.Config, error) {
	return client.Kubeconfig(t.kubeconfig, t.context)
}

// InstallOptions are "elafros install"'s.
type InstallOptions struct {
	IO     IOStreams
	Target *target
	RBAC   bool
}

func newInstallCommand(s IOStreams, t *target, runF func(context.Context, *InstallOptions) error) *cobra.Command {
	o := &InstallOptions{IO: s, Target: t}
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
		RunE: func(cmd *cobra.Command, _ []string) error { return orRun(runF, runInstall)(cmd.Context(), o) },
	}
	cmd.Flags().BoolVar(&o.RBAC, "rbac", true, "also install the roles, ServiceAccounts and bindings of config/rbac")
	return cmd
}

func runInstall(ctx context.Context, o *InstallOptions) error {
	cfg, err := o.Target.restConfig()
	if err != nil {
		return err
	}
	if err := kube.InstallCRDs(ctx, cfg, kube.CRDs()...); err != nil {
		return err
	}
	fmt.Fprintln(o.IO.Out, "✓ CRDs: configurations, revisions, routes, services.elafros.dev")
	if o.RBAC {
		if err := kube.ApplyManifests(ctx, cfg, kube.RBAC()...); err != nil {
			return err
		}
		fmt.Fprintln(o.IO.Out, "✓ RBAC: elafros-reconciler, elafros-deployer, elafros-rollout; ServiceAccounts elafros-action, elafros-bot in elafros-system")
	}
	return nil
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

// ReconcileOptions are "elafros reconcile"'s. Namespace "" is every
// namespace.
type ReconcileOptions struct {
	IO        IOStreams
	Target    *target
	Gateway   gatewayv1.ParentReference
	Domain    string
	LogURL    string
	Mirrors   map[string]string
	Namespace string
	Once      bool
	Timeout   time.Duration
	Verbose   bool
}

func newReconcileCommand(s IOStreams, t *target, runF func(context.Context, *ReconcileOptions) error) *cobra.Command {
	o := &ReconcileOptions{IO: s, Target: t}
	var gateway string
	var mirrors []string
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
			if o.Domain == "" {
				return errors.New("--domain-suffix must not be empty")
			}
			o.Gateway, o.Mirrors = gw, m
			o.Namespace = "" // every namespace, unless -n names one: then only it
			if f := cmd.Flag("namespace"); f != nil && f.Changed {
				o.Namespace = t.namespace
			}
			return orRun(runF, runReconcile)(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&gateway, "gateway", "", "the Gateway every HTTPRoute attaches to: NAMESPACE/NAME[:LISTENER] (required)")
	f.StringVar(&o.Domain, "domain-suffix", "example.com", "routes are served at <route>.<namespace>.<suffix>")
	f.StringArrayVar(&mirrors, "mirror", nil, "resolve image tags of REGISTRY through MIRROR: REGISTRY=MIRROR (repeatable)")
	f.BoolVar(&o.Once, "once", false, "converge once and exit instead of watching")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "with --once, how long to wait for convergence")
	f.StringVar(&o.LogURL, "log-url-template", "", "each revision's status.logUrl, e.g. a Grafana or Cloud Logging link: {namespace}, {name} and {configuration} are replaced; {name} is required")
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "log debug events")
	_ = cmd.MarkFlagRequired("gateway")
	return cmd
}

func runReconcile(ctx context.Context, o *ReconcileOptions) error {
	cfg, err := o.Target.restConfig()
	if err != nil {
		return err
	}
	log := logger(o.IO.ErrOut, slog.LevelInfo, o.Verbose)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r, err := kube.NewReconciler(ctx, cfg, kube.ReconcilerOptions{
		Traffic: kube.TrafficOptions{Gateway: o.Gateway}, Runtime: kube.RuntimeOptions{Mirrors: o.Mirrors},
		Namespace: o.Namespace, Reconcile: reconcile.Options{DomainSuffix: o.Domain, LogURLTemplate: o.LogURL},
	})
	if err != nil {
		return err
	}
	if o.Once {
		cctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		if err := r.Converge(cctx, o.Namespace); err != nil {
			return err
		}
		fmt.Fprintln(o.IO.Out, "✓ converged")
		return nil
	}
	return r.Run(ctx, reconcile.RunOptions{Logger: log, Notify: r.Notify})
}
