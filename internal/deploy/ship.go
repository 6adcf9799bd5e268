package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// Provenance says where what is applied comes from. Every object gets the
// repository label and annotation and the commit annotation; revision
// templates get the commit, the deployer, the source digest and the pull
// request, so each revision says where it came from.
type Provenance struct {
	// Repository is owner/name (GitHub's full name).
	Repository string
	// Commit is the full SHA the image was built from.
	Commit string
	// Deployer is who deployed (a GitHub login, or a git author).
	Deployer string
	// SourceDigest is a digest of an uncommitted working tree (elafros up).
	SourceDigest string
	// PullRequest is the pull request a preview was built from (0: none).
	PullRequest int
}

// Stamp writes p onto o (and its revision template).
func (p Provenance) Stamp(o store.Object) {
	set := func(m map[string]string, k, v string) map[string]string {
		if v == "" {
			return m
		}
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
		return m
	}
	var repoLabel string
	if p.Repository != "" {
		repoLabel = v1alpha1.RepositoryLabelValue(p.Repository)
	}
	o.SetLabels(set(o.GetLabels(), v1alpha1.RepositoryLabelKey, repoLabel))
	a := set(o.GetAnnotations(), v1alpha1.RepositoryAnnotationKey, p.Repository)
	o.SetAnnotations(set(a, v1alpha1.GitCommitAnnotationKey, p.Commit))
	spec := ConfigurationSpecOf(o)
	if spec == nil {
		return
	}
	t := &spec.RevisionTemplate
	t.Labels = set(t.Labels, v1alpha1.RepositoryLabelKey, repoLabel)
	t.Annotations = set(t.Annotations, v1alpha1.GitCommitAnnotationKey, p.Commit)
	t.Annotations = set(t.Annotations, v1alpha1.DeployerAnnotationKey, p.Deployer)
	t.Annotations = set(t.Annotations, v1alpha1.SourceDigestAnnotationKey, p.SourceDigest)
	if p.PullRequest > 0 {
		t.Annotations = set(t.Annotations, v1alpha1.PullRequestAnnotationKey, strconv.Itoa(p.PullRequest))
	}
}

// ShipOptions configure Ship.
type ShipOptions struct {
	// Provenance is stamped on every object before it is applied.
	Provenance Provenance
	// DryRun plans: it reports what would be created or configured and
	// the traffic as it is, and writes nothing.
	DryRun bool
	// Wait waits until every Service serves as its strategy says and every
	// Route serves its spec (bounded by ctx).
	Wait bool
	// Progress is told each step as it completes.
	Progress func(Progress)
}

// Progress is a step of one object's deploy.
type Progress struct {
	Kind store.Kind
	Name string
	Step Step
}

// Shipped is what Ship did for one Service or Route.
type Shipped struct {
	Kind   store.Kind
	Name   string
	Action string
	// Domain is where the route serves (empty until it does).
	Domain string
	// Revision is the service's latest ready revision (for a Route: the
	// revision with the largest share).
	Revision string
	// Image is that revision's image, by digest when known.
	Image string
	// NewRevision says the deploy made a new revision.
	NewRevision bool
	// Before and After are the route's served traffic (status.traffic).
	Before, After []v1alpha1.TrafficTarget
}

// Outcome is what Ship did.
type Outcome struct {
	Applied []Applied
	// Shipped has one entry per Service and Route in the manifest.
	Shipped []Shipped
}

// Ship applies objs stamped with their provenance, waits (when asked) for
// each Service and Route to serve, and reports the traffic before and
// after with the revision and image. It is the one deploy call of
// "elafros up", "elafros apply --wait", the Action and the bot. A revision
// that cannot become Ready is a *FailedError with its reason.
func (c *Client) Ship(ctx context.Context, objs []store.Object, o ShipOptions) (*Outcome, error) {
	out := &Outcome{}
	before := map[string]*v1alpha1.Route{}
	latest := map[string]string{}
	for _, obj := range objs {
		o.Provenance.Stamp(obj)
		if obj.GetNamespace() == "" {
			obj.SetNamespace(c.ns())
		}
		switch store.KindOf(obj) {
		case store.KindService, store.KindRoute:
			rt, err := c.route(ctx, obj.GetName())
			if err != nil {
				return nil, err
			}
			before[obj.GetName()] = rt
			if s, err := c.service(ctx, obj.GetName()); err != nil {
				return nil, err
			} else if s != nil {
				latest[obj.GetName()] = s.Status.LatestCreatedRevisionName
			}
		}
	}
	var err error
	if o.DryRun {
		out.Applied, err = c.Plan(ctx, objs)
	} else {
		out.Applied, err = c.Apply(ctx, objs)
	}
	if err != nil {
		return out, err
	}
	progress := func(k store.Kind, name string) func(Step) {
		return func(s Step) {
			if o.Progress != nil {
				o.Progress(Progress{Kind: k, Name: name, Step: s})
			}
		}
	}
	for _, a := range out.Applied {
		k := store.Kind(a.Kind)
		if k != store.KindService && k != store.KindRoute {
			continue
		}
		sh := Shipped{Kind: k, Name: a.Name, Action: a.Action}
		if rt := before[a.Name]; rt != nil {
			sh.Before = rt.Status.Traffic
			sh.Domain = rt.Status.Domain
		}
		if !o.DryRun && o.Wait {
			switch k {
			case store.KindService:
				svc, err := c.service(ctx, a.Name)
				if err != nil {
					return out, err
				}
				if svc == nil {
					return out, fmt.Errorf("service %s disappeared while deploying", a.Name)
				}
				if _, err := c.Wait(ctx, a.Name, svc.Generation, progress(k, a.Name)); err != nil {
					out.Shipped = append(out.Shipped, sh)
					return out, err
				}
			case store.KindRoute:
				if _, err := c.WaitRoute(ctx, a.Name); err != nil {
					out.Shipped = append(out.Shipped, sh)
					return out, err
				}
				progress(k, a.Name)(StepPromoting)
			}
		}
		if !o.DryRun {
			if err := c.fill(ctx, &sh, latest[a.Name]); err != nil {
				return out, err
			}
		}
		out.Shipped = append(out.Shipped, sh)
	}
	return out, nil
}

// fill reads the route's traffic, the revision and its image after a deploy.
func (c *Client) fill(ctx context.Context, sh *Shipped, latestBefore string) error {
	rt, err := c.route(ctx, sh.Name)
	if err != nil {
		return err
	}
	if rt != nil {
		sh.After = rt.Status.Traffic
		sh.Domain = rt.Status.Domain
	}
	switch sh.Kind {
	case store.KindService:
		svc, err := c.service(ctx, sh.Name)
		if err != nil || svc == nil {
			return err
		}
		sh.Revision = svc.Status.LatestReadyRevisionName
		sh.NewRevision = svc.Status.LatestCreatedRevisionName != "" && svc.Status.LatestCreatedRevisionName != latestBefore
	case store.KindRoute:
		best := -1
		for _, t := range sh.After {
			if t.Percent > best {
				best, sh.Revision = t.Percent, t.RevisionName
			}
		}
	}
	if sh.Revision == "" {
		return nil
	}
	o, err := c.store.Get(ctx, store.KindRevision, c.ns(), sh.Revision)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	sh.Image = ImageOf(o.(*v1alpha1.Revision))
	return nil
}

// ImageOf is a revision's image by digest when its digest is known.
func ImageOf(rev *v1alpha1.Revision) string {
	img := rev.Spec.Container.Image
	d := rev.Status.ImageDigest
	switch {
	case strings.Contains(img, "@sha256:") || d == "":
		return img // pinned already, or nothing more is known
	case strings.Contains(d, "@"):
		return d // a runtime that reports the whole reference
	}
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		img = img[:i] // the tag gives way to the digest
	}
	return img + "@" + d
}

func (c *Client) route(ctx context.Context, name string) (*v1alpha1.Route, error) {
	o, err := c.store.Get(ctx, store.KindRoute, c.ns(), name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return o.(*v1alpha1.Route), nil
}

func (c *Client) service(ctx context.Context, name string) (*v1alpha1.Service, error) {
	o, err := c.store.Get(ctx, store.KindService, c.ns(), name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return o.(*v1alpha1.Service), nil
}

// WaitRoute waits until a route serves its spec with every revision Ready,
// and reports a failing revision behind it as a *FailedError.
func (c *Client) WaitRoute(ctx context.Context, name string) (*v1alpha1.Route, error) {
	for {
		rt, err := c.route(ctx, name)
		if err != nil {
			return nil, err
		}
		if rt != nil {
			if rt.Status.ObservedGeneration == rt.Generation && rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete) {
				return rt, nil
			}
			if err := c.failingTarget(ctx, rt); err != nil {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for route %s: %w", name, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// failingTarget is the failure of a configuration the route follows whose
// latest revision cannot become Ready.
func (c *Client) failingTarget(ctx context.Context, rt *v1alpha1.Route) error {
	for _, t := range rt.Spec.Rollout.Traffic {
		if t.ConfigurationName == "" {
			continue
		}
		co, err := c.store.Get(ctx, store.KindConfiguration, c.ns(), t.ConfigurationName)
		if err != nil {
			continue // a missing configuration is the route's own condition
		}
		cfg := co.(*v1alpha1.Configuration)
		cond := cfg.Status.Conditions.Get(v1alpha1.ConditionLatestRevisionReady)
		if cond != nil && cond.Status == corev1.ConditionFalse {
			return &FailedError{Step: StepStarting, Revision: cfg.Status.LatestCreatedRevisionName, Reason: cond.Reason, Detail: cond.Message}
		}
	}
	return nil
}

// IsFailed reports a deploy whose revision cannot become Ready.
func IsFailed(err error) bool {
	var f *FailedError
	return errors.As(err, &f)
}
