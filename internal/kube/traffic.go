package kube

// The Traffic applier turns a Route's TrafficPlan into Gateway API
// HTTPRoutes. The API requests it makes, for RBAC:
//
//	group gateway.networking.k8s.io, resource httproutes (no other resource):
//	  list, watch  Start (one list to fail fast, then the informer, all
//	               namespaces, label app.kubernetes.io/managed-by=elafros);
//	               ReadPlan (list, one namespace)
//	  get          Apply, for an HTTPRoute name absent from the informer's
//	               cache (to refuse a foreign HTTPRoute that has our name)
//	  patch        Apply (server-side apply, field manager "elafros",
//	               force)
//	  create       Apply: a server-side apply that creates the HTTPRoute
//	               is authorized as create too
//	  delete       Apply (the HTTPRoute of a removed named target), Forget
//
// Each HTTPRoute's ownerReference to its Route has blockOwnerDeletion set:
// where the OwnerReferencesPermissionEnforcement admission plugin is
// enabled, that also needs update on routes/finalizers in elafros.dev.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// TargetHeader on a request to a route's domain reaches the revision of
// the named target it names (Elafros-Target: next), as the local router
// does.
const TargetHeader = v1alpha1.TargetHeader

// Limits of a Gateway API v1 HTTPRoute (its CRD's maxItems).
const (
	// MaxHostnames is the most hostnames an HTTPRoute may have.
	MaxHostnames = 16
	// MaxRules is the most rules an HTTPRoute may have: one per named
	// target plus the split, so a route has at most 15 named targets.
	MaxRules = 16
	// MaxBackendRefs is the most backendRefs of a rule: a split has at
	// most 16 revisions.
	MaxBackendRefs = 16
)

// DefaultSyncTimeout is TrafficOptions.SyncTimeout's default.
const DefaultSyncTimeout = 10 * time.Second

var (
	// ErrForeignHTTPRoute is returned (wrapped) by Apply when an
	// HTTPRoute with one of the route's names exists but is not this
	// Route's (missing its labels or its owner): it is left untouched.
	ErrForeignHTTPRoute = errors.New("HTTPRoute exists and is not this Route's")
	// ErrGatewayLimit is returned (wrapped) by Apply when a plan exceeds
	// a Gateway API limit (MaxHostnames, MaxRules, MaxBackendRefs);
	// nothing is written.
	ErrGatewayLimit = errors.New("exceeds a Gateway API limit")
)

const (
	routeOwnerKind     = "Route"
	parentGatewayGroup = gatewayv1.Group(gatewayv1.GroupName)
	parentGatewayKind  = gatewayv1.Kind("Gateway")
	backendServiceKind = gatewayv1.Kind("Service")
	// targetWeight is the weight of the one backendRef of a named target's
	// rule (all of its traffic).
	targetWeight = 100
)

// managedHTTPRoutes selects every HTTPRoute elafros manages.
var managedHTTPRoutes = labels.SelectorFromSet(labels.Set{ManagedByLabelKey: ManagedByValue})

// TrafficOptions configure a Traffic.
type TrafficOptions struct {
	// Gateway is the parentRef of every HTTPRoute. Name is required;
	// Namespace defaults to the route's; Group and Kind default to
	// gateway.networking.k8s.io and Gateway; SectionName and Port are
	// optional.
	Gateway gatewayv1.ParentReference
	// SyncTimeout bounds how long Apply and Forget wait, after writing,
	// for the informer to observe their writes, so that the next call
	// compares with what it wrote (read-your-writes). Past it they return
	// anyway: the writes are done, and a stale cache only costs an
	// idempotent write. Default DefaultSyncTimeout.
	SyncTimeout time.Duration
	// Namespace confines the informer (and so the permissions needed) to
	// one namespace; "" watches all.
	Namespace string
}

// Traffic serves Routes through Gateway API HTTPRoutes: one for the
// route's domain (the split, and a rule per named target matching the
// Elafros-Target header) and one per named target's host. It writes with
// server-side apply, only what differs from its informer's cache. It
// implements reconcile.Traffic; it is safe for concurrent use (Apply and
// Forget are serialized).
type Traffic struct {
	client gwclient.Interface
	opts   TrafficOptions

	mu      sync.Mutex
	ctx     context.Context // Start's: the informer runs until it is done
	lister  gwlisters.HTTPRouteLister
	indexer cache.Indexer
}

var _ reconcile.Traffic = (*Traffic)(nil)

// NewTraffic returns a Traffic for the cluster of cfg. Call Start before
// Apply or Forget.
func NewTraffic(cfg *rest.Config, o TrafficOptions) (*Traffic, error) {
	if cfg == nil {
		return nil, errors.New("kube traffic: no rest.Config")
	}
	if o.Gateway.Name == "" {
		return nil, errors.New("kube traffic: TrafficOptions.Gateway.Name is required (the Gateway every HTTPRoute attaches to)")
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	c, err := gwclient.NewForConfig(gatewayClientConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("kube traffic: building the Gateway API client: %w", err)
	}
	return &Traffic{client: c, opts: o}, nil
}

// gatewayClientConfig copies cfg with client-go's low default rate limit raised.
func gatewayClientConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	if c.QPS == 0 {
		c.QPS, c.Burst = 200, 400
	}
	if c.UserAgent == "" {
		c.UserAgent = "elafros"
	}
	return c
}

// Start runs an informer on the HTTPRoutes elafros manages, in all
// namespaces, until ctx is done, and returns once its cache is synced.
// It fails fast when HTTPRoutes cannot be listed (Gateway API CRDs not
// installed, or no permission).
func (t *Traffic) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lister != nil {
		return errors.New("kube traffic: already started")
	}
	probe := metav1.ListOptions{LabelSelector: managedHTTPRoutes.String(), Limit: 1}
	if _, err := t.client.GatewayV1().HTTPRoutes(t.opts.Namespace).List(ctx, probe); err != nil {
		return fmt.Errorf("kube traffic: listing HTTPRoutes (are the Gateway API CRDs installed, and may elafros list httproutes?): %w", err)
	}
	factory := gwinformers.NewSharedInformerFactoryWithOptions(t.client, 0,
		gwinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = managedHTTPRoutes.String() }),
		gwinformers.WithTransform(dropManagedFields), gwinformers.WithNamespace(t.opts.Namespace))
	inf := factory.Gateway().V1().HTTPRoutes()
	informer := inf.Informer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return fmt.Errorf("kube traffic: HTTPRoute informer not synced: %w", context.Cause(ctx))
	}
	t.ctx, t.lister, t.indexer = ctx, inf.Lister(), informer.GetIndexer()
	return nil
}

// ready reports why the cache cannot be used (t.mu held).
func (t *Traffic) ready() error {
	if t.lister == nil {
		return errors.New("kube traffic: Start has not been called")
	}
	if err := t.ctx.Err(); err != nil {
		return fmt.Errorf("kube traffic: the HTTPRoute informer has stopped: %w", err)
	}
	return nil
}

// Apply makes route's HTTPRoutes serve plan: it validates the whole plan
// and checks every HTTPRoute it would write is the route's before the
// first write; then it server-side-applies the HTTPRoutes that differ
// from the cache and deletes the route's HTTPRoutes the plan no longer
// has. An unchanged plan makes no API request.
func (t *Traffic) Apply(ctx context.Context, route *v1alpha1.Route, plan reconcile.TrafficPlan) error {
	if route == nil {
		return errors.New("kube traffic: apply: route is nil")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ready(); err != nil {
		return err
	}
	if err := t.apply(ctx, route, plan); err != nil {
		return fmt.Errorf("kube traffic: route %s/%s: %w", route.Namespace, route.Name, err)
	}
	return nil
}

func (t *Traffic) apply(ctx context.Context, route *v1alpha1.Route, plan reconcile.TrafficPlan) error {
	want, err := desiredHTTPRoutes(t.opts.Gateway, route, plan)
	if err != nil {
		return err
	}
	writes, err := t.changes(ctx, route, want)
	if err != nil {
		return err
	}
	stale, err := t.stale(route.Namespace, route.Name, want)
	if err != nil {
		return err
	}
	seen, err := t.applyAll(ctx, writes)
	if err == nil {
		var gone []cacheObservation
		gone, err = t.deleteAll(ctx, stale)
		seen = append(seen, gone...)
	}
	t.await(ctx, seen)
	return err
}

// Forget deletes the HTTPRoutes of route namespace/name (those labelled
// with it). Forgetting a route that has none makes no API request.
func (t *Traffic) Forget(ctx context.Context, namespace, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ready(); err != nil {
		return err
	}
	objs, err := t.stale(namespace, name, nil)
	if err != nil {
		return fmt.Errorf("kube traffic: forget route %s/%s: %w", namespace, name, err)
	}
	gone, err := t.deleteAll(ctx, objs)
	t.await(ctx, gone)
	if err != nil {
		return fmt.Errorf("kube traffic: forget route %s/%s: %w", namespace, name, err)
	}
	return nil
}

// httpRouteWrite is one server-side apply: d, over the live object at preRV ("":
// none).
type httpRouteWrite struct {
	d     *desiredHTTPRoute
	preRV string
}

// changes checks every HTTPRoute of want is the route's (or absent) and
// returns those that differ from what the cluster holds.
func (t *Traffic) changes(ctx context.Context, route *v1alpha1.Route, want []desiredHTTPRoute) ([]httpRouteWrite, error) {
	var out []httpRouteWrite
	for i := range want {
		d := &want[i]
		live, err := t.live(ctx, route.Namespace, d.name)
		if err != nil {
			return nil, err
		}
		if live == nil {
			out = append(out, httpRouteWrite{d: d})
			continue
		}
		if err := checkOwnedHTTPRoute(live, route, d.tag); err != nil {
			return nil, err
		}
		if !httpRouteUpToDate(live, d) {
			out = append(out, httpRouteWrite{d: d, preRV: live.ResourceVersion})
		}
	}
	return out, nil
}

// live is the HTTPRoute namespace/name from the cache or, absent there,
// from the API server (the cache holds only labelled HTTPRoutes, so a
// foreign one with our name is not in it); nil when there is none. Cached
// objects are shared: read only.
func (t *Traffic) live(ctx context.Context, namespace, name string) (*gatewayv1.HTTPRoute, error) {
	o, err := t.lister.HTTPRoutes(namespace).Get(name)
	if err == nil {
		return o, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading HTTPRoute %s/%s from the cache: %w", namespace, name, err)
	}
	o, err = t.client.GatewayV1().HTTPRoutes(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading HTTPRoute %s/%s: %w", namespace, name, err)
	}
	return o, nil
}

// stale lists the cached HTTPRoutes of route namespace/name not in keep.
func (t *Traffic) stale(namespace, name string, keep []desiredHTTPRoute) ([]*gatewayv1.HTTPRoute, error) {
	sel := labels.SelectorFromSet(labels.Set{ManagedByLabelKey: ManagedByValue, v1alpha1.RouteLabelKey: name})
	objs, err := t.lister.HTTPRoutes(namespace).List(sel)
	if err != nil {
		return nil, fmt.Errorf("listing the cached HTTPRoutes: %w", err)
	}
	objs = slices.DeleteFunc(objs, func(o *gatewayv1.HTTPRoute) bool {
		return slices.ContainsFunc(keep, func(d desiredHTTPRoute) bool { return d.name == o.Name })
	})
	slices.SortFunc(objs, func(a, b *gatewayv1.HTTPRoute) int { return strings.Compare(a.Name, b.Name) })
	return objs, nil
}

// cacheObservation is a write the cache is to see: key's object at rv (or at
// any version but preRV), or, when gone, no longer the object uid.
type cacheObservation struct {
	key       string
	rv, preRV string
	uid       types.UID
	gone      bool
}

// applyAll server-side-applies writes, in order, up to the first error.
func (t *Traffic) applyAll(ctx context.Context, writes []httpRouteWrite) ([]cacheObservation, error) {
	var out []cacheObservation
	for _, w := range writes {
		o, err := t.applyOne(ctx, w)
		if err != nil {
			return out, err
		}
		out = append(out, o)
	}
	return out, nil
}

// applyOne server-side-applies w.
func (t *Traffic) applyOne(ctx context.Context, w httpRouteWrite) (cacheObservation, error) {
	ns, name := *w.d.ac.GetNamespace(), *w.d.ac.GetName()
	got, err := t.client.GatewayV1().HTTPRoutes(ns).Apply(ctx, w.d.ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return cacheObservation{}, fmt.Errorf("applying HTTPRoute %s/%s: %w", ns, name, err)
	}
	return cacheObservation{key: ns + "/" + name, rv: got.ResourceVersion, preRV: w.preRV}, nil
}

// deleteAll deletes objs (each only if it is still the same object).
func (t *Traffic) deleteAll(ctx context.Context, objs []*gatewayv1.HTTPRoute) ([]cacheObservation, error) {
	var out []cacheObservation
	for _, o := range objs {
		uid := o.UID
		err := t.client.GatewayV1().HTTPRoutes(o.Namespace).Delete(ctx, o.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("deleting HTTPRoute %s/%s: %w", o.Namespace, o.Name, err)
		}
		out = append(out, cacheObservation{key: o.Namespace + "/" + o.Name, uid: uid, gone: true})
	}
	return out, nil
}

// await waits, at most SyncTimeout, until the cache has seen obs.
func (t *Traffic) await(ctx context.Context, obs []cacheObservation) {
	if len(obs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.SyncTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if !slices.ContainsFunc(obs, func(o cacheObservation) bool { return !t.observed(o) }) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// observed reports whether the cache reflects o.
func (t *Traffic) observed(o cacheObservation) bool {
	obj, exists, err := t.indexer.GetByKey(o.key)
	if err != nil {
		return true // nothing to wait for
	}
	hr, _ := obj.(*gatewayv1.HTTPRoute)
	if o.gone {
		return !exists || hr == nil || hr.UID != o.uid
	}
	return exists && hr != nil && (hr.ResourceVersion == o.rv || hr.ResourceVersion != o.preRV)
}

// ReadPlan reads what route namespace/route's HTTPRoutes serve, as a
// TrafficPlan: Domain, Split (Revision and Percent; Ready is left false
// for the caller to fill), Hosts and Tags (never nil). found is false
// when the route has no HTTPRoute. It lists the HTTPRoutes labelled with
// the route, straight from the API server.
func ReadPlan(ctx context.Context, cfg *rest.Config, namespace, route string) (reconcile.TrafficPlan, bool, error) {
	c, err := gwclient.NewForConfig(gatewayClientConfig(cfg))
	if err != nil {
		return reconcile.TrafficPlan{}, false, fmt.Errorf("building the Gateway API client: %w", err)
	}
	sel := labels.SelectorFromSet(labels.Set{ManagedByLabelKey: ManagedByValue, v1alpha1.RouteLabelKey: route})
	list, err := c.GatewayV1().HTTPRoutes(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return reconcile.TrafficPlan{}, false, fmt.Errorf("listing the HTTPRoutes of route %s/%s: %w", namespace, route, err)
	}
	if len(list.Items) == 0 {
		return reconcile.TrafficPlan{}, false, nil
	}
	p, err := planOfHTTPRoutes(route, list.Items)
	if err != nil {
		return reconcile.TrafficPlan{}, true, fmt.Errorf("reading the HTTPRoutes of route %s/%s: %w", namespace, route, err)
	}
	return p, true, nil
}
