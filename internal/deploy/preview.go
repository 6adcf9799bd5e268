package deploy

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

// PreviewTarget is the named target of pull request n: pr-<n>.
func PreviewTarget(n int) string { return "pr-" + strconv.Itoa(n) }

// PreviewConfiguration is the name of pull request n's preview
// Configuration of service: <service>-pr-<n>.
func PreviewConfiguration(service string, n int) string { return service + "-" + PreviewTarget(n) }

// PreviewOptions describe a pull request's preview.
type PreviewOptions struct {
	Service string
	Number  int
	// Image is what the pull request's head built, by digest.
	Image string
	// Template is the pull request's own configuration (from its
	// manifest); nil takes the service's.
	Template   *v1alpha1.ConfigurationSpec
	Provenance Provenance
	Progress   func(Progress)
}

// Previewed is a preview as deployed.
type Previewed struct {
	Target, Revision, Image, Domain string
	// Before and After are the service route's served traffic.
	Before, After []v1alpha1.TrafficTarget
}

// Preview deploys a pull request's head as the named target pr-<N> of the
// service's route, at 0%. The revision comes from a Configuration of its
// own (<service>-pr-<N>: the service's template with the pull request's
// image), so it is never the service's latest revision and its strategy
// never stages it; only a rollout command moves traffic to it. Refused
// (rollout.IsRefused) when the service does not exist or does not allow
// previews.
func (c *Client) Preview(ctx context.Context, o PreviewOptions) (*Previewed, error) {
	svc, err := c.service(ctx, o.Service)
	if err != nil {
		return nil, err
	}
	if svc == nil {
		return nil, &rollout.RefusedError{Reason: fmt.Sprintf("service %q does not exist in namespace %s: deploy the default branch first, then previews of pull requests can join its route", o.Service, c.ns())}
	}
	policy := svc.Spec.Rollout
	policy.SetDefaults()
	if policy.Previews != nil && !*policy.Previews {
		return nil, &rollout.RefusedError{Reason: fmt.Sprintf("service %q has spec.rollout.previews: false; set it to true to preview pull requests", o.Service)}
	}
	name := PreviewConfiguration(o.Service, o.Number)
	if errs := validation.IsDNS1035Label(reconcile.RevisionName(name, 1)); len(errs) > 0 {
		return nil, &rollout.RefusedError{Reason: fmt.Sprintf("the preview's revision name %q is not a DNS label (%s); use a shorter service name", reconcile.RevisionName(name, 1), errs[0])}
	}
	cfg := &v1alpha1.Configuration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns(), Labels: map[string]string{
			v1alpha1.ServiceLabelKey: o.Service, v1alpha1.PreviewLabelKey: strconv.Itoa(o.Number)}},
		Spec: *svc.Spec.ConfigurationSpec.DeepCopy(),
	}
	if o.Template != nil {
		cfg.Spec = *o.Template.DeepCopy()
	}
	cfg.Spec.Build = nil
	cfg.Spec.RevisionTemplate.Spec.Container.Image = o.Image
	prov := o.Provenance
	prov.PullRequest = o.Number
	prov.Stamp(cfg)
	cfg.SetDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.SchemeGroupVersion.WithKind("Configuration").GroupKind(), name, errs)
	}
	if _, err := c.Apply(ctx, []store.Object{cfg}); err != nil {
		return nil, err
	}
	rev, err := c.waitConfiguration(ctx, name)
	if err != nil {
		return nil, err
	}
	if o.Progress != nil {
		o.Progress(Progress{Kind: store.KindConfiguration, Name: name, Step: StepStarting})
	}
	target := PreviewTarget(o.Number)
	before, _ := c.route(ctx, o.Service)
	stage := func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		if i := rollout.Find(t, target); i >= 0 && t[i].RevisionName == rev {
			return t, nil
		}
		return rollout.Stage(t, target, rev, ready)
	}
	if _, err := c.Rollout(ctx, o.Service, stage); err != nil {
		return nil, err
	}
	rt, err := c.waitTarget(ctx, o.Service, target, rev)
	if err != nil {
		return nil, err
	}
	if o.Progress != nil {
		o.Progress(Progress{Kind: store.KindRoute, Name: o.Service, Step: StepPromoting})
	}
	out := &Previewed{Target: target, Revision: rev, Domain: rt.Status.Domain, After: rt.Status.Traffic}
	if before != nil {
		out.Before = before.Status.Traffic
	}
	if r, err := c.store.Get(ctx, store.KindRevision, c.ns(), rev); err == nil {
		out.Image = ImageOf(r.(*v1alpha1.Revision))
	}
	return out, nil
}

// ClosePreview removes pull request n's target from the service's route
// (a share it held returns to current) and deletes its Configuration, so
// its revisions are collected. Closing a preview that is gone is not an
// error.
func (c *Client) ClosePreview(ctx context.Context, service string, n int) error {
	target := PreviewTarget(n)
	rt, err := c.route(ctx, service)
	if err != nil {
		return err
	}
	if rt != nil && rollout.Find(rt.Spec.Rollout.Traffic, target) >= 0 {
		if _, err := c.Rollout(ctx, service, func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
			return rollout.Unstage(t, target, ready)
		}); err != nil {
			return err
		}
	}
	err = c.store.Delete(ctx, store.KindConfiguration, c.ns(), PreviewConfiguration(service, n))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// waitConfiguration waits until a configuration's latest revision (of its
// current generation) is Ready, and returns its name.
func (c *Client) waitConfiguration(ctx context.Context, name string) (string, error) {
	for {
		o, err := c.store.Get(ctx, store.KindConfiguration, c.ns(), name)
		if err != nil {
			return "", err
		}
		cfg := o.(*v1alpha1.Configuration)
		st := cfg.Status
		if st.ObservedGeneration >= cfg.Generation && st.LatestCreatedRevisionName != "" {
			if st.LatestReadyRevisionName == st.LatestCreatedRevisionName {
				return st.LatestReadyRevisionName, nil
			}
			if cond := st.Conditions.Get(v1alpha1.ConditionLatestRevisionReady); cond != nil && cond.Status == corev1.ConditionFalse {
				return "", &FailedError{Step: StepStarting, Revision: st.LatestCreatedRevisionName, Reason: cond.Reason, Detail: cond.Message}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for configuration %s: %w", name, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// waitTarget waits until the route serves (addresses) target at rev.
func (c *Client) waitTarget(ctx context.Context, route, target, rev string) (*v1alpha1.Route, error) {
	for {
		rt, err := c.route(ctx, route)
		if err != nil {
			return nil, err
		}
		if rt != nil && rt.Status.ObservedGeneration == rt.Generation {
			if i := rollout.Find(rt.Status.Traffic, target); i >= 0 && rt.Status.Traffic[i].RevisionName == rev {
				return rt, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for route %s to address %s: %w", route, target, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// SetNextTo makes revision the route's next at pct percent: staged as next
// first when next addresses another revision (or nothing), which moves a
// share that next held back to current. It is the bot's "/rollout 50" on a
// pull request whose revision is not yet next.
func SetNextTo(revision string, pct int) Op {
	return func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		if i := rollout.Find(t, rollout.Next); i < 0 || t[i].RevisionName != revision {
			staged, err := rollout.Stage(t, rollout.Next, revision, ready)
			if err != nil {
				return nil, err
			}
			t = staged
		}
		return rollout.SetNext(t, pct, ready)
	}
}
