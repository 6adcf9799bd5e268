package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

func addClientCommands(root *cobra.Command, s IOStreams, t *target) {
	root.AddCommand(newApplyCommand(s, t, nil), newGetCommand(s, t, nil), newDescribeCommand(s, t, nil),
		newDeployCommand(s, t, nil), newRevisionsCommand(s, t, nil), newRolloutCommand(s, t, nil))
}

// Each command has an options struct, filled and checked from its flags
// and arguments by its cobra.Command, and a run function that does the
// work: tests call the run functions with options of their own, and pass
// a runF to the constructor to see what the flags parse to (cli/cli's
// shape). A nil runF means the real run function.

// ApplyOptions are "elafros apply"'s.
type ApplyOptions struct {
	IO      IOStreams
	Target  *target
	File    string
	Wait    bool
	Timeout time.Duration
}

func newApplyCommand(s IOStreams, t *target, runF func(context.Context, *ApplyOptions) error) *cobra.Command {
	o := &ApplyOptions{IO: s, Target: t}
	cmd := &cobra.Command{
		Use:   "apply -f elafros.yaml [--wait]",
		Short: "Create or update the objects of a manifest (validated first: nothing is applied from a bad file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.File == "" {
				return errors.New("-f: name the manifest to apply, e.g. -f elafros.yaml")
			}
			return orRun(runF, runApply)(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVarP(&o.File, "filename", "f", "", "the manifest (elafros.yaml)")
	cmd.Flags().BoolVar(&o.Wait, "wait", false, "wait until every service and route serves (a revision that cannot start fails the command)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 10*time.Minute, "with --wait, how long to wait")
	return cmd
}

// orRun is runF, or run when runF is nil.
func orRun[O any](runF, run func(context.Context, *O) error) func(context.Context, *O) error {
	if runF != nil {
		return runF
	}
	return run
}

func runApply(ctx context.Context, o *ApplyOptions) error {
	s, t := o.IO, o.Target
	m, err := manifest.Load(o.File)
	var errs manifest.Errors
	if errors.As(err, &errs) {
		report("text", errs, s)
		return &ExitError{Code: 1}
	}
	if err != nil {
		return err
	}
	c, err := t.deployClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	out, err := c.Ship(ctx, deploy.ObjectsOf(m), deploy.ShipOptions{
		Wait: o.Wait,
		Progress: func(p deploy.Progress) {
			fmt.Fprintf(s.Out, "✓ %s %s/%s\n", p.Step, strings.ToLower(string(p.Kind)), p.Name)
		},
	})
	if out != nil {
		for _, a := range out.Applied {
			fmt.Fprintf(s.Out, "%s/%s %s\n", strings.ToLower(a.Kind), a.Name, a.Action)
		}
	}
	if err != nil {
		return t.explain(upFailed(err, s))
	}
	if o.Wait {
		for _, sh := range out.Shipped {
			fmt.Fprintf(s.Out, "%s/%s serves at %s\n", strings.ToLower(string(sh.Kind)), sh.Name, t.url(sh.Domain))
			if err := deploy.RenderTraffic(s.Out, deploy.Text, deploy.TrafficView{Title: sh.Name, Before: sh.Before, After: sh.After}); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseKind reads a kind as kubectl does: its kind, plural, singular or a
// short name from v1alpha1.Kinds, in any case.
func parseKind(s string) (store.Kind, error) {
	if k, ok := v1alpha1.KindNamed(s); ok {
		return store.Kind(k.Kind), nil
	}
	var accepted []string
	for _, k := range v1alpha1.Kinds {
		accepted = append(accepted, strings.Join(k.Names(), "|"))
	}
	return "", fmt.Errorf("unknown kind %q; accepted: %s", s, strings.Join(accepted, ", "))
}

// GetOptions are "elafros get"'s: Name empty lists the kind.
type GetOptions struct {
	IO     IOStreams
	Target *target
	Kind   store.Kind
	Name   string
	Output string // "", json or yaml
}

func newGetCommand(s IOStreams, t *target, runF func(context.Context, *GetOptions) error) *cobra.Command {
	o := &GetOptions{IO: s, Target: t}
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List or show services, configurations, revisions or routes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(args[0])
			if err != nil {
				return err
			}
			if o.Output != "" && o.Output != "json" && o.Output != "yaml" {
				return fmt.Errorf("-o %q: accepted: json, yaml", o.Output)
			}
			o.Kind = kind
			if len(args) == 2 {
				o.Name = args[1]
			}
			return orRun(runF, runGet)(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
}

func runGet(ctx context.Context, o *GetOptions) error {
	t := o.Target
	st, err := t.store()
	if err != nil {
		return err
	}
	var objs []store.Object
	if o.Name != "" {
		obj, err := st.Get(ctx, o.Kind, t.namespace, o.Name)
		if err != nil {
			return t.explain(err)
		}
		objs = []store.Object{obj}
	} else if objs, err = st.List(ctx, o.Kind, t.namespace, nil); err != nil {
		return t.explain(err)
	}
	return printObjects(o.IO.Out, o.Output, o.Kind, objs, o.Name != "")
}

func printObjects(w io.Writer, output string, kind store.Kind, objs []store.Object, single bool) error {
	switch output {
	case "json", "yaml":
		var v any = objs
		if single && len(objs) == 1 {
			v = objs[0]
		}
		var b []byte
		var err error
		if output == "json" {
			b, err = json.MarshalIndent(v, "", "  ")
			b = append(b, '\n')
		} else {
			b, err = yaml.Marshal(v)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		defer tw.Flush()
		switch kind {
		case store.KindService:
			fmt.Fprintln(tw, "NAME\tDOMAIN\tSTRATEGY\tLATESTREADY\tREADY\tREASON")
			for _, o := range objs {
				x := o.(*v1alpha1.Service)
				st, reason := condition(x.Status.Conditions, v1alpha1.ConditionReady)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, x.Status.Domain, x.Spec.Rollout.Strategy, x.Status.LatestReadyRevisionName, st, reason)
			}
		case store.KindConfiguration:
			fmt.Fprintln(tw, "NAME\tLATESTCREATED\tLATESTREADY\tREADY\tREASON")
			for _, o := range objs {
				x := o.(*v1alpha1.Configuration)
				st, reason := condition(x.Status.Conditions, v1alpha1.ConditionLatestRevisionReady)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Name, x.Status.LatestCreatedRevisionName, x.Status.LatestReadyRevisionName, st, reason)
			}
		case store.KindRevision:
			fmt.Fprintln(tw, "NAME\tCONFIGURATION\tGENERATION\tREADY\tREASON")
			for _, o := range objs {
				x := o.(*v1alpha1.Revision)
				st, reason := condition(x.Status.Conditions, v1alpha1.ConditionReady)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Name, x.Labels[v1alpha1.ConfigurationLabelKey], x.Labels[v1alpha1.ConfigurationGenerationLabelKey], st, reason)
			}
		case store.KindRoute:
			fmt.Fprintln(tw, "NAME\tDOMAIN\tTRAFFIC\tREADY\tREASON")
			for _, o := range objs {
				x := o.(*v1alpha1.Route)
				st, reason := condition(x.Status.Conditions, v1alpha1.ConditionRolloutComplete)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Name, x.Status.Domain, trafficSummary(x.Status.Traffic), st, reason)
			}
		}
		return nil
	}
	return fmt.Errorf("-o %q: accepted: json, yaml", output)
}

func condition(cs v1alpha1.Conditions, t v1alpha1.ConditionType) (string, string) {
	c := cs.Get(t)
	if c == nil {
		return "Unknown", ""
	}
	return string(c.Status), c.Reason
}

func trafficSummary(ts []v1alpha1.TrafficTarget) string {
	var parts []string
	for _, x := range ts {
		p := fmt.Sprintf("%s=%d%%", x.RevisionName, x.Percent)
		if x.Name != "" {
			p = x.Name + ":" + p
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

// DescribeOptions are "elafros describe"'s.
type DescribeOptions struct {
	IO     IOStreams
	Target *target
	Kind   store.Kind
	Name   string
}

func newDescribeCommand(s IOStreams, t *target, runF func(context.Context, *DescribeOptions) error) *cobra.Command {
	o := &DescribeOptions{IO: s, Target: t}
	return &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one object as YAML, with its conditions explained",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(args[0])
			if err != nil {
				return err
			}
			o.Kind, o.Name = kind, args[1]
			return orRun(runF, runDescribe)(cmd.Context(), o)
		},
	}
}

func runDescribe(ctx context.Context, o *DescribeOptions) error {
	s, t := o.IO, o.Target
	st, err := t.store()
	if err != nil {
		return err
	}
	obj, err := st.Get(ctx, o.Kind, t.namespace, o.Name)
	if err != nil {
		return t.explain(err)
	}
	if err := printObjects(s.Out, "yaml", o.Kind, []store.Object{obj}, true); err != nil {
		return err
	}
	var cs v1alpha1.Conditions
	switch x := obj.(type) {
	case *v1alpha1.Service:
		cs = x.Status.Conditions
	case *v1alpha1.Configuration:
		cs = x.Status.Conditions
	case *v1alpha1.Revision:
		cs = x.Status.Conditions
	case *v1alpha1.Route:
		cs = x.Status.Conditions
	}
	if len(cs) > 0 {
		fmt.Fprintln(s.Out, "\nConditions:")
		tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tMESSAGE")
		for _, c := range cs {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
		}
		return tw.Flush()
	}
	return nil
}

// DeployOptions are "elafros deploy"'s.
type DeployOptions struct {
	IO      IOStreams
	Target  *target
	Deploy  deploy.Options
	Timeout time.Duration
}

func newDeployCommand(s IOStreams, t *target, runF func(context.Context, *DeployOptions) error) *cobra.Command {
	o := &DeployOptions{IO: s, Target: t}
	var env []string
	cmd := &cobra.Command{
		Use:   "deploy --service NAME --image REF [--env K=V]... [--function]",
		Short: "Deploy an image to a service (created if new) and wait until it serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--env %q: want NAME=value", kv)
				}
				o.Deploy.Env = append(o.Deploy.Env, corev1.EnvVar{Name: k, Value: v})
			}
			if o.Deploy.Service == "" || o.Deploy.Image == "" {
				return errors.New("--service and --image are required, e.g. --service my-service --image ghcr.io/acme/app:1")
			}
			return orRun(runF, runDeploy)(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Deploy.Service, "service", "", "the service to deploy to")
	cmd.Flags().StringVar(&o.Deploy.Image, "image", "", "the container image")
	cmd.Flags().StringArrayVar(&env, "env", nil, "an environment variable NAME=value (repeatable); merged by name")
	cmd.Flags().BoolVar(&o.Deploy.Function, "function", false, "deploy a function (elafros.dev/type: function, SingleThreaded)")
	cmd.Flags().StringVar(&o.Deploy.Deployer, "deployer", "", "who deploys (recorded on the revision)")
	cmd.Flags().StringVar(&o.Deploy.GitCommit, "git-sha", "", "the commit deployed (recorded on the revision)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the revision to serve")
	return cmd
}

func runDeploy(ctx context.Context, o *DeployOptions) error {
	s, t := o.IO, o.Target
	c, err := t.deployClient()
	if err != nil {
		return err
	}
	what := "app"
	if o.Deploy.Function {
		what = "function"
	}
	fmt.Fprintf(s.Out, "  Deploying %s to service [%s]:\n", what, o.Deploy.Service)
	svc, err := c.Deploy(ctx, o.Deploy)
	if err != nil {
		return t.explain(err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	final, err := c.Wait(ctx, o.Deploy.Service, svc.Generation, func(step deploy.Step) { fmt.Fprintf(s.Out, "✓ %s\n", step) })
	var failed *deploy.FailedError
	if errors.As(err, &failed) {
		fmt.Fprintf(s.Out, "✗ %s\n  Revision %s failed: %s: %s\n", failed.Step, failed.Revision, failed.Reason, failed.Detail)
		return &ExitError{Code: 1}
	}
	if err != nil {
		return t.explain(err)
	}
	fmt.Fprintln(s.Out, "  Done.")
	fmt.Fprintf(s.Out, "  Deployed to %s\n", t.url(final.Status.Domain))
	return nil
}

// RevisionsOptions are "elafros revisions list"'s.
type RevisionsOptions struct {
	IO      IOStreams
	Target  *target
	Service string
}

func newRevisionsCommand(s IOStreams, t *target, runF func(context.Context, *RevisionsOptions) error) *cobra.Command {
	o := &RevisionsOptions{IO: s, Target: t}
	cmd := &cobra.Command{Use: "revisions", Short: "Work with revisions"}
	list := &cobra.Command{
		Use:   "list --service NAME",
		Short: "List a service's revisions with their traffic (Name, Traffic, Id, Date, Deployer, Git SHA)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Service == "" {
				return errors.New("--service is required")
			}
			return orRun(runF, runRevisions)(cmd.Context(), o)
		},
	}
	list.Flags().StringVar(&o.Service, "service", "", "the service")
	cmd.AddCommand(list)
	return cmd
}

func runRevisions(ctx context.Context, o *RevisionsOptions) error {
	c, err := o.Target.deployClient()
	if err != nil {
		return err
	}
	rows, err := c.Revisions(ctx, o.Service)
	if err != nil {
		return o.Target.explain(err)
	}
	writeRevisions(o.IO.Out, rows)
	return nil
}

func writeRevisions(w io.Writer, rows []deploy.Row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Name\tTraffic\tId\tDate\tDeployer\tGit SHA")
	for _, r := range rows {
		traffic := ""
		if r.Traffic != nil {
			traffic = strconv.Itoa(*r.Traffic) + "%"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.Join(r.Names, ","), traffic, r.ID, r.Date.Local().Format("2006-01-02 15:04"), r.Deployer, r.GitSHA)
	}
	tw.Flush()
}

// RolloutAction is what "elafros rollout" does.
type RolloutAction string

// The rollout subcommands.
const (
	RolloutStrategy RolloutAction = "strategy"
	RolloutPercent  RolloutAction = "next percent"
	RolloutFinish   RolloutAction = "finish"
	RolloutAbort    RolloutAction = "abort"
	RolloutPromote  RolloutAction = "promote"
	RolloutHistory  RolloutAction = "history"
)

// RolloutOptions are "elafros rollout"'s: Percent is for RolloutPercent,
// Strategy for RolloutStrategy.
type RolloutOptions struct {
	IO       IOStreams
	Target   *target
	Service  string
	Action   RolloutAction
	Percent  int
	Strategy v1alpha1.RolloutStrategy
}

func newRolloutCommand(s IOStreams, t *target, runF func(context.Context, *RolloutOptions) error) *cobra.Command {
	o := &RolloutOptions{IO: s, Target: t}
	cmd := &cobra.Command{Use: "rollout", Short: "Move a service's traffic: strategy, next percent N, finish, abort, promote"}
	cmd.PersistentFlags().StringVar(&o.Service, "service", "", "the service (its route has the same name)")
	// do checks --service, which every subcommand needs, and runs action.
	do := func(cmd *cobra.Command, action RolloutAction) error {
		if o.Service == "" {
			return errors.New("--service is required")
		}
		o.Action = action
		return orRun(runF, runRollout)(cmd.Context(), o)
	}
	strategies := []string{string(v1alpha1.StrategyAutomatic), string(v1alpha1.StrategyManual), string(v1alpha1.StrategyCanary)}
	strategy := &cobra.Command{
		Use:       "strategy automatic|manual|canary",
		Short:     "Set how new revisions roll out",
		Args:      cobra.ExactArgs(1),
		ValidArgs: strategies,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(strategies, args[0]) {
				return fmt.Errorf("strategy %q: accepted: %s", args[0], strings.Join(strategies, ", "))
			}
			o.Strategy = v1alpha1.RolloutStrategy(args[0])
			return do(cmd, RolloutStrategy)
		},
	}
	next := &cobra.Command{Use: "next", Short: "Move traffic to the next revision"}
	percent := &cobra.Command{
		Use:   "percent N",
		Short: "Send N% to next, the rest to current",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(strings.TrimSuffix(args[0], "%"))
			if err != nil || n < 0 || n > 100 {
				return fmt.Errorf("percent %q: want an integer from 0 to 100", args[0])
			}
			o.Percent = n
			return do(cmd, RolloutPercent)
		},
	}
	next.AddCommand(percent)
	simple := func(use, short string, action RolloutAction) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error { return do(cmd, action) }}
	}
	cmd.AddCommand(strategy, next,
		simple("finish", "Make next the current revision at 100%", RolloutFinish),
		simple("abort", "Send all traffic back to current", RolloutAbort),
		simple("promote", "Move next one step along the service's steps", RolloutPromote),
		simple("history", "Print the route's audit history: who moved traffic, why, when, from and to", RolloutHistory))
	return cmd
}

func runRollout(ctx context.Context, o *RolloutOptions) error {
	s, t := o.IO, o.Target
	c, err := t.deployClient()
	if err != nil {
		return err
	}
	var op deploy.Op
	switch o.Action {
	case RolloutStrategy:
		if err := c.SetStrategy(ctx, o.Service, o.Strategy); err != nil {
			return t.explain(err)
		}
		fmt.Fprintf(s.Out, "service/%s strategy %s\n", o.Service, o.Strategy)
		return nil
	case RolloutHistory:
		return history(ctx, c, o)
	case RolloutPercent:
		op = deploy.SetNext(o.Percent)
	case RolloutFinish:
		op = deploy.Finish
	case RolloutAbort:
		op = deploy.Abort
	case RolloutPromote:
		obj, err := c.Get(ctx, store.KindService, o.Service)
		if err != nil {
			return t.explain(err)
		}
		p := obj.(*v1alpha1.Service).Spec.Rollout
		p.SetDefaults() // the policy's steps, or the default canary steps
		op = deploy.Promote(p.Steps)
	default:
		return fmt.Errorf("rollout: unknown action %q", o.Action)
	}
	rt, err := c.Rollout(ctx, o.Service, op)
	if rollout.IsRefused(err) {
		fmt.Fprintf(s.ErrOut, "refused: %v\nNothing was changed.\n", err)
		return &ExitError{Code: 1}
	}
	if err != nil {
		return t.explain(err)
	}
	return deploy.RenderTraffic(s.Out, deploy.Text, deploy.TrafficView{Title: o.Service, After: rt.Spec.Rollout.Traffic})
}

// history prints the route's audit history.
func history(ctx context.Context, c *deploy.Client, o *RolloutOptions) error {
	h, err := c.RouteHistory(ctx, o.Service)
	if err != nil {
		return o.Target.explain(err)
	}
	if len(h) == 0 {
		fmt.Fprintf(o.IO.Out, "route %s has no recorded moves\n", o.Service)
		return nil
	}
	tw := tabwriter.NewWriter(o.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Time\tActor\tReason\tFrom\tTo")
	for _, m := range h {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Time.Format(time.RFC3339), m.Actor, m.Reason, deploy.Split(m.From), deploy.Split(m.To))
	}
	return tw.Flush()
}
