package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	root.AddCommand(newApplyCommand(s, t), newGetCommand(s, t), newDescribeCommand(s, t),
		newDeployCommand(s, t), newRevisionsCommand(s, t), newRolloutCommand(s, t))
}

func newApplyCommand(s IOStreams, t *target) *cobra.Command {
	var (
		file    string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f elafros.yaml [--wait]",
		Short: "Create or update the objects of a manifest (validated first: nothing is applied from a bad file)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f: name the manifest to apply, e.g. -f elafros.yaml")
			}
			m, err := manifest.Load(file)
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
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			out, err := c.Ship(ctx, deploy.ObjectsOf(m), deploy.ShipOptions{
				Wait: wait,
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
			if wait {
				for _, sh := range out.Shipped {
					fmt.Fprintf(s.Out, "%s/%s serves at %s\n", strings.ToLower(string(sh.Kind)), sh.Name, t.url(sh.Domain))
					if err := deploy.RenderTraffic(s.Out, deploy.Text, deploy.TrafficView{Title: sh.Name, Before: sh.Before, After: sh.After}); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the manifest (elafros.yaml)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every service and route serves (a revision that cannot start fails the command)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, how long to wait")
	return cmd
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

func newGetCommand(s IOStreams, t *target) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List or show services, configurations, revisions or routes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(args[0])
			if err != nil {
				return err
			}
			st, err := t.store()
			if err != nil {
				return err
			}
			var objs []store.Object
			if len(args) == 2 {
				o, err := st.Get(cmd.Context(), kind, t.namespace, args[1])
				if err != nil {
					return t.explain(err)
				}
				objs = []store.Object{o}
			} else if objs, err = st.List(cmd.Context(), kind, t.namespace, nil); err != nil {
				return t.explain(err)
			}
			return printObjects(s.Out, output, kind, objs, len(args) == 2)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
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

func newDescribeCommand(s IOStreams, t *target) *cobra.Command {
	return &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one object as YAML, with its conditions explained",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := parseKind(args[0])
			if err != nil {
				return err
			}
			st, err := t.store()
			if err != nil {
				return err
			}
			o, err := st.Get(cmd.Context(), kind, t.namespace, args[1])
			if err != nil {
				return t.explain(err)
			}
			if err := printObjects(s.Out, "yaml", kind, []store.Object{o}, true); err != nil {
				return err
			}
			var cs v1alpha1.Conditions
			switch x := o.(type) {
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
				tw.Flush()
			}
			return nil
		},
	}
}

func newDeployCommand(s IOStreams, t *target) *cobra.Command {
	var (
		o       deploy.Options
		env     []string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy --service NAME --image REF [--env K=V]... [--function]",
		Short: "Deploy an image to a service (created if new) and wait until it serves",
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--env %q: want NAME=value", kv)
				}
				o.Env = append(o.Env, corev1.EnvVar{Name: k, Value: v})
			}
			if o.Service == "" || o.Image == "" {
				return errors.New("--service and --image are required, e.g. --service my-service --image ghcr.io/acme/app:1")
			}
			c, err := t.deployClient()
			if err != nil {
				return err
			}
			what := "app"
			if o.Function {
				what = "function"
			}
			fmt.Fprintf(s.Out, "  Deploying %s to service [%s]:\n", what, o.Service)
			svc, err := c.Deploy(cmd.Context(), o)
			if err != nil {
				return t.explain(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			final, err := c.Wait(ctx, o.Service, svc.Generation, func(step deploy.Step) { fmt.Fprintf(s.Out, "✓ %s\n", step) })
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
		},
	}
	cmd.Flags().StringVar(&o.Service, "service", "", "the service to deploy to")
	cmd.Flags().StringVar(&o.Image, "image", "", "the container image")
	cmd.Flags().StringArrayVar(&env, "env", nil, "an environment variable NAME=value (repeatable); merged by name")
	cmd.Flags().BoolVar(&o.Function, "function", false, "deploy a function (elafros.dev/type: function, SingleThreaded)")
	cmd.Flags().StringVar(&o.Deployer, "deployer", "", "who deploys (recorded on the revision)")
	cmd.Flags().StringVar(&o.GitCommit, "git-sha", "", "the commit deployed (recorded on the revision)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the revision to serve")
	return cmd
}

func newRevisionsCommand(s IOStreams, t *target) *cobra.Command {
	cmd := &cobra.Command{Use: "revisions", Short: "Work with revisions"}
	var service string
	list := &cobra.Command{
		Use:   "list --service NAME",
		Short: "List a service's revisions with their traffic (Name, Traffic, Id, Date, Deployer, Git SHA)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if service == "" {
				return errors.New("--service is required")
			}
			c, err := t.deployClient()
			if err != nil {
				return err
			}
			rows, err := c.Revisions(cmd.Context(), service)
			if err != nil {
				return t.explain(err)
			}
			writeRevisions(s.Out, rows)
			return nil
		},
	}
	list.Flags().StringVar(&service, "service", "", "the service")
	cmd.AddCommand(list)
	return cmd
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

func newRolloutCommand(s IOStreams, t *target) *cobra.Command {
	var service string
	cmd := &cobra.Command{Use: "rollout", Short: "Move a service's traffic: strategy, next percent N, finish, abort, promote"}
	cmd.PersistentFlags().StringVar(&service, "service", "", "the service (its route has the same name)")
	// client checks --service and connects: every subcommand needs both.
	client := func() (*deploy.Client, error) {
		if service == "" {
			return nil, errors.New("--service is required")
		}
		return t.deployClient()
	}
	move := func(cmd *cobra.Command, op deploy.Op) error {
		c, err := client()
		if err != nil {
			return err
		}
		rt, err := c.Rollout(cmd.Context(), service, op)
		if rollout.IsRefused(err) {
			fmt.Fprintf(s.ErrOut, "refused: %v\nNothing was changed.\n", err)
			return &ExitError{Code: 1}
		}
		if err != nil {
			return t.explain(err)
		}
		return deploy.RenderTraffic(s.Out, deploy.Text, deploy.TrafficView{Title: service, After: rt.Spec.Rollout.Traffic})
	}
	strategy := &cobra.Command{
		Use:       "strategy automatic|manual|canary",
		Short:     "Set how new revisions roll out",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"automatic", "manual", "canary"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			if err := c.SetStrategy(cmd.Context(), service, v1alpha1.RolloutStrategy(args[0])); err != nil {
				return t.explain(err)
			}
			fmt.Fprintf(s.Out, "service/%s strategy %s\n", service, args[0])
			return nil
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
			return move(cmd, deploy.SetNext(n))
		},
	}
	next.AddCommand(percent)
	finish := &cobra.Command{Use: "finish", Short: "Make next the current revision at 100%", RunE: func(cmd *cobra.Command, _ []string) error { return move(cmd, deploy.Finish) }}
	abort := &cobra.Command{Use: "abort", Short: "Send all traffic back to current", RunE: func(cmd *cobra.Command, _ []string) error { return move(cmd, deploy.Abort) }}
	promote := &cobra.Command{
		Use:   "promote",
		Short: "Move next one step along the service's steps",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			o, err := c.Get(cmd.Context(), store.KindService, service)
			if err != nil {
				return t.explain(err)
			}
			p := o.(*v1alpha1.Service).Spec.Rollout
			p.SetDefaults() // the policy's steps, or the default canary steps
			steps := p.Steps
			return move(cmd, deploy.Promote(steps))
		},
	}
	history := &cobra.Command{
		Use:   "history",
		Short: "Print the route's audit history: who moved traffic, why, when, from and to",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			h, err := c.RouteHistory(cmd.Context(), service)
			if err != nil {
				return t.explain(err)
			}
			if len(h) == 0 {
				fmt.Fprintf(s.Out, "route %s has no recorded moves\n", service)
				return nil
			}
			tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "Time\tActor\tReason\tFrom\tTo")
			for _, m := range h {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Time.Format(time.RFC3339), m.Actor, m.Reason, deploy.Split(m.From), deploy.Split(m.To))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(strategy, next, finish, abort, promote, history)
	return cmd
}
