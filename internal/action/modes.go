package action

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/build"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

// buildAll builds every object of the manifest that has spec.build from
// the workspace's commit (a dirty tree is refused), pushes it to the
// registry, and pins the template's image to the digest. The build section
// is then dropped: no build runs inside the cluster.
func (r *run) buildAll(objs []store.Object) (*build.Provenance, error) {
	prov, err := build.Open(r.ws, false)
	if err != nil {
		return nil, err
	}
	var b *build.Builder
	for _, o := range objs {
		spec := deploy.ConfigurationSpecOf(o)
		if spec == nil || spec.Build == nil {
			continue
		}
		if r.in.DryRun {
			r.note(fmt.Sprintf("Dry run: `%s` would be built from %s with the `%s` builder.", o.GetName(), short(prov.Commit), spec.Build.Template.Name))
			continue
		}
		if b == nil {
			registry := r.in.Registry
			if registry == "" && r.be != nil {
				registry = r.be.registry
			}
			if registry == "" {
				return nil, &InputError{"registry", "", "where built images go, e.g. ghcr.io/OWNER/REPO (required for a cluster)"}
			}
			if b, err = build.New(build.Options{WorkDir: r.tmp + "/build", Registry: registry, DefaultSource: r.ws, Logger: r.logger}); err != nil {
				return nil, err
			}
			defer b.Close()
		}
		err := r.group("Building "+o.GetName(), func() error {
			state, err := b.Build(r.ctx, o.GetNamespace(), o.GetName(), *spec.Build, spec.RevisionTemplate.Spec.Container.Image)
			if err != nil {
				return fmt.Errorf("building %s: %w", o.GetName(), err)
			}
			r.a.Infof("built %s", state.Image)
			spec.RevisionTemplate.Spec.Container.Image = state.Image
			spec.Build = nil
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return prov, nil
}

// withReconciler runs fn while the bundled reconciler runs (on a cluster).
func (r *run) withReconciler(fn func() error) error {
	if r.be.reconcile == nil || r.in.DryRun {
		return fn()
	}
	stop, err := r.be.reconcile(r.ctx)
	if err != nil {
		return err
	}
	defer stop()
	return fn()
}

func (r *run) deploy() error {
	m, err := r.load()
	if err != nil {
		return err
	}
	objs := deploy.ObjectsOf(m)
	prov, err := r.buildAll(objs)
	if err != nil {
		return err
	}
	p := deploy.Provenance{Repository: r.repo.String(), Commit: or(r.gh.SHA, prov.Commit), Deployer: r.gh.Actor}
	p.PullRequest = r.mergedPullRequest(p.Commit)
	depID := r.startDeployment(r.in.Environment, p.Commit, false)
	ctx, cancel := context.WithTimeout(r.ctx, r.in.Timeout)
	defer cancel()
	var out *deploy.Outcome
	err = r.withReconciler(func() error {
		return r.group("Deploying to "+r.be.where, func() error {
			var err error
			out, err = r.dc.Ship(ctx, objs, deploy.ShipOptions{Provenance: p, DryRun: r.in.DryRun, Wait: true,
				Progress: func(p deploy.Progress) {
					r.a.Infof("✓ %s %s/%s", p.Step, strings.ToLower(string(p.Kind)), p.Name)
				}})
			return err
		})
	})
	if out != nil {
		r.report(out)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not done within the timeout input (%s): %w", r.in.Timeout, err)
		}
		r.endDeployment(depID, github.StateFailure, "", err.Error())
		return err
	}
	first := ""
	if len(out.Shipped) > 0 {
		first = r.url(out.Shipped[0].Domain, "")
	}
	r.endDeployment(depID, github.StateSuccess, first, "deployed "+short(p.Commit))
	return nil
}

// mergedPullRequest is the pull request a push to the default branch
// merged (0: a direct push, or no GitHub token). The revision records it,
// so scheduled promotion and the bot can tell that pull request.
func (r *run) mergedPullRequest(sha string) int {
	if r.ghc == nil || r.in.DryRun || r.gh.EventName != "push" || sha == "" {
		return 0
	}
	n, err := r.ghc.MergedPullRequest(r.ctx, r.repo, sha, r.eventString("head_commit.message"))
	if err != nil {
		r.a.Warningf("finding the pull request merged by %s: %v", short(sha), err)
		return 0
	}
	if n > 0 {
		r.a.Infof("%s merged pull request #%d", short(sha), n)
	}
	return n
}

// report turns a deploy's outcome into outputs and the summary.
func (r *run) report(out *deploy.Outcome) {
	var b strings.Builder
	if r.in.DryRun {
		b.WriteString("**Dry run**: nothing was built, applied or moved. This is the plan.\n\n")
	}
	b.WriteString("| Object | Action |\n|---|---|\n")
	for _, a := range out.Applied {
		fmt.Fprintf(&b, "| %s/%s | %s |\n", strings.ToLower(a.Kind), a.Name, a.Action)
	}
	r.note(b.String())
	for i, sh := range out.Shipped {
		var s strings.Builder
		fmt.Fprintf(&s, "#### %s `%s`\n\n", strings.ToLower(string(sh.Kind)), sh.Name)
		if !r.in.DryRun {
			u := r.url(sh.Domain, "")
			fmt.Fprintf(&s, "- URL: <%s>\n- Revision: `%s`%s\n- Image: `%s`\n", u, sh.Revision, map[bool]string{true: " (new)", false: " (unchanged: no new revision)"}[sh.NewRevision], sh.Image)
			if note := replacedNext(sh.Before, sh.After); note != "" {
				s.WriteString("- " + note + "\n")
			}
			if i == 0 {
				r.outputs["url"], r.outputs["revision"], r.outputs["image"] = u, sh.Revision, sh.Image
				r.outputs["traffic"] = trafficJSON(sh.After)
			}
		}
		s.WriteString("\n")
		view := deploy.TrafficView{Title: sh.Name + ": traffic", Before: sh.Before, After: sh.After, URL: func(t string) string { return r.url(sh.Domain, t) }}
		if r.in.DryRun {
			view = deploy.TrafficView{Title: sh.Name + ": traffic now", After: sh.Before}
		} else if sh.Before == nil {
			view.Before = []v1alpha1.TrafficTarget{}
		}
		_ = deploy.RenderTraffic(&s, deploy.Markdown, view)
		r.note(s.String())
	}
}

// replacedNext says when a new revision replaced a canary's next.
func replacedNext(before, after []v1alpha1.TrafficTarget) string {
	bi, ai := rollout.Find(before, rollout.Next), rollout.Find(after, rollout.Next)
	if bi < 0 || ai < 0 || before[bi].RevisionName == after[ai].RevisionName || before[bi].Percent == 0 {
		return ""
	}
	return fmt.Sprintf("A new revision replaced the canary: `%s` (at %d%%) gave way to `%s`, which restarts at the first step (%d%%).",
		before[bi].RevisionName, before[bi].Percent, after[ai].RevisionName, after[ai].Percent)
}

// startDeployment creates a GitHub Deployment in_progress (0: none).
func (r *run) startDeployment(env, ref string, transient bool) int64 {
	if r.ghc == nil || r.in.DryRun || ref == "" {
		return 0
	}
	id, err := r.ghc.CreateDeployment(r.ctx, r.repo, github.DeploymentRequest{Ref: ref, Environment: env, Transient: transient,
		Production: env == "production", Description: "elafros " + r.mode})
	if err != nil {
		r.a.Warningf("GitHub deployment not recorded: %v", err)
		return 0
	}
	if err := r.ghc.SetDeploymentStatus(r.ctx, r.repo, id, github.DeploymentStatus{State: github.StateInProgress, LogURL: r.logURL()}); err != nil {
		r.a.Warningf("GitHub deployment status: %v", err)
	}
	r.outputs["deployment-id"] = strconv.FormatInt(id, 10)
	return id
}

func (r *run) endDeployment(id int64, st github.DeploymentState, url, desc string) {
	if id == 0 {
		return
	}
	if err := r.ghc.SetDeploymentStatus(r.ctx, r.repo, id, github.DeploymentStatus{State: st, EnvironmentURL: url, LogURL: r.logURL(), Description: desc}); err != nil {
		r.a.Warningf("GitHub deployment status: %v", err)
	}
}

// event reads a path of the event payload ("pull_request.number").
func (r *run) event(path string) any {
	var cur any = r.gh.Event
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func (r *run) eventString(path string) string {
	s, _ := r.event(path).(string)
	return s
}

func (r *run) preview() error {
	num, _ := r.event("pull_request.number").(float64)
	if num <= 0 {
		return fmt.Errorf("preview mode needs a pull_request event (GITHUB_EVENT_NAME is %q)", r.gh.EventName)
	}
	n := int(num)
	m, err := r.load()
	if err != nil {
		return err
	}
	svcs := services(m)
	if len(svcs) == 0 {
		return fmt.Errorf("%s has no Service: previews join a Service's route", r.in.Manifest)
	}
	key := "preview"
	if r.eventString("action") == "closed" {
		for _, s := range svcs {
			if err := r.withReconciler(func() error { return r.dc.ClosePreview(r.ctx, s, n) }); err != nil {
				return err
			}
			r.note(fmt.Sprintf("Preview `%s` of service `%s` removed.", deploy.PreviewTarget(n), s))
		}
		if r.ghc != nil && !r.in.DryRun {
			body := github.Marker(key) + "\n### elafros preview\n\nThis pull request was closed: its preview is removed.\n"
			if _, err := r.ghc.UpsertComment(r.ctx, r.repo, n, key, body); err != nil {
				r.a.Warningf("preview comment: %v", err)
			}
		}
		return nil
	}
	head := r.eventString("pull_request.head.repo.full_name")
	if head != "" && !strings.EqualFold(head, r.repo.String()) && !r.in.AllowForks {
		r.note(fmt.Sprintf("Pull request #%d comes from the fork `%s`: not built. Building a fork's code with this workflow's credentials would let anyone run code with them; set `allow-forks: true` only if the workflow runs on `pull_request` (no secrets) against a server that is safe to expose.", n, head))
		return &rollout.RefusedError{Reason: fmt.Sprintf("pull request #%d comes from the fork %s; set allow-forks: true to preview forks", n, head)}
	}
	objs := deploy.ObjectsOf(m)
	sha := or(r.eventString("pull_request.head.sha"), r.gh.SHA)
	if _, err := r.buildAll(objs); err != nil {
		return err
	}
	if r.in.DryRun {
		r.note(fmt.Sprintf("Dry run: pull request #%d would be previewed as `%s` of %s.", n, deploy.PreviewTarget(n), strings.Join(svcs, ", ")))
		return nil
	}
	env := deploy.PreviewTarget(n)
	depID := r.startDeployment(env, sha, true)
	ctx, cancel := context.WithTimeout(r.ctx, r.in.Timeout)
	defer cancel()
	var body strings.Builder
	fmt.Fprintf(&body, "%s\n### elafros preview\n\n", github.Marker(key))
	var firstURL string
	err = r.withReconciler(func() error {
		for _, o := range objs {
			svc, ok := o.(*v1alpha1.Service)
			if !ok {
				continue
			}
			p, err := r.dc.Preview(ctx, deploy.PreviewOptions{Service: svc.Name, Number: n, Image: svc.Spec.RevisionTemplate.Spec.Container.Image, Template: &svc.Spec.ConfigurationSpec,
				Provenance: deploy.Provenance{Repository: r.repo.String(), Commit: sha, Deployer: r.gh.Actor}})
			if err != nil {
				return err
			}
			u := r.url(p.Domain, p.Target)
			if firstURL == "" {
				firstURL = u
				r.outputs["preview-url"], r.outputs["url"], r.outputs["revision"], r.outputs["image"] = u, u, p.Revision, p.Image
				r.outputs["traffic"] = trafficJSON(p.After)
			}
			fmt.Fprintf(&body, "- `%s`: <%s> — revision `%s` (commit %s), at 0%%: it gets traffic only when someone with write access comments `/rollout 5` (or another percent) here.\n", svc.Name, u, p.Revision, short(sha))
			var s strings.Builder
			fmt.Fprintf(&s, "#### service `%s`: preview `%s`\n\n- URL: <%s>\n- Revision: `%s`\n- Image: `%s`\n\n", svc.Name, p.Target, u, p.Revision, p.Image)
			_ = deploy.RenderTraffic(&s, deploy.Markdown, deploy.TrafficView{Title: svc.Name + ": traffic", After: p.After, URL: func(t string) string { return r.url(p.Domain, t) }})
			r.note(s.String())
		}
		return nil
	})
	if err != nil {
		r.endDeployment(depID, github.StateFailure, "", err.Error())
		return err
	}
	r.endDeployment(depID, github.StateSuccess, firstURL, "preview of "+short(sha))
	if r.ghc != nil {
		if _, err := r.ghc.UpsertComment(r.ctx, r.repo, n, key, body.String()); err != nil {
			r.a.Warningf("preview comment: %v", err)
		}
	}
	return nil
}

func (r *run) promote() error {
	var sel labels.Selector
	if r.repo.Name != "" {
		sel = labels.SelectorFromSet(labels.Set{v1alpha1.RepositoryLabelKey: r.repoLabel()})
	}
	if r.in.DryRun {
		r.note("Dry run: promotion changes traffic; nothing was evaluated.")
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.in.Timeout)
	defer cancel()
	var ps []deploy.Promotion
	err := r.withReconciler(func() error {
		var err error
		ps, err = r.dc.PromoteDue(ctx, sel)
		return err
	})
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		r.note("No canary is under way.")
		return nil
	}
	var b strings.Builder
	b.WriteString("| Service | Canary | Outcome | Why |\n|---|---|---|---|\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", p.Service, p.Revision, p.Outcome, p.Why)
	}
	r.note(b.String())
	for _, p := range ps {
		if p.After == nil {
			continue
		}
		var s strings.Builder
		fmt.Fprintf(&s, "#### service `%s`: %s\n\n", p.Service, p.Outcome)
		_ = deploy.RenderTraffic(&s, deploy.Markdown, deploy.TrafficView{Title: p.Service + ": traffic", Before: p.Before, After: p.After})
		r.note(s.String())
		r.tellPullRequest(p, s.String())
	}
	return nil
}

// tellPullRequest comments on the pull request whose revision is the
// canary (its preview, or its merge deployed from the default branch),
// when the revision says which one.
func (r *run) tellPullRequest(p deploy.Promotion, table string) {
	if r.ghc == nil {
		return
	}
	o, err := r.dc.Get(r.ctx, store.KindRevision, p.Revision)
	if err != nil {
		return
	}
	n, err := strconv.Atoi(o.GetAnnotations()[v1alpha1.PullRequestAnnotationKey])
	if err != nil || n <= 0 {
		return
	}
	body := fmt.Sprintf("Scheduled promotion: `%s` %s. %s\n\n%s", p.Service, p.Outcome, p.Why, table)
	if _, err := r.ghc.Reply(r.ctx, r.repo, n, body); err != nil {
		r.a.Warningf("telling pull request #%d: %v", n, err)
	}
}

// rolloutOp reads the rollout input: a percent, finish or abort.
func rolloutOp(v string) (deploy.Op, error) {
	switch v = strings.TrimSpace(strings.ToLower(v)); v {
	case "finish":
		return deploy.Finish, nil
	case "abort":
		return deploy.Abort, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
	if err != nil || n < 0 || n > 100 {
		return nil, &InputError{"rollout", v, "a percent from 0 to 100 (e.g. 50 or 50%), finish or abort"}
	}
	return deploy.SetNext(n), nil
}

func (r *run) rollout() error {
	if r.in.Service == "" {
		return &InputError{"service", "", "the service whose traffic moves"}
	}
	op, err := rolloutOp(r.in.Rollout)
	if err != nil {
		return err
	}
	before, err := r.dc.Get(r.ctx, store.KindRoute, r.in.Service)
	if err != nil {
		return fmt.Errorf("route %s: %w", r.in.Service, err)
	}
	if r.in.DryRun {
		next, err := op(before.(*v1alpha1.Route).Spec.Rollout.Traffic, r.dc.Ready(r.ctx))
		if err != nil {
			return err
		}
		var s strings.Builder
		s.WriteString("**Dry run**: the traffic would move like this; nothing was changed.\n\n")
		_ = deploy.RenderTraffic(&s, deploy.Markdown, deploy.TrafficView{Title: r.in.Service, Before: before.(*v1alpha1.Route).Spec.Rollout.Traffic, After: next})
		r.note(s.String())
		return nil
	}
	rt, err := r.dc.Rollout(r.ctx, r.in.Service, op)
	if err != nil {
		return err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "`%s`: rollout %s by %s.\n\n", r.in.Service, r.in.Rollout, or(r.gh.Actor, "the workflow"))
	_ = deploy.RenderTraffic(&s, deploy.Markdown, deploy.TrafficView{Title: r.in.Service, Before: before.(*v1alpha1.Route).Spec.Rollout.Traffic, After: rt.Spec.Rollout.Traffic})
	r.note(s.String())
	r.outputs["traffic"] = trafficJSON(rt.Spec.Rollout.Traffic)
	return nil
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
