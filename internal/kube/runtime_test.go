package kube_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// testNS is the namespace of the test revisions (its default
// ServiceAccount exists once kubetest.Start returns).
const testNS = "default"

// runtimeEnv is one cluster, registry and Runtime shared by the subtests.
type runtimeEnv struct {
	c        *kubetest.Cluster
	store    *client.Store
	reg      *countingRegistry
	api      *requestCounter
	rt       *kube.Runtime
	changes  *notifications
	appImage string // reg/app@sha256:…, also tagged reg/app:v1
}

// TestRuntime runs the Kubernetes Runtime against a real control plane
// (kwok nodes) and a real registry, as a ServiceAccount bound only to the
// verbs runtime.go lists.
func TestRuntime(t *testing.T) {
	c := kubetest.Start(t)
	ctx := t.Context()
	if err := kube.InstallCRDs(ctx, c.Config, kube.CRDs()...); err != nil {
		t.Fatal(err)
	}
	store, err := client.New(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	e := &runtimeEnv{c: c, store: store, reg: startRegistry(t), api: &requestCounter{}, changes: &notifications{}}
	e.appImage = e.reg.push(t, "app", "v1")

	cfg := runtimeRBAC(t, c)
	cfg.Wrap(e.api.wrap)
	e.rt, err = kube.NewRuntime(cfg, kube.RuntimeOptions{
		Mirrors:  map[string]string{"gcr.io": e.reg.host},
		OnChange: e.changes.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	early := e.revision(t, "early-00001", nil, nil, e.appImage)
	if _, err := e.rt.Materialize(ctx, early, e.appImage); err == nil {
		t.Fatal("Materialize before Start: no error")
	}
	if err := e.rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx); err == nil {
		t.Fatal("a second Start: no error")
	}

	t.Run("Workload", e.testWorkload)
	t.Run("Mirror", e.testMirror)
	t.Run("MissingImage", e.testMissingImage)
	t.Run("InvalidContainer", e.testInvalidContainer)
	t.Run("Hold", e.testHold)
	t.Run("Crash", e.testCrash)
	t.Run("Unschedulable", e.testUnschedulable)
	t.Run("NotOwned", e.testNotOwned)
	t.Run("Retire", e.testRetire)
	t.Run("GarbageCollection", e.testGarbageCollection)
}

// testWorkload: the Deployment and Service of a revision, readiness, and
// unchanged passes that cost no request at all.
func (e *runtimeEnv) testWorkload(t *testing.T) {
	ctx := t.Context()
	tagged := e.reg.host + "/app:v1"
	rev := e.revision(t, "hello-00001",
		map[string]string{v1alpha1.ConfigurationLabelKey: "hello", "team": "payments"},
		map[string]string{"example.com/owner": "ana", reconcile.RoutesAnnotation: "hello",
			"kubectl.kubernetes.io/last-applied-configuration": "{}"},
		tagged, func(r *v1alpha1.Revision) {
			r.Spec.Container.Args = []string{"--verbose"}
			r.Spec.Container.Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi"}}
			r.Spec.ConcurrencyModel = v1alpha1.ConcurrencySingleThreaded
			timeout := int64(42)
			r.Spec.TimeoutSeconds = &timeout
		})
	// The CRDs refuse PORT in env; a revision stored before that rule may
	// still carry one, and the runtime sets its own over it.
	rev.Spec.Container.Env = append(rev.Spec.Container.Env, corev1.EnvVar{Name: "PORT", Value: "1"})

	before := e.api.load()
	ws, err := e.rt.Materialize(ctx, rev, tagged)
	if err != nil {
		t.Fatal(err)
	}
	if ws.ImageDigest != e.appImage {
		t.Errorf("ImageDigest = %q, want %q", ws.ImageDigest, e.appImage)
	}
	if n := e.api.load() - before; n < 2 {
		t.Errorf("the first Materialize made %d API requests, want the two applies at least", n)
	}
	e.waitReady(t, rev, tagged)

	d, err := e.c.Client.AppsV1().Deployments(testNS).Get(ctx, kube.DeploymentName(rev.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkDeployment(t, d, rev, e.appImage, tagged)
	svc, err := e.c.Client.CoreV1().Services(testNS).Get(ctx, kube.ServiceName(rev.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkService(t, svc, rev)
	if !e.changes.has(testNS, rev.Name) {
		t.Errorf("OnChange was never called for %s", rev.Name)
	}

	// Unchanged: no API request, no registry request.
	e.expectNoRequests(t, rev, tagged, e.appImage)
	// elafros.dev/routes changes often and must not redeploy.
	patched, err := e.store.Patch(ctx, store.KindRevision, testNS, rev.Name, types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"elafros.dev/routes":"hello,hello-canary"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	e.expectNoRequests(t, patched.(*v1alpha1.Revision), tagged, e.appImage)
	// The tag moves: the revision keeps the digest it was pinned to.
	moved := e.reg.push(t, "app", "v1")
	if moved == e.appImage {
		t.Fatal("pushing a new random image gave the same digest")
	}
	e.expectNoRequests(t, rev, tagged, e.appImage)
}

// expectNoRequests materializes an unchanged, ready revision three times:
// Ready, pinned to want, with neither API nor registry requests.
func (e *runtimeEnv) expectNoRequests(t *testing.T, rev *v1alpha1.Revision, image, want string) {
	t.Helper()
	api, reg := e.api.load(), e.reg.requests.Load()
	for range 3 {
		ws, err := e.rt.Materialize(t.Context(), rev, image)
		if err != nil {
			t.Fatal(err)
		}
		if !ws.Ready || ws.ImageDigest != want {
			t.Errorf("state = %+v, want Ready with ImageDigest %s", ws, want)
		}
	}
	if n := e.api.load() - api; n != 0 {
		t.Errorf("unchanged Materialize made %d API requests, want 0: %v", n, e.api.recent(int(n)))
	}
	if n := e.reg.requests.Load() - reg; n != 0 {
		t.Errorf("unchanged Materialize made %d registry requests, want 0", n)
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, rev *v1alpha1.Revision, pinned, source string) {
	t.Helper()
	wantLabels := map[string]string{kube.RevisionLabelKey: rev.Name, v1alpha1.ConfigurationLabelKey: "hello",
		kube.ManagedByLabelKey: kube.ManagedByValue, "team": "payments"}
	checkOwner(t, d.OwnerReferences, rev)
	checkLabels(t, "deployment", d.Labels, wantLabels)
	checkLabels(t, "pod template", d.Spec.Template.Labels, wantLabels)
	if got := d.Spec.Selector.MatchLabels; len(got) != 1 || got[kube.RevisionLabelKey] != rev.Name || len(d.Spec.Selector.MatchExpressions) != 0 {
		t.Errorf("selector = %+v, want only %s=%s", d.Spec.Selector, kube.RevisionLabelKey, rev.Name)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1", d.Spec.Replicas)
	}
	if d.Annotations[kube.ImageAnnotation] != source || d.Annotations[kube.SpecHashAnnotation] == "" {
		t.Errorf("deployment annotations = %v, want %s=%s and a spec hash", d.Annotations, kube.ImageAnnotation, source)
	}
	ann := d.Spec.Template.Annotations
	if ann["example.com/owner"] != "ana" || ann[kube.ConcurrencyModelAnnotation] != "SingleThreaded" || ann[kube.TimeoutSecondsAnnotation] != "42" {
		t.Errorf("pod template annotations = %v, want the revision's and the concurrency model and timeout", ann)
	}
	for k := range ann {
		if k == reconcile.RoutesAnnotation || strings.HasPrefix(k, "kubectl.kubernetes.io/") {
			t.Errorf("pod template annotation %s propagated", k)
		}
	}
	pod := d.Spec.Template.Spec
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g != 42 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 42 (the timeout)", g)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %+v, want one", pod.Containers)
	}
	checkContainer(t, pod.Containers[0], rev, pinned)
}

func checkContainer(t *testing.T, c corev1.Container, rev *v1alpha1.Revision, pinned string) {
	t.Helper()
	if c.Name != v1alpha1.DefaultContainerName || c.Image != pinned || !slices.Equal(c.Args, []string{"--verbose"}) {
		t.Errorf("container name %q image %q args %q, want %q %q [--verbose]", c.Name, c.Image, c.Args, v1alpha1.DefaultContainerName, pinned)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports = %+v, want http 8080", c.Ports)
	}
	wantEnv := []corev1.EnvVar{{Name: "GREETING", Value: "hi"}, {Name: "PORT", Value: "8080"},
		{Name: "ELAFROS_REVISION", Value: rev.Name}, {Name: "ELAFROS_CONFIGURATION", Value: "hello"},
		{Name: "ELAFROS_CONCURRENCY_MODEL", Value: "SingleThreaded"}, {Name: "ELAFROS_TIMEOUT_SECONDS", Value: "42"}}
	if !slices.Equal(c.Env, wantEnv) {
		t.Errorf("env = %+v, want %+v", c.Env, wantEnv)
	}
	p := c.ReadinessProbe
	if p == nil || p.TCPSocket == nil || p.TCPSocket.Port != intstr.FromInt32(8080) {
		t.Errorf("readinessProbe = %+v, want TCP on 8080", p)
	}
	if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("terminationMessagePolicy = %q, want FallbackToLogsOnError", c.TerminationMessagePolicy)
	}
}

func checkService(t *testing.T, svc *corev1.Service, rev *v1alpha1.Revision) {
	t.Helper()
	checkOwner(t, svc.OwnerReferences, rev)
	checkLabels(t, "service", svc.Labels, map[string]string{kube.RevisionLabelKey: rev.Name,
		v1alpha1.ConfigurationLabelKey: "hello", kube.ManagedByLabelKey: kube.ManagedByValue})
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Selector) != 1 || svc.Spec.Selector[kube.RevisionLabelKey] != rev.Name {
		t.Errorf("service type %s selector %v, want ClusterIP selecting %s", svc.Spec.Type, svc.Spec.Selector, rev.Name)
	}
	want := corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: kube.ServicePort, TargetPort: intstr.FromInt32(8080)}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0] != want {
		t.Errorf("service ports = %+v, want %+v", svc.Spec.Ports, want)
	}
}

func checkOwner(t *testing.T, refs []metav1.OwnerReference, rev *v1alpha1.Revision) {
	t.Helper()
	yes := true
	want := metav1.OwnerReference{APIVersion: "elafros.dev/v1alpha1", Kind: "Revision", Name: rev.Name, UID: rev.UID,
		Controller: &yes, BlockOwnerDeletion: &yes}
	if len(refs) != 1 || refs[0].APIVersion != want.APIVersion || refs[0].Kind != want.Kind || refs[0].Name != want.Name ||
		refs[0].UID != want.UID || !ptrTrue(refs[0].Controller) || !ptrTrue(refs[0].BlockOwnerDeletion) {
		t.Errorf("ownerReferences = %+v, want [%+v]", refs, want)
	}
}

func ptrTrue(b *bool) bool { return b != nil && *b }

func checkLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s label %s = %q, want %q (labels %v)", what, k, got[k], v, got)
		}
	}
}

// testMirror: a tag of gcr.io resolved through its mirror; the workload
// keeps gcr.io, pinned by the mirror's digest.
func (e *runtimeEnv) testMirror(t *testing.T) {
	pushed := e.reg.push(t, "elafros-test/mirrored", "v2")
	_, digest, _ := strings.Cut(pushed, "@")
	image := "gcr.io/elafros-test/mirrored:v2"
	rev := e.revision(t, "mirrored-00001", nil, nil, image, func(r *v1alpha1.Revision) {
		r.Spec.Container.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}}
	})
	ws, err := e.rt.Materialize(t.Context(), rev, image)
	if err != nil {
		t.Fatal(err)
	}
	want := "gcr.io/elafros-test/mirrored@" + digest
	if ws.ImageDigest != want || ws.Reason != "" {
		t.Fatalf("state = %+v, want ImageDigest %s", ws, want)
	}
	// Right after a write, before the informers may show it, a pass
	// neither writes again nor resolves the tag again.
	api, reg := e.api.load(), e.reg.requests.Load()
	if again := e.materialize(t, rev, image); again.ImageDigest != want || again.Reason != "" {
		t.Errorf("second pass: state = %+v, want ImageDigest %s", again, want)
	}
	if n, m := e.api.load()-api, e.reg.requests.Load()-reg; n != 0 || m != 0 {
		t.Errorf("a second pass right after the first made %d API and %d registry requests, want none: %v", n, m, e.api.recent(int(n)))
	}
	d, err := e.c.Client.AppsV1().Deployments(testNS).Get(t.Context(), kube.DeploymentName(rev.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != want {
		t.Errorf("deployment image = %q, want %q", c.Image, want)
	}
	// The revision's probe, pointed at the container port.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromInt32(8080) {
		t.Errorf("readinessProbe = %+v, want the revision's GET /healthz on 8080", p)
	}
}

// testMissingImage: an unknown tag is ContainerMissing and creates nothing.
func (e *runtimeEnv) testMissingImage(t *testing.T) {
	image := e.reg.host + "/app:missing"
	rev := e.revision(t, "missing-00001", nil, nil, image)
	api := e.api.load()
	ws, err := e.rt.Materialize(t.Context(), rev, image)
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.WorkloadState{Reason: v1alpha1.ReasonContainerMissing,
		Message: "Unable to fetch image '" + image + "': GET http://" + e.reg.host + "/v2/app/manifests/missing: MANIFEST_UNKNOWN: Unknown manifest"}
	if ws != want {
		t.Errorf("state = %+v, want %+v", ws, want)
	}
	if n := e.api.load() - api; n != 0 {
		t.Errorf("%d API requests, want none", n)
	}
	e.expectGone(t, rev.Name, time.Second)
}

// testInvalidContainer: a Deployment the API server refuses is
// NoDeployment with its error.
func (e *runtimeEnv) testInvalidContainer(t *testing.T) {
	rev := e.revision(t, "invalid-00001", nil, nil, e.appImage, func(r *v1alpha1.Revision) {
		r.Spec.Container.Env = []corev1.EnvVar{{Name: "A=B", Value: "x"}}
	})
	ws, err := e.rt.Materialize(t.Context(), rev, e.appImage)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "The controller could not create a deployment named " + kube.DeploymentName(rev.Name) + ". "
	if ws.Reason != v1alpha1.ReasonNoDeployment || !strings.HasPrefix(ws.Message, prefix) || !strings.Contains(ws.Message, "A=B") {
		t.Errorf("state = %+v, want NoDeployment %q… naming the env var", ws, prefix)
	}
	e.expectGone(t, rev.Name, time.Second)
}

// testHold: pods that never become ready are "still starting": no reason.
func (e *runtimeEnv) testHold(t *testing.T) {
	rev := e.revision(t, "held-00001", map[string]string{kubetest.BehaviorLabel: kubetest.BehaviorHold}, nil, e.appImage)
	reg := e.reg.requests.Load()
	e.materialize(t, rev, e.appImage)
	// Once kwok has brought the pod to Running-but-not-ready (its hold
	// stage, the last change it makes), nothing will make it ready.
	e.waitHeld(t, rev.Name)
	if ws := e.materialize(t, rev, e.appImage); ws.Ready || ws.Reason != "" || ws.ImageDigest != e.appImage {
		t.Fatalf("held revision: state = %+v, want not ready, no reason", ws)
	}
	if n := e.reg.requests.Load() - reg; n != 0 {
		t.Errorf("an image by digest made %d registry requests, want 0", n)
	}
}

// testCrash: a crash-looping container is ExitCode:N with the last line
// of its termination message, or its exit code without one.
func (e *runtimeEnv) testCrash(t *testing.T) {
	crash := map[string]string{kubetest.BehaviorLabel: kubetest.BehaviorCrash}
	syntax := e.revision(t, "syntax-00001", crash, map[string]string{kubetest.ExitCodeAnnotation: "127",
		kubetest.MessageAnnotation: "node server.js\n/app/server.js:3\nSyntaxError: Unexpected identifier\n\n"}, e.appImage)
	silent := e.revision(t, "silent-00001", crash, nil, e.appImage)
	for _, tc := range []struct {
		rev  *v1alpha1.Revision
		want reconcile.WorkloadState
	}{
		{syntax, reconcile.WorkloadState{Reason: "ExitCode:127", Message: "Container failed with: SyntaxError: Unexpected identifier", ImageDigest: e.appImage}},
		{silent, reconcile.WorkloadState{Reason: "ExitCode:1", Message: "Container exited with code 1", ImageDigest: e.appImage}},
	} {
		if ws := e.waitReason(t, tc.rev, e.appImage); ws != tc.want {
			t.Errorf("%s: state = %+v, want %+v", tc.rev.Name, ws, tc.want)
		}
	}
}

// testUnschedulable: with the only node cordoned the scheduler's reason
// shows; uncordoned, the revision becomes ready.
func (e *runtimeEnv) testUnschedulable(t *testing.T) {
	e.cordon(t, true)
	t.Cleanup(func() { e.cordon(t, false) })
	rev := e.revision(t, "cordoned-00001", nil, nil, e.appImage)
	ws := e.waitReason(t, rev, e.appImage)
	if ws.Reason != kube.ReasonUnschedulable || !strings.Contains(ws.Message, "unschedulable") {
		t.Errorf("state = %+v, want Unschedulable with the scheduler's message", ws)
	}
	e.cordon(t, false)
	e.waitReady(t, rev, e.appImage)
}

// testNotOwned: a Deployment of the revision's name owned by something
// else is reported and left alone.
func (e *runtimeEnv) testNotOwned(t *testing.T) {
	ctx := t.Context()
	cm, err := e.c.Client.CoreV1().ConfigMaps(testNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rev := e.revision(t, "taken-00001", nil, nil, e.appImage)
	zero, yes := int32(0), true
	labels := map[string]string{"app": "taken", kube.ManagedByLabelKey: kube.ManagedByValue}
	foreign := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: kube.DeploymentName(rev.Name), Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID, Controller: &yes}}},
		Spec: appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "theirs", Image: "example.com/theirs:1"}}}}},
	}
	if _, err := e.c.Client.AppsV1().Deployments(testNS).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the informer shows the Deployment, the API server refuses a
	// second controller (NoDeployment); then it is NotOwned.
	ws := e.poll(t, rev, e.appImage, 30*time.Second, "NotOwned", func(ws reconcile.WorkloadState) bool { return ws.Reason == kube.ReasonNotOwned })
	if ws.Reason != kube.ReasonNotOwned || !strings.Contains(ws.Message, `ConfigMap "someone-else"`) {
		t.Errorf("state = %+v, want NotOwned naming the ConfigMap", ws)
	}
	d, err := e.c.Client.AppsV1().Deployments(testNS).Get(ctx, foreign.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "example.com/theirs:1" || d.Annotations[kube.SpecHashAnnotation] != "" {
		t.Errorf("the foreign Deployment was changed: image %q annotations %v", img, d.Annotations)
	}
	if _, err := e.c.Client.CoreV1().Services(testNS).Get(ctx, kube.ServiceName(rev.Name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("service of a revision whose Deployment is not its own: err %v, want NotFound", err)
	}
	if err := e.rt.Retire(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Client.AppsV1().Deployments(testNS).Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("Retire deleted a Deployment the revision does not own: %v", err)
	}
}

// testRetire: Retire deletes the Deployment and the Service and keeps the
// Revision; once the informers show them gone, retiring again costs no
// request; materializing again brings the workload back.
func (e *runtimeEnv) testRetire(t *testing.T) {
	ctx := t.Context()
	rev := e.revision(t, "retired-00001", nil, nil, e.appImage)
	e.waitReady(t, rev, e.appImage)
	if err := e.rt.Retire(ctx, rev); err != nil {
		t.Fatal(err)
	}
	e.expectGone(t, rev.Name, 10*time.Second)
	if _, err := e.store.Get(ctx, store.KindRevision, testNS, rev.Name); err != nil {
		t.Errorf("the revision after Retire: %v", err)
	}
	testutil.EventuallyEvery(t, 10*time.Second, 100*time.Millisecond, "Retire of a retired revision to make no API request", func() (bool, string) {
		before := e.api.load()
		if err := e.rt.Retire(ctx, rev); err != nil {
			t.Fatal(err)
		}
		return e.api.load() == before, fmt.Sprintf("it still makes some: %v", e.api.recent(2))
	})
	e.waitReady(t, rev, e.appImage)
}

// testGarbageCollection: deleting the Revision deletes its workload.
func (e *runtimeEnv) testGarbageCollection(t *testing.T) {
	ctx := t.Context()
	rev := e.revision(t, "collected-00001", nil, nil, e.appImage)
	e.materialize(t, rev, e.appImage)
	for _, get := range []func() error{
		func() error {
			_, err := e.c.Client.AppsV1().Deployments(testNS).Get(ctx, kube.DeploymentName(rev.Name), metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := e.c.Client.CoreV1().Services(testNS).Get(ctx, kube.ServiceName(rev.Name), metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); err != nil {
			t.Fatalf("before deleting the revision: %v", err)
		}
	}
	if err := e.store.Delete(ctx, store.KindRevision, testNS, rev.Name); err != nil {
		t.Fatal(err)
	}
	// The garbage collector learns of the CRD's kind by discovery (every
	// 30s), hence the long deadline.
	e.expectGone(t, rev.Name, 120*time.Second)
}

// revision creates a Revision (the API server gives it its UID).
func (e *runtimeEnv) revision(t *testing.T, name string, labels, annotations map[string]string, image string,
	mutate ...func(*v1alpha1.Revision)) *v1alpha1.Revision {
	t.Helper()
	rev := &v1alpha1.Revision{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: labels, Annotations: annotations},
		Spec:       v1alpha1.RevisionSpec{Container: corev1.Container{Name: v1alpha1.DefaultContainerName, Image: image}},
	}
	for _, m := range mutate {
		m(rev)
	}
	o, err := e.store.Create(t.Context(), rev)
	if err != nil {
		t.Fatalf("creating revision %s: %v", name, err)
	}
	return o.(*v1alpha1.Revision)
}

func (e *runtimeEnv) materialize(t *testing.T, rev *v1alpha1.Revision, image string) reconcile.WorkloadState {
	t.Helper()
	ws, err := e.rt.Materialize(t.Context(), rev, image)
	if err != nil {
		t.Fatalf("Materialize %s: %v", rev.Name, err)
	}
	return ws
}

// waitReady materializes rev as the reconciler does until it is Ready.
func (e *runtimeEnv) waitReady(t *testing.T, rev *v1alpha1.Revision, image string) {
	t.Helper()
	e.poll(t, rev, image, 60*time.Second, "Ready", func(ws reconcile.WorkloadState) bool { return ws.Ready })
}

// waitReason materializes rev until it reports a reason and returns that
// state.
func (e *runtimeEnv) waitReason(t *testing.T, rev *v1alpha1.Revision, image string) reconcile.WorkloadState {
	t.Helper()
	ws := e.poll(t, rev, image, 60*time.Second, "reporting a reason", func(ws reconcile.WorkloadState) bool { return ws.Reason != "" || ws.Ready })
	if ws.Reason == "" {
		t.Fatalf("%s is Ready, want a reason: state %+v", rev.Name, ws)
	}
	return ws
}

// poll materializes rev as the reconciler does until done says its state
// is what the test waits for (what), and returns that state; it fails the
// test, with the revision's pods logged, when limit passes first.
func (e *runtimeEnv) poll(t *testing.T, rev *v1alpha1.Revision, image string, limit time.Duration, what string,
	done func(reconcile.WorkloadState) bool) reconcile.WorkloadState {
	t.Helper()
	var ws reconcile.WorkloadState
	defer func() { // runs on t.Fatal too (runtime.Goexit)
		if !done(ws) {
			e.logPods(t, rev.Name)
		}
	}()
	testutil.EventuallyEvery(t, limit, 250*time.Millisecond, rev.Name+" "+what, func() (bool, string) {
		ws = e.materialize(t, rev, image)
		return done(ws), fmt.Sprintf("last state %+v", ws)
	})
	return ws
}

// waitHeld watches the revision's pod until kwok's hold stage has run it:
// phase Running, container started, not Ready.
func (e *runtimeEnv) waitHeld(t *testing.T, rev string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	held := func(p *corev1.Pod) bool {
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		return cs.State.Running != nil && !cs.Ready
	}
	sel := metav1.ListOptions{LabelSelector: kube.RevisionLabelKey + "=" + rev}
	pods, err := e.c.Client.CoreV1().Pods(testNS).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if held(&pods.Items[i]) {
			return
		}
	}
	sel.ResourceVersion = pods.ResourceVersion
	w, err := e.c.Client.CoreV1().Pods(testNS).Watch(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok && held(p) {
			return
		}
	}
	t.Fatalf("no pod of %s running and not ready within 60s: %v", rev, ctx.Err())
}

// expectGone waits for the revision's Deployment and Service to be gone.
func (e *runtimeEnv) expectGone(t *testing.T, rev string, limit time.Duration) {
	t.Helper()
	ctx := t.Context()
	testutil.EventuallyEvery(t, limit, 250*time.Millisecond, rev+"'s deployment and service to be gone", func() (bool, string) {
		_, derr := e.c.Client.AppsV1().Deployments(testNS).Get(ctx, kube.DeploymentName(rev), metav1.GetOptions{})
		_, serr := e.c.Client.CoreV1().Services(testNS).Get(ctx, kube.ServiceName(rev), metav1.GetOptions{})
		return apierrors.IsNotFound(derr) && apierrors.IsNotFound(serr), fmt.Sprintf("deployment: %v; service: %v", derr, serr)
	})
}

func (e *runtimeEnv) cordon(t *testing.T, on bool) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := e.c.Client.CoreV1().Nodes().Patch(context.Background(), kubetest.NodeName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("cordon %t: %v", on, err)
	}
}

func (e *runtimeEnv) logPods(t *testing.T, rev string) {
	t.Helper()
	pods, err := e.c.Client.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{LabelSelector: kube.RevisionLabelKey + "=" + rev})
	if err != nil {
		t.Logf("listing pods of %s: %v", rev, err)
		return
	}
	for _, p := range pods.Items {
		t.Logf("pod %s node=%q phase=%s conditions=%+v containers=%+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
	}
}

// runtimeRBAC returns a config for a ServiceAccount bound to exactly the
// verbs runtime.go documents, once the API server authorizes it.
func runtimeRBAC(t *testing.T, c *kubetest.Cluster) *rest.Config {
	t.Helper()
	ctx := t.Context()
	verbs := []string{"list", "watch", "create", "patch", "delete"}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "elafros-runtime-test"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: verbs},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: verbs},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"revisions/finalizers"}, Verbs: []string{"update"}},
	}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "elafros-runtime", Namespace: testNS}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "elafros-runtime-test"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: testNS}}}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(testNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := c.ServiceAccountConfig(t, testNS, sa.Name)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, "the runtime's ServiceAccount to list pods", func() (bool, string) {
		_, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, fmt.Sprint(err)
	})
	return cfg
}

// requestCounter counts the API requests of a rest.Config (watches aside:
// the informers' long-running streams).
type requestCounter struct {
	mu   sync.Mutex
	n    int64
	last []string
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Get("watch") != "true" {
			c.mu.Lock()
			c.n++
			c.last = append(c.last, r.Method+" "+r.URL.Path)
			if len(c.last) > 20 {
				c.last = c.last[1:]
			}
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (c *requestCounter) load() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// recent returns the last n requests (for failure messages).
func (c *requestCounter) recent(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.last[max(0, len(c.last)-n):])
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingRegistry is an in-process OCI registry that counts requests.
type countingRegistry struct {
	host     string
	requests atomic.Int64
}

func startRegistry(t *testing.T) *countingRegistry {
	t.Helper()
	r := &countingRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// push pushes a random image as repo:tag and returns it by digest.
func (r *countingRegistry) push(t *testing.T, repo, tag string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(r.host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.host + "/" + repo + "@" + d.String()
}

// notifications records OnChange calls.
type notifications struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (n *notifications) add(namespace, revision string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	n.seen[namespace+"/"+revision] = true
}

func (n *notifications) has(namespace, revision string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen[namespace+"/"+revision]
}
