package kube

// The Runtime's use of the Kubernetes API, for its RBAC role. Informers
// watch every namespace, so it is a ClusterRole (bound with a
// ClusterRoleBinding):
//
//	apiGroup     resource               verbs
//	apps         deployments            list, watch, create, patch, delete
//	"" (core)    services               list, watch, create, patch, delete
//	"" (core)    pods                   list, watch
//	elafros.dev  revisions/finalizers   update   (only where the
//	             OwnerReferencesPermissionEnforcement admission plugin is
//	             on: it guards the blockOwnerDeletion of owner references)
//
// Writes are server-side apply (PATCH, which needs create as well when it
// creates the object). Reads come from the informers' caches only: no get.
// Lists and watches are restricted to app.kubernetes.io/managed-by=elafros.
// Revisions themselves are never read or written here: the reconciler
// passes them in.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// Annotations the Runtime writes.
const (
	// ImageAnnotation on a Deployment records the image reference the
	// revision asked for (often a tag), so that the digest it was pinned to
	// is reused instead of resolving the tag again.
	ImageAnnotation = v1alpha1.GroupName + "/image"
	// SpecHashAnnotation on a Deployment or Service is the hash of what the
	// Runtime applied; an equal hash means there is nothing to write.
	SpecHashAnnotation = v1alpha1.GroupName + "/spec-hash"
	// ConcurrencyModelAnnotation on a pod template carries the revision's
	// concurrencyModel (also $ELAFROS_CONCURRENCY_MODEL).
	ConcurrencyModelAnnotation = v1alpha1.GroupName + "/concurrencyModel"
	// TimeoutSecondsAnnotation on a pod template carries the revision's
	// timeoutSeconds (also $ELAFROS_TIMEOUT_SECONDS).
	TimeoutSecondsAnnotation = v1alpha1.GroupName + "/timeoutSeconds"
)

// Reasons the Runtime reports beyond those of v1alpha1.
const (
	// ReasonExitCodePrefix starts the reason of a container that exited,
	// followed by its exit code (ExitCode:127), as errors.md has it.
	ReasonExitCodePrefix = "ExitCode:"
	// ReasonUnschedulable: the scheduler cannot place a pod.
	ReasonUnschedulable = "Unschedulable"
	// ReasonNotOwned: a Deployment or Service of the revision's name
	// exists and belongs to something else; it is left alone.
	ReasonNotOwned = "NotOwned"
)

// ContainerPortName names the container port and the Service port.
const ContainerPortName = "http"

const (
	defaultReplicas       = 1
	defaultPort           = 8080
	defaultResolveTimeout = 30 * time.Second
	// pendingTTL is how long a write is trusted while the informer has not
	// shown it yet (it normally does within milliseconds).
	pendingTTL = 15 * time.Second
	// podsByRevision indexes pods by namespace/revision.
	podsByRevision = "elafros-revision"
)

// RuntimeOptions configure a Runtime. The zero value is usable.
type RuntimeOptions struct {
	// Replicas is the number of pods of each revision. Default 1.
	Replicas int32
	// Port is the container port, also given as $PORT. Default 8080.
	Port int32
	// Mirrors maps a registry host to a mirror host (e.g. "gcr.io" ->
	// "127.0.0.1:5001") used to resolve tags to digests; the Deployment
	// keeps the original repository, pinned by that digest. Docker Hub
	// may be keyed "index.docker.io" or "docker.io". Loopback hosts are
	// reached over plain HTTP.
	Mirrors map[string]string
	// Keychain authenticates to registries. Default authn.DefaultKeychain.
	Keychain authn.Keychain
	// ResolveTimeout bounds one tag resolution. Default 30s.
	ResolveTimeout time.Duration
	// Logger receives the Runtime's writes at debug level. Default
	// slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is called with a revision's namespace and name
	// whenever its Deployment, Service or one of its pods changes in the
	// informers, so that a driver can reconcile it sooner than its next
	// poll. It runs on informer goroutines and must not block.
	OnChange func(namespace, revision string)
	// Namespace confines the informers (and so the permissions needed)
	// to one namespace; "" watches all.
	Namespace string
}

func (o RuntimeOptions) withDefaults() (RuntimeOptions, error) {
	switch {
	case o.Replicas < 0:
		return o, fmt.Errorf("kube runtime: Replicas must not be negative (got %d)", o.Replicas)
	case o.Replicas == 0:
		o.Replicas = defaultReplicas
	}
	switch {
	case o.Port < 0 || o.Port > 65535:
		return o, fmt.Errorf("kube runtime: Port must be between 1 and 65535 (got %d)", o.Port)
	case o.Port == 0:
		o.Port = defaultPort
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.ResolveTimeout <= 0 {
		o.ResolveTimeout = defaultResolveTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Runtime materializes a Revision as a Deployment and a ClusterIP Service
// in its namespace, both owned by the Revision. It reads the cluster
// through informers (Start) and writes with server-side apply only when
// what it wants differs from what it last applied, so that reconciling an
// unchanged revision costs no API request. It is safe for concurrent use.
type Runtime struct {
	opts     RuntimeOptions
	client   kubernetes.Interface
	resolver *imageResolver
	log      *slog.Logger

	factory     informers.SharedInformerFactory
	deployments appslisters.DeploymentLister
	services    corelisters.ServiceLister
	pods        cache.Indexer

	starting atomic.Bool
	started  atomic.Bool
	stopped  <-chan struct{}

	mu      sync.Mutex
	pending map[string]pendingWrite
}

var _ reconcile.Runtime = (*Runtime)(nil)

// pendingWrite is an apply the informer may not have shown yet.
type pendingWrite struct {
	hash string
	// image and pinned are the source and pinned images of a Deployment.
	image, pinned string
	at            time.Time
}

// NewRuntime returns a Runtime for the cluster of cfg. Call Start before
// Materialize.
func NewRuntime(cfg *rest.Config, o RuntimeOptions) (*Runtime, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	if c.UserAgent == "" {
		c.UserAgent = "elafros"
	}
	if c.QPS == 0 {
		// client-go's default (5/s) would make an upgrade that rewrites
		// every revision's workload crawl.
		c.QPS, c.Burst = 200, 400
	}
	client, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kube runtime: building the client: %w", err)
	}
	r := &Runtime{
		opts:     o,
		client:   client,
		resolver: &imageResolver{mirrors: o.Mirrors, keychain: o.Keychain, timeout: o.ResolveTimeout},
		log:      o.Logger,
		pending:  map[string]pendingWrite{},
	}
	if err := r.setupInformers(); err != nil {
		return nil, err
	}
	return r, nil
}

// setupInformers registers the label-filtered informers (before Start).
func (r *Runtime) setupInformers() error {
	managed := ManagedByLabelKey + "=" + ManagedByValue
	r.factory = informers.NewSharedInformerFactoryWithOptions(r.client, 0,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = managed }),
		informers.WithTransform(dropManagedFields), informers.WithNamespace(r.opts.Namespace))
	deployments := r.factory.Apps().V1().Deployments()
	services := r.factory.Core().V1().Services()
	pods := r.factory.Core().V1().Pods().Informer()
	if err := pods.AddIndexers(cache.Indexers{podsByRevision: revisionIndex}); err != nil {
		return fmt.Errorf("kube runtime: indexing pods: %w", err)
	}
	r.deployments, r.services, r.pods = deployments.Lister(), services.Lister(), pods.GetIndexer()
	if r.opts.OnChange == nil {
		return nil
	}
	for _, inf := range []cache.SharedIndexInformer{deployments.Informer(), services.Informer(), pods} {
		if _, err := inf.AddEventHandler(changeHandler(r.opts.OnChange)); err != nil {
			return fmt.Errorf("kube runtime: informer handler: %w", err)
		}
	}
	return nil
}

// dropManagedFields drops managedFields from cached objects (memory).
func dropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// revisionIndex keys an object by namespace/revision label.
func revisionIndex(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	rev, ok := m.GetLabels()[RevisionLabelKey]
	if !ok {
		return nil, nil
	}
	return []string{m.GetNamespace() + "/" + rev}, nil
}

// changeHandler calls notify with the revision of every changed object.
func changeHandler(notify func(namespace, revision string)) cache.ResourceEventHandler {
	call := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		if rev := m.GetLabels()[RevisionLabelKey]; rev != "" {
			notify(m.GetNamespace(), rev)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { call(obj) },
		UpdateFunc: func(_, obj any) { call(obj) },
		DeleteFunc: call,
	}
}

// Start starts the informers of Deployments, Services and Pods labelled
// app.kubernetes.io/managed-by=elafros in all namespaces and waits until
// their caches are synced. They run until ctx ends; Materialize and
// Retire fail after that. Start may be called once.
func (r *Runtime) Start(ctx context.Context) error {
	if !r.starting.CompareAndSwap(false, true) {
		return errors.New("kube runtime: Start called twice")
	}
	// Fail fast (an informer would retry a forbidden list forever).
	probe := metav1.ListOptions{LabelSelector: ManagedByLabelKey + "=" + ManagedByValue, Limit: 1}
	if _, err := r.client.AppsV1().Deployments(r.opts.Namespace).List(ctx, probe); err != nil {
		return fmt.Errorf("kube runtime: listing deployments: %w", err)
	}
	if _, err := r.client.CoreV1().Services(r.opts.Namespace).List(ctx, probe); err != nil {
		return fmt.Errorf("kube runtime: listing services: %w", err)
	}
	if _, err := r.client.CoreV1().Pods(r.opts.Namespace).List(ctx, probe); err != nil {
		return fmt.Errorf("kube runtime: listing pods: %w", err)
	}
	r.stopped = ctx.Done()
	r.factory.Start(ctx.Done())
	for typ, ok := range r.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("kube runtime: the %v cache did not sync: %w", typ, context.Cause(ctx))
		}
	}
	r.started.Store(true)
	return nil
}

// running reports an error unless Start has synced and its ctx is live.
func (r *Runtime) running() error {
	if !r.started.Load() {
		return errors.New("kube runtime: not started (call Start first)")
	}
	select {
	case <-r.stopped:
		return errors.New("kube runtime: stopped (the context given to Start ended)")
	default:
		return nil
	}
}

// Materialize implements reconcile.Runtime: it makes rev's Deployment and
// Service exist as desired (writing only when they differ from what was
// last applied) and reports the Deployment's readiness, or why it cannot
// become ready (ExitCode:N, ContainerMissing, Unschedulable,
// ProgressDeadlineExceeded, …; no reason while starting), with
// ImageDigest the image as pinned by digest. An image that cannot be
// resolved to a digest is reported as ContainerMissing and nothing is
// created. An unchanged revision costs no API request.
func (r *Runtime) Materialize(ctx context.Context, rev *v1alpha1.Revision, image string) (reconcile.WorkloadState, error) {
	if err := r.running(); err != nil {
		return reconcile.WorkloadState{}, err
	}
	rev, err := defaultedRevision(rev)
	if err != nil {
		return reconcile.WorkloadState{}, err
	}
	ns, dname := rev.Namespace, DeploymentName(rev.Name)
	live, err := r.cachedDeployment(ns, dname)
	if err != nil {
		return reconcile.WorkloadState{}, err
	}
	if ws, owned := notOwned("Deployment", asObject(live), rev); !owned {
		return ws, nil
	}
	pinned, err := r.pinnedImage(ctx, rev, image, live)
	if err != nil && ctx.Err() != nil {
		return reconcile.WorkloadState{}, fmt.Errorf("resolving image %s: %w", image, err)
	}
	if err != nil {
		return reconcile.WorkloadState{Reason: v1alpha1.ReasonContainerMissing,
			Message: fmt.Sprintf("Unable to fetch image '%s': %v", image, err)}, nil
	}
	// The Deployment first: when the API server refuses it, no Service is
	// left behind.
	d, hash, ws, err := r.ensureDeployment(ctx, rev, image, pinned, live)
	if err != nil || ws.Reason != "" {
		ws.ImageDigest = pinned
		return ws, err
	}
	if ws, ok, err := r.ensureService(ctx, rev); err != nil || !ok {
		ws.ImageDigest = pinned
		return ws, err
	}
	ws = r.observe(d, hash, ns, rev.Name, image)
	ws.ImageDigest = pinned
	return ws, nil
}

// defaultedRevision checks rev can own objects and fills its defaults on
// a copy (container name, concurrency model, timeout, namespace).
func defaultedRevision(rev *v1alpha1.Revision) (*v1alpha1.Revision, error) {
	if rev == nil || rev.Name == "" {
		return nil, errors.New("kube runtime: revision without a name")
	}
	if rev.UID == "" {
		return nil, fmt.Errorf("kube runtime: revision %s/%s has no UID (it must be read from the API server to own its workload)", rev.Namespace, rev.Name)
	}
	rev = rev.DeepCopy()
	rev.SetDefaults()
	return rev, nil
}

func (r *Runtime) cachedDeployment(ns, name string) (*appsv1.Deployment, error) {
	d, err := r.deployments.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kube runtime: cached deployment %s/%s: %w", ns, name, err)
	}
	return d, nil
}

func (r *Runtime) cachedService(ns, name string) (*corev1.Service, error) {
	s, err := r.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kube runtime: cached service %s/%s: %w", ns, name, err)
	}
	return s, nil
}

// asObject is p as a metav1.Object, nil (not a typed nil) for nil.
func asObject[P interface {
	comparable
	metav1.Object
}](p P) metav1.Object {
	var zero P
	if p == zero {
		return nil
	}
	return p
}

// ownedBy reports whether obj may be managed for rev: its controller is
// a Revision of rev's name (an earlier one of the same name is adopted),
// or it has none.
func ownedBy(obj metav1.Object, rev *v1alpha1.Revision) bool {
	c := metav1.GetControllerOfNoCopy(obj)
	return c == nil || (c.Kind == "Revision" && strings.HasPrefix(c.APIVersion, v1alpha1.GroupName+"/") && c.Name == rev.Name)
}

// notOwned reports, as a WorkloadState, an existing object that is not
// rev's to manage (see ownedBy).
func notOwned(kind string, obj metav1.Object, rev *v1alpha1.Revision) (reconcile.WorkloadState, bool) {
	if obj == nil || ownedBy(obj, rev) {
		return reconcile.WorkloadState{}, true
	}
	c := metav1.GetControllerOfNoCopy(obj)
	if c != nil && c.Kind == "Revision" && c.Name == rev.Name && strings.HasPrefix(c.APIVersion, v1alpha1.GroupName+"/") {
		// The workload of a deleted revision of the same name, which the
		// garbage collector is removing: this one is still starting.
		return reconcile.WorkloadState{}, false
	}
	owner := "none"
	if c != nil {
		owner = fmt.Sprintf("%s %q", c.Kind, c.Name)
	}
	return reconcile.WorkloadState{Reason: ReasonNotOwned,
		Message: fmt.Sprintf("There is an existing %s %q that we do not own (its controller is %s).", kind, obj.GetName(), owner)}, false
}

// pinnedImage is image by digest: as given when it has one, else the
// digest the live Deployment (or a write the informer has not shown yet)
// already pinned for the same image, else resolved from the registry.
func (r *Runtime) pinnedImage(ctx context.Context, rev *v1alpha1.Revision, image string, live *appsv1.Deployment) (string, error) {
	if live != nil && live.Annotations[ImageAnnotation] == image {
		for _, c := range live.Spec.Template.Spec.Containers {
			if c.Name == rev.Spec.Container.Name && strings.Contains(c.Image, "@") {
				return c.Image, nil
			}
		}
	}
	if p, ok := r.pendingFor(deploymentKey(rev.Namespace, DeploymentName(rev.Name))); ok && p.image == image && p.pinned != "" {
		return p.pinned, nil
	}
	return r.resolver.pin(ctx, image)
}

// ensureService applies rev's Service when it differs from the cached
// one. ok is false when the Service cannot be made (ws says why).
func (r *Runtime) ensureService(ctx context.Context, rev *v1alpha1.Revision) (reconcile.WorkloadState, bool, error) {
	name := ServiceName(rev.Name)
	live, err := r.cachedService(rev.Namespace, name)
	if err != nil {
		return reconcile.WorkloadState{}, false, err
	}
	if ws, owned := notOwned("Service", asObject(live), rev); !owned {
		return ws, false, nil
	}
	svc, hash, err := desiredService(rev, r.opts.Port)
	if err != nil {
		return reconcile.WorkloadState{}, false, err
	}
	key := serviceKey(rev.Namespace, name)
	if !r.needsWrite(key, asObject(live), hash) {
		return reconcile.WorkloadState{}, true, nil
	}
	if _, err := r.client.CoreV1().Services(rev.Namespace).Apply(ctx, svc, applyOptions()); err != nil {
		return applyFailure("service", rev.Namespace, name, err)
	}
	r.rememberWrite(key, pendingWrite{hash: hash})
	r.log.Debug("applied service", "namespace", rev.Namespace, "name", name, "hash", hash)
	return reconcile.WorkloadState{}, true, nil
}

// ensureDeployment applies rev's Deployment when it differs from live and
// returns the Deployment to observe: the applied one after a write, else
// live (nil while a write is not yet in the cache).
func (r *Runtime) ensureDeployment(ctx context.Context, rev *v1alpha1.Revision, image, pinned string,
	live *appsv1.Deployment) (*appsv1.Deployment, string, reconcile.WorkloadState, error) {
	d, hash, err := desiredDeployment(rev, image, pinned, r.opts)
	if err != nil {
		return nil, "", reconcile.WorkloadState{}, err
	}
	name := DeploymentName(rev.Name)
	key := deploymentKey(rev.Namespace, name)
	if !r.needsWrite(key, asObject(live), hash) {
		return live, hash, reconcile.WorkloadState{}, nil
	}
	applied, err := r.client.AppsV1().Deployments(rev.Namespace).Apply(ctx, d, applyOptions())
	if err != nil {
		ws, _, err := applyFailure("deployment", rev.Namespace, name, err)
		return nil, hash, ws, err
	}
	r.rememberWrite(key, pendingWrite{hash: hash, image: image, pinned: pinned})
	r.log.Debug("applied deployment", "namespace", rev.Namespace, "name", name, "image", pinned, "hash", hash)
	return applied, hash, reconcile.WorkloadState{}, nil
}

func applyOptions() metav1.ApplyOptions {
	return metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
}

// applyFailure turns a refused write into the revision's NoDeployment
// reason (the API server will refuse it again: invalid, forbidden, over
// quota); other errors are returned to be retried.
func applyFailure(kind, ns, name string, err error) (reconcile.WorkloadState, bool, error) {
	if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) {
		if kind == "Deployment" {
			return reconcile.NoDeployment(name, err), false, nil
		}
		return reconcile.WorkloadState{Reason: v1alpha1.ReasonNoDeployment,
			Message: fmt.Sprintf("The controller could not create a %s named %s. %v", strings.ToLower(kind), name, err)}, false, nil
	}
	return reconcile.WorkloadState{}, false, fmt.Errorf("applying %s %s/%s: %w", kind, ns, name, err)
}

// needsWrite reports whether the object of key must be applied to carry
// hash: not when the cache shows it, nor when it was just written and the
// informer has not caught up. A cached object being deleted is left to
// go; it is created again once gone.
func (r *Runtime) needsWrite(key string, live metav1.Object, hash string) bool {
	if live != nil {
		if live.GetDeletionTimestamp() != nil {
			return false
		}
		if live.GetAnnotations()[SpecHashAnnotation] == hash {
			r.forgetWrite(key)
			return false
		}
	}
	p, ok := r.pendingFor(key)
	return !ok || p.hash != hash
}

func deploymentKey(ns, name string) string { return "deployments/" + ns + "/" + name }
func serviceKey(ns, name string) string    { return "services/" + ns + "/" + name }

func (r *Runtime) pendingFor(key string) (pendingWrite, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[key]
	if ok && time.Since(p.at) > pendingTTL {
		delete(r.pending, key)
		return pendingWrite{}, false
	}
	return p, ok
}

func (r *Runtime) rememberWrite(key string, p pendingWrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for k, old := range r.pending {
		if now.Sub(old.at) > pendingTTL {
			delete(r.pending, k)
		}
	}
	p.at = now
	r.pending[key] = p
}

func (r *Runtime) forgetWrite(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, key)
}

// Retire implements reconcile.Runtime: it deletes rev's Deployment and
// Service (already gone is fine) and keeps the Revision. Objects the
// informers do not show are not asked for, so retiring a retired revision
// again costs no request.
func (r *Runtime) Retire(ctx context.Context, rev *v1alpha1.Revision) error {
	if err := r.running(); err != nil {
		return err
	}
	rev, err := defaultedRevision(rev)
	if err != nil {
		return err
	}
	ns := rev.Namespace
	dname, sname := DeploymentName(rev.Name), ServiceName(rev.Name)
	d, err := r.cachedDeployment(ns, dname)
	if err != nil {
		return err
	}
	if r.shouldDelete(deploymentKey(ns, dname), asObject(d), rev) {
		if err := r.delete(ctx, r.client.AppsV1().Deployments(ns).Delete, deploymentKey(ns, dname), dname); err != nil {
			return err
		}
	}
	s, err := r.cachedService(ns, sname)
	if err != nil {
		return err
	}
	if r.shouldDelete(serviceKey(ns, sname), asObject(s), rev) {
		return r.delete(ctx, r.client.CoreV1().Services(ns).Delete, serviceKey(ns, sname), sname)
	}
	return nil
}

// shouldDelete: the object is cached, rev's and not already being
// deleted, or was written so recently that the cache may not show it.
func (r *Runtime) shouldDelete(key string, obj metav1.Object, rev *v1alpha1.Revision) bool {
	if obj == nil {
		_, pending := r.pendingFor(key)
		return pending
	}
	return ownedBy(obj, rev) && obj.GetDeletionTimestamp() == nil
}

func (r *Runtime) delete(ctx context.Context, del func(context.Context, string, metav1.DeleteOptions) error, key, name string) error {
	r.forgetWrite(key)
	policy := metav1.DeletePropagationBackground
	if err := del(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	r.log.Debug("deleted", "object", key)
	return nil
}

// observe is the workload's state from d (the applied or cached
// Deployment) and, when it is not Ready, the cached pods of the revision.
func (r *Runtime) observe(d *appsv1.Deployment, hash, ns, rev, image string) reconcile.WorkloadState {
	var pods []*corev1.Pod
	if d != nil && !deploymentReady(d, hash) {
		pods = r.revisionPods(ns, rev)
	}
	return workloadState(d, hash, pods, image)
}

// revisionPods are the cached live pods of a revision, oldest first.
func (r *Runtime) revisionPods(ns, rev string) []*corev1.Pod {
	objs, err := r.pods.ByIndex(podsByRevision, ns+"/"+rev)
	if err != nil {
		return nil
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, p)
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return pods
}
