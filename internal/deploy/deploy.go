// Package deploy is the common path over a Store that the CLI, the action
// and the bot share: apply objects, deploy an image to a service, wait for
// it with the seed's progress steps, and move traffic with the rollout
// package (set next to N%, finish, abort, promote), retrying on conflicts.
// It holds no rules of its own: those are in api, reconcile and rollout.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

// Client runs the common operations against a Store. Make it with New.
type Client struct {
	store     store.Store
	namespace string
	poll      time.Duration
	actor     string
	reason    string
	now       func() time.Time
	events    EventSink
	// eventFailed is told of an event the sink could not record.
	eventFailed func(error)
}

// Option configures a Client.
type Option func(*Client)

// WithPollInterval sets how often Wait looks (default 200ms).
func WithPollInterval(d time.Duration) Option { return func(c *Client) { c.poll = d } }

// WithActor names who moves traffic (a GitHub login, a workflow actor, a
// local user) and why (the mode or command), for the Route's audit history.
func WithActor(actor, reason string) Option {
	return func(c *Client) { c.actor, c.reason = actor, reason }
}

// EventSink is told of every traffic move the client makes, after the
// move is written: on a cluster, a Kubernetes Event on the Route
// (kube.Events), so "kubectl describe route" and event exporters show who
// moved traffic, beside the Route's own audit history.
type EventSink interface {
	Event(ctx context.Context, o store.Object, eventType, reason, message string) error
}

// ReasonTrafficMoved is the reason of the event of a traffic move.
const ReasonTrafficMoved = v1alpha1.ReasonTrafficMoved

// WithEvents sends every traffic move to sink as well (nil: none). A move
// whose event the sink could not record is still written, with its record
// in the Route's history; failed (if not nil) is told why, so that a
// missing permission is seen rather than every Event silently lost.
func WithEvents(sink EventSink, failed func(error)) Option {
	return func(c *Client) { c.events, c.eventFailed = sink, failed }
}

// WithClock sets the clock the audit history and promotion read.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New returns a Client over store, in namespace ("" for default).
func New(store store.Store, namespace string, opts ...Option) *Client {
	if namespace == "" {
		namespace = v1alpha1.DefaultNamespace
	}
	c := &Client{store: store, namespace: namespace, poll: 200 * time.Millisecond, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Namespace is the namespace the client works in.
func (c *Client) Namespace() string { return c.namespace }

func (c *Client) ns() string { return c.namespace }

// Applied says what Apply did (or, in a dry run, would do) to one object.
type Applied struct {
	Kind, Name string
	Action     string // created, configured, unchanged
}

// The actions of Applied.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
)

// Apply creates or updates each object (already defaulted and validated,
// as manifest.Load returns them). Objects without a namespace go to the
// client's.
func (c *Client) Apply(ctx context.Context, objs []store.Object) ([]Applied, error) {
	return c.apply(ctx, objs, false)
}

// Plan says what Apply would do, writing nothing.
func (c *Client) Plan(ctx context.Context, objs []store.Object) ([]Applied, error) {
	return c.apply(ctx, objs, true)
}

func (c *Client) apply(ctx context.Context, objs []store.Object, dryRun bool) ([]Applied, error) {
	var out []Applied
	for _, o := range objs {
		kind := store.KindOf(o)
		if o.GetNamespace() == "" || o.GetNamespace() == v1alpha1.DefaultNamespace {
			o.SetNamespace(c.ns())
		}
		a := Applied{Kind: string(kind), Name: o.GetName()}
		err := onConflict(func() error {
			cur, err := c.store.Get(ctx, kind, o.GetNamespace(), o.GetName())
			if apierrors.IsNotFound(err) {
				a.Action = ActionCreated
				if dryRun {
					return nil
				}
				_, err = c.store.Create(ctx, o)
				return err
			}
			if err != nil {
				return err
			}
			next := o.DeepCopyObject().(store.Object)
			keepProvenance(cur, next)
			if equality.Semantic.DeepEqual(store.SpecOf(cur), store.SpecOf(next)) &&
				equality.Semantic.DeepEqual(cur.GetLabels(), next.GetLabels()) {
				a.Action = ActionUnchanged
				return nil
			}
			a.Action = ActionConfigured
			if dryRun {
				return nil
			}
			next.SetResourceVersion(cur.GetResourceVersion())
			next.SetOwnerReferences(cur.GetOwnerReferences())
			next.SetAnnotations(mergeAnnotations(cur.GetAnnotations(), next.GetAnnotations()))
			_, err = c.store.Update(ctx, next)
			return err
		})
		if err != nil {
			return out, fmt.Errorf("%s %s: %w", kind, o.GetName(), err)
		}
		out = append(out, a)
	}
	return out, nil
}

// keepProvenance gives next's revision template the provenance
// annotations of cur's when nothing else of the template differs, so that
// a push whose image and configuration are unchanged makes no revision.
func keepProvenance(cur, next store.Object) {
	ct, nt := templateOf(cur), templateOf(next)
	if ct == nil || nt == nil {
		return
	}
	strip := func(t *v1alpha1.RevisionTemplateSpec) *v1alpha1.RevisionTemplateSpec {
		t = t.DeepCopy()
		for _, k := range v1alpha1.ProvenanceAnnotationKeys {
			delete(t.Annotations, k)
		}
		if len(t.Annotations) == 0 {
			t.Annotations = nil
		}
		return t
	}
	if !equality.Semantic.DeepEqual(strip(ct), strip(nt)) {
		return
	}
	nt.Annotations = maps.Clone(ct.Annotations)
}

func templateOf(o store.Object) *v1alpha1.RevisionTemplateSpec {
	if spec := ConfigurationSpecOf(o); spec != nil {
		return &spec.RevisionTemplate
	}
	return nil
}

// ConfigurationSpecOf returns the configuration spec of a Service or a
// Configuration (nil for other kinds).
func ConfigurationSpecOf(o store.Object) *v1alpha1.ConfigurationSpec {
	switch x := o.(type) {
	case *v1alpha1.Service:
		return &x.Spec.ConfigurationSpec
	case *v1alpha1.Configuration:
		return &x.Spec
	}
	return nil
}

func mergeAnnotations(cur, want map[string]string) map[string]string {
	if len(cur) == 0 && len(want) == 0 {
		return nil
	}
	m := map[string]string{}
	maps.Copy(m, cur)
	maps.Copy(m, want)
	return m
}

// ObjectsOf returns a loaded manifest's objects in file order.
func ObjectsOf(m *manifest.Manifest) []store.Object {
	objs := make([]store.Object, len(m.Documents))
	for i, d := range m.Documents {
		objs[i] = d.Object.(store.Object)
	}
	return objs
}

// Options describe a deploy of an image to a service.
type Options struct {
	Service string
	Image   string
	// Env is merged by name into the template's env.
	Env []corev1.EnvVar
	// Function labels the revisions elafros.dev/type: function (and so
	// SingleThreaded by default).
	Function bool
	// Deployer and GitCommit are recorded on the revisions.
	Deployer, GitCommit string
}

// Deploy creates the service or updates its template, and returns the
// service as written (its generation names the revision to wait for).
func (c *Client) Deploy(ctx context.Context, o Options) (*v1alpha1.Service, error) {
	if o.Service == "" || o.Image == "" {
		return nil, errors.New("deploy needs a service name and an image")
	}
	var out *v1alpha1.Service
	err := onConflict(func() error {
		cur, err := c.store.Get(ctx, store.KindService, c.ns(), o.Service)
		var svc *v1alpha1.Service
		switch {
		case apierrors.IsNotFound(err):
			svc = &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: o.Service, Namespace: c.ns()}}
		case err != nil:
			return err
		default:
			svc = cur.(*v1alpha1.Service).DeepCopy()
		}
		t := &svc.Spec.RevisionTemplate
		t.Spec.Container.Image = o.Image
		for _, e := range o.Env {
			if i := slices.IndexFunc(t.Spec.Container.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }); i >= 0 {
				t.Spec.Container.Env[i] = e
			} else {
				t.Spec.Container.Env = append(t.Spec.Container.Env, e)
			}
		}
		if o.Function {
			if t.Labels == nil {
				t.Labels = map[string]string{}
			}
			t.Labels[v1alpha1.TypeLabelKey] = v1alpha1.TypeFunction
		}
		for k, v := range map[string]string{v1alpha1.DeployerAnnotationKey: o.Deployer, v1alpha1.GitCommitAnnotationKey: o.GitCommit} {
			if v != "" {
				if t.Annotations == nil {
					t.Annotations = map[string]string{}
				}
				t.Annotations[k] = v
			}
		}
		svc.SetDefaults()
		if errs := svc.Validate(); len(errs) > 0 {
			return apierrors.NewInvalid(v1alpha1.SchemeGroupVersion.WithKind("Service").GroupKind(), o.Service, errs)
		}
		var w store.Object
		if cur == nil {
			w, err = c.store.Create(ctx, svc)
		} else {
			w, err = c.store.Update(ctx, svc)
		}
		if err != nil {
			return err
		}
		out = w.(*v1alpha1.Service)
		return nil
	})
	return out, err
}

// Step is a progress step of Wait, as the seed's CLI prints them.
type Step string

// The steps.
const (
	StepBuilding  Step = "Building"
	StepStarting  Step = "Starting"
	StepPromoting Step = "Promoting"
)

// FailedError is a deploy whose revision cannot become Ready.
type FailedError struct {
	Step           Step
	Revision       string
	Reason, Detail string
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("%s: revision %s: %s: %s", e.Step, e.Revision, e.Reason, e.Detail)
}

// Wait waits until the service has reconciled generation: the revision
// made from it is Ready (Starting) and the route serves what the strategy
// says (Promoting). done is called as each step completes. A service's
// generation is not its configuration's (a strategy change moves only the
// first), so the revision is the configuration's latest created one once
// the configuration carries the service's spec.
func (c *Client) Wait(ctx context.Context, service string, generation int64, done func(Step)) (*v1alpha1.Service, error) {
	interval := c.poll
	started, built := false, false
	for {
		svc, rev, err := c.progress(ctx, service, generation)
		if err != nil {
			return nil, err
		}
		if rev != "" && !started {
			if r, err := c.store.Get(ctx, store.KindRevision, c.ns(), rev); err == nil {
				rv := r.(*v1alpha1.Revision)
				if rv.Spec.BuildName != "" && !built {
					bc := rv.Status.Conditions.Get(v1alpha1.ConditionBuildComplete)
					switch {
					case bc != nil && bc.Status == corev1.ConditionTrue:
						built = true
						if done != nil {
							done(StepBuilding)
						}
					case bc != nil && bc.Status == corev1.ConditionFalse:
						return svc, &FailedError{Step: StepBuilding, Revision: rev, Reason: bc.Reason, Detail: bc.Message}
					}
				}
				cond := rv.Status.Conditions.Get(v1alpha1.ConditionReady)
				switch {
				case cond != nil && cond.Status == corev1.ConditionTrue:
					started = true
					if done != nil {
						done(StepStarting)
					}
				case cond != nil && cond.Failed():
					return svc, &FailedError{Step: StepStarting, Revision: rev, Reason: cond.Reason, Detail: cond.Message}
				}
			}
		}
		if started && promoted(svc, rev) {
			if done != nil {
				done(StepPromoting)
			}
			return svc, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for service %s: %w", service, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// promoted: the service's route serves or addresses rev as its strategy
// says (100%, next at 0%, or next at the first step) and is Ready.
func promoted(svc *v1alpha1.Service, rev string) bool {
	if svc.Status.LatestReadyRevisionName != rev || !svc.Status.Conditions.IsTrue(v1alpha1.ConditionReady) {
		return false
	}
	return slices.ContainsFunc(svc.Status.Traffic, func(t v1alpha1.TrafficTarget) bool { return t.RevisionName == rev })
}

// progress returns the service and, once its configuration carries the
// spec of generation and has made its revision, that revision's name.
func (c *Client) progress(ctx context.Context, service string, generation int64) (*v1alpha1.Service, string, error) {
	o, err := c.store.Get(ctx, store.KindService, c.ns(), service)
	if err != nil {
		return nil, "", err
	}
	svc := o.(*v1alpha1.Service)
	if svc.Status.ObservedGeneration < generation {
		return svc, "", nil
	}
	co, err := c.store.Get(ctx, store.KindConfiguration, c.ns(), service)
	if apierrors.IsNotFound(err) {
		return svc, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	cfg := co.(*v1alpha1.Configuration)
	if !equality.Semantic.DeepEqual(cfg.Spec, svc.Spec.ConfigurationSpec) || cfg.Status.ObservedGeneration < cfg.Generation {
		return svc, "", nil
	}
	return svc, cfg.Status.LatestCreatedRevisionName, nil
}

// SetStrategy changes a service's rollout strategy.
func (c *Client) SetStrategy(ctx context.Context, service string, s v1alpha1.RolloutStrategy) error {
	return onConflict(func() error {
		o, err := c.store.Get(ctx, store.KindService, c.ns(), service)
		if err != nil {
			return err
		}
		svc := o.(*v1alpha1.Service).DeepCopy()
		svc.Spec.Rollout.Strategy = s
		svc.Spec.Rollout.SetDefaults()
		if errs := svc.Validate(); len(errs) > 0 {
			return apierrors.NewInvalid(v1alpha1.SchemeGroupVersion.WithKind("Service").GroupKind(), service, errs)
		}
		_, err = c.store.Update(ctx, svc)
		return err
	})
}

// Op is a rollout operation on a route's traffic.
type Op func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error)

// SetNext is the seed's "rollout next percent N".
func SetNext(pct int) Op {
	return func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		return rollout.SetNext(t, pct, ready)
	}
}

// Finish, Abort: the seed's final step, and back to current.
var (
	Finish Op = rollout.Finish
	Abort  Op = rollout.Abort
)

// Promote moves next one step along the service's steps.
func Promote(steps []int) Op {
	return func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		out, _, err := rollout.Promote(t, steps, ready)
		return out, err
	}
}

// Rollout applies op to the route of a service (or a route of that name)
// and writes it with its resourceVersion, retrying on conflicts, with the
// move recorded in the route's audit history (who and why from
// WithActor) in the same write. A refusal (rollout.IsRefused) changes
// nothing; an op that moves nothing writes nothing.
func (c *Client) Rollout(ctx context.Context, route string, op Op) (*v1alpha1.Route, error) {
	var out *v1alpha1.Route
	err := onConflict(func() error {
		o, err := c.store.Get(ctx, store.KindRoute, c.ns(), route)
		if err != nil {
			return err
		}
		rt := o.(*v1alpha1.Route).DeepCopy()
		next, err := op(rt.Spec.Rollout.Traffic, c.Ready(ctx))
		if err != nil {
			return err
		}
		if equality.Semantic.DeepEqual(next, rt.Spec.Rollout.Traffic) {
			out = rt // nothing moves: no write, no history
			return nil
		}
		if err := c.record(rt, rt.Spec.Rollout.Traffic, next); err != nil {
			return err
		}
		from := rt.Spec.Rollout.Traffic
		rt.Spec.Rollout.Traffic = next
		w, err := c.store.Update(ctx, rt)
		if err != nil {
			return err
		}
		out = w.(*v1alpha1.Route)
		c.event(ctx, out, from, next)
		return nil
	})
	return out, err
}

// event tells the sink of a move written. The Route's history already
// holds the move, so a sink that fails loses only the copy.
func (c *Client) event(ctx context.Context, rt *v1alpha1.Route, from, to []v1alpha1.TrafficTarget) {
	if c.events == nil {
		return
	}
	msg := v1alpha1.RolloutMove{Actor: c.actor, Reason: c.reason, From: from, To: to}.Message()
	if err := c.events.Event(ctx, rt, corev1.EventTypeNormal, ReasonTrafficMoved, msg); err != nil && c.eventFailed != nil {
		c.eventFailed(fmt.Errorf("the move is in route %s's history, but its Event was not recorded: %w", rt.Name, err))
	}
}

// Ready reports revision readiness from the store.
func (c *Client) Ready(ctx context.Context) rollout.ReadyFunc {
	return func(name string) (bool, string) {
		o, err := c.store.Get(ctx, store.KindRevision, c.ns(), name)
		if err != nil {
			return false, fmt.Sprintf("revision %s: %v", name, err)
		}
		return o.(*v1alpha1.Revision).Readiness()
	}
}

// Row is one line of "revisions list", the seed's columns.
type Row struct {
	Names    []string // target names addressing it (current, next)
	Traffic  *int     // percent served; nil when not in the route
	ID       string   // the revision name
	Date     time.Time
	Deployer string
	GitSHA   string
}

// Revisions lists a service's revisions, newest first, with the traffic
// its route serves them.
func (c *Client) Revisions(ctx context.Context, service string) ([]Row, error) {
	revs, err := c.store.List(ctx, store.KindRevision, c.ns(), labels.SelectorFromSet(labels.Set{v1alpha1.ConfigurationLabelKey: service}))
	if err != nil {
		return nil, err
	}
	var traffic []v1alpha1.TrafficTarget
	if o, err := c.store.Get(ctx, store.KindRoute, c.ns(), service); err == nil {
		traffic = o.(*v1alpha1.Route).Status.Traffic
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}
	rows := make([]Row, 0, len(revs))
	gens := map[string]int64{} // from the generation label, not parsed back from the name
	for _, o := range revs {
		r := o.(*v1alpha1.Revision)
		gens[r.Name], _ = strconv.ParseInt(r.Labels[v1alpha1.ConfigurationGenerationLabelKey], 10, 64)
		row := Row{ID: r.Name, Date: r.CreationTimestamp.Time, Deployer: r.Annotations[v1alpha1.DeployerAnnotationKey], GitSHA: short(r.Annotations[v1alpha1.GitCommitAnnotationKey])}
		if row.GitSHA == "" && r.Status.ImageSource != nil {
			row.GitSHA = short(r.Status.ImageSource.Commit)
		}
		for _, t := range traffic {
			if t.RevisionName != r.Name {
				continue
			}
			if t.Name != "" {
				row.Names = append(row.Names, t.Name)
			}
			p := t.Percent
			if row.Traffic != nil {
				p += *row.Traffic
			}
			row.Traffic = &p
		}
		rows = append(rows, row)
	}
	sort.SliceStable(rows, func(i, j int) bool { return gens[rows[i].ID] > gens[rows[j].ID] })
	return rows, nil
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// backoff is how writes are retried on a conflict (someone wrote in
// between): ten tries over about a second, jittered so that concurrent
// writers (the bot's commands, the action) spread out.
var backoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5}

// onConflict runs fn again on a conflict, with client-go's retry.
func onConflict(fn func() error) error { return retry.RetryOnConflict(backoff, fn) }

// List lists objects of a kind in the client's namespace (sel nil: all).
func (c *Client) List(ctx context.Context, kind store.Kind, sel labels.Selector) ([]store.Object, error) {
	if sel == nil {
		sel = labels.Everything()
	}
	return c.store.List(ctx, kind, c.ns(), sel)
}

// As is a copy of c that records its moves as actor's, for reason (the
// bot makes one per command: who commented, and the command).
func (c *Client) As(actor, reason string) *Client { return c.withActor(actor, reason) }

// Get reads one object of the client's namespace.
func (c *Client) Get(ctx context.Context, kind store.Kind, name string) (store.Object, error) {
	return c.store.Get(ctx, kind, c.ns(), name)
}
