package reconcile

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Runtime materializes revisions as running workloads.
type Runtime interface {
	// Materialize makes rev's workload exist (idempotently) and reports
	// its state. image is the reference to run (a digest once built).
	Materialize(ctx context.Context, rev *v1alpha1.Revision, image string) (WorkloadState, error)
	// Retire removes rev's workload; the Revision object is kept.
	Retire(ctx context.Context, rev *v1alpha1.Revision) error
}

// WorkloadState is what a Runtime reports of a revision's workload.
type WorkloadState struct {
	// Ready: it can serve.
	Ready bool
	// Reason and Message, when not Ready and not merely starting, say why
	// it cannot (ContainerMissing, ExitCode:1, …).
	Reason, Message string
	// ImageDigest is the image resolved to a digest, when known.
	ImageDigest string
}

// Builder turns a BuildSpec into an image.
type Builder interface {
	// Start begins the build called name (idempotently: starting a known
	// build again does nothing).
	Start(ctx context.Context, namespace, name string, spec v1alpha1.BuildSpec, image string) error
	// Status reports the build; found is false for an unknown build.
	Status(ctx context.Context, namespace, name string) (state BuildState, found bool, err error)
}

// BuildState is a build's progress.
type BuildState struct {
	Done   bool
	Failed bool
	// Reason and Message explain a failure (e.g. the compiler's last lines).
	Reason, Message string
	// Image is the built image by digest.
	Image string
	// Source is the provenance of the image.
	Source *v1alpha1.ImageSource
}

// Traffic makes a Route's resolved split real.
type Traffic interface {
	// Apply serves plan for route (idempotent).
	Apply(ctx context.Context, route *v1alpha1.Route, plan TrafficPlan) error
	// Forget stops serving a route that no longer exists (idempotent).
	Forget(ctx context.Context, namespace, name string) error
}

// TrafficPlan is what a Route serves.
type TrafficPlan struct {
	// Domain is the host of the split.
	Domain string
	// Split lists the revisions with their percent (>0), in status order.
	Split []Backend
	// Hosts maps each named target's host to the target it serves, with
	// its tag, so that a backend never has to work out which tag a host
	// belongs to (two tags may name one revision, and the host template
	// is the operator's); only Ready revisions are addressable.
	Hosts map[string]NamedTarget
	// Tags maps each named target to its revision (the same Ready ones),
	// for reaching a target through the main host (Elafros-Target: next).
	Tags map[string]string
}

// NamedTarget is a named traffic target as a host serves it: the target's
// name (its tag, as in spec.traffic[].name) and its revision.
type NamedTarget struct {
	Tag      string
	Revision string
}

// Backend is one revision of a split.
type Backend struct {
	Revision string
	Percent  int
	// Ready is false for a pinned revision that lost readiness and keeps
	// its share: its requests fail until it recovers.
	Ready bool
}

// Options tune the reconciler. The zero value is usable.
type Options struct {
	// DomainSuffix ends every route domain: <route>.<namespace>.<suffix>.
	// Default "example.com".
	DomainSuffix string
	// TagHostTemplate builds a named target's host from {tag}, {route},
	// {namespace} and {domain}. Default "{tag}.{route}.{namespace}.{domain}"
	// (the seed's); "{tag}-{route}.{namespace}.{domain}" is Knative's later
	// form, which one wildcard certificate covers.
	TagHostTemplate string
	// ProgressDeadline bounds how long a revision may start, or a route
	// hold its traffic, before the reason becomes ProgressDeadlineExceeded.
	// Default 120s (errors.md).
	ProgressDeadline time.Duration
	// RetireAfter is how long a revision no route references keeps its
	// workload. Default 15m.
	RetireAfter time.Duration
	// KeepRevisions is how many of a configuration's newest revisions are
	// never deleted (for rollback). Default 5.
	KeepRevisions int
	// MaxRevisions is how many revisions a configuration keeps in all;
	// beyond it the oldest unreferenced ones are deleted. Default 50.
	MaxRevisions int
	// LogURLTemplate is each Revision's status.logUrl, with {namespace},
	// {name} and {configuration} replaced (URL-escaped): the embedded
	// API's .../revisions/{name}/log, or a Grafana or Cloud Logging link
	// on a cluster. Empty: no logUrl.
	LogURLTemplate string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Moved, if set, is told of each traffic move the Service's strategy
	// wrote (the Route as written, and the move its history records): on
	// a cluster, a Kubernetes Event beside the history.
	Moved func(ctx context.Context, route *v1alpha1.Route, move v1alpha1.RolloutMove)
}

const (
	defaultDomainSuffix     = "example.com"
	defaultTagHostTemplate  = "{tag}.{route}.{namespace}.{domain}"
	defaultProgressDeadline = 120 * time.Second
)

func (o Options) withDefaults() (Options, error) {
	if o.DomainSuffix == "" {
		o.DomainSuffix = defaultDomainSuffix
	}
	if o.TagHostTemplate == "" {
		o.TagHostTemplate = defaultTagHostTemplate
	}
	for _, p := range []string{"{tag}", "{route}", "{namespace}", "{domain}"} {
		if !strings.Contains(o.TagHostTemplate, p) {
			return o, fmt.Errorf("tag host template %q must contain %s (it has {tag}, {route}, {namespace} and {domain} to place)", o.TagHostTemplate, p)
		}
	}
	if o.LogURLTemplate != "" && !strings.Contains(o.LogURLTemplate, "{name}") {
		return o, fmt.Errorf("log URL template %q must contain {name} (and may contain {namespace} and {configuration})", o.LogURLTemplate)
	}
	if o.ProgressDeadline == 0 {
		o.ProgressDeadline = defaultProgressDeadline
	}
	if o.RetireAfter == 0 {
		o.RetireAfter = 15 * time.Minute
	}
	if o.KeepRevisions == 0 {
		o.KeepRevisions = 5
	}
	if o.MaxRevisions == 0 {
		o.MaxRevisions = 50
	}
	if o.MaxRevisions < o.KeepRevisions {
		return o, fmt.Errorf("MaxRevisions (%d) must be at least KeepRevisions (%d)", o.MaxRevisions, o.KeepRevisions)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Domain is a route's host: <route>.<namespace>.<suffix>.
func (o Options) Domain(route *v1alpha1.Route) string {
	return route.Name + "." + route.Namespace + "." + o.DomainSuffix
}

// TagHost is the host of a route's named target.
func (o Options) TagHost(route *v1alpha1.Route, tag string) string {
	return strings.NewReplacer("{tag}", tag, "{route}", route.Name, "{namespace}", route.Namespace, "{domain}", o.DomainSuffix).
		Replace(o.TagHostTemplate)
}

// LogURL is rev's status.logUrl from LogURLTemplate ("" without one).
func (o Options) LogURL(rev *v1alpha1.Revision) string {
	if o.LogURLTemplate == "" {
		return ""
	}
	return strings.NewReplacer("{namespace}", url.PathEscape(rev.Namespace), "{name}", url.PathEscape(rev.Name),
		"{configuration}", url.PathEscape(rev.Labels[v1alpha1.ConfigurationLabelKey])).Replace(o.LogURLTemplate)
}
