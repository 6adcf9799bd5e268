package kube_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/conformance"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// env is a cluster prepared for elafros: CRDs, Gateway API, RBAC, a
// Gateway, and a registry that mirrors the seed's gcr.io images.
type env struct {
	c        *kubetest.Cluster
	registry string
	// action and bot authenticate as the ServiceAccounts of config/rbac.
	action, bot *rest.Config
}

func setup(t testing.TB) *env {
	t.Helper()
	c := kubetest.Start(t)
	c.InstallElafros(t)
	e := &env{c: c, registry: processtest.StartRegistry(t)}
	for _, tag := range []string{"v1", "v2"} {
		push(t, e.registry+"/elafros-samples/my-service:"+tag)
	}
	e.action = c.ServiceAccountConfig(t, "elafros-system", "elafros-action")
	e.bot = c.ServiceAccountConfig(t, "elafros-system", "elafros-bot")
	return e
}

func push(t testing.TB, ref string) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func gateway() kube.TrafficOptions {
	ns := gatewayv1.Namespace("default")
	return kube.TrafficOptions{Gateway: gatewayv1.ParentReference{Name: "elafros", Namespace: &ns}}
}

// behaviors stands in for the user's code: a held revision's pods never
// become ready, a failed one's crash-loop with the given exit code and
// message. It marks the revision's pods (through labels the runtime
// propagates); kwok's stages make the pods behave so, and the runtime
// reads it from real pod status.
type behaviors struct {
	*kube.Runtime
	mu     sync.Mutex
	held   map[string]bool
	failed map[string][2]string
}

func (b *behaviors) Materialize(ctx context.Context, rev *v1alpha1.Revision, image string) (reconcile.WorkloadState, error) {
	b.mu.Lock()
	held, failed := b.held[rev.Name], b.failed[rev.Name]
	b.mu.Unlock()
	if held || failed[0] != "" {
		rev = rev.DeepCopy()
		if rev.Labels == nil {
			rev.Labels = map[string]string{}
		}
		if rev.Annotations == nil {
			rev.Annotations = map[string]string{}
		}
		if held {
			rev.Labels[kubetest.BehaviorLabel] = kubetest.BehaviorHold
		} else {
			rev.Labels[kubetest.BehaviorLabel] = kubetest.BehaviorCrash
			rev.Annotations[kubetest.ExitCodeAnnotation] = failed[0]
			rev.Annotations[kubetest.MessageAnnotation] = failed[1]
		}
	}
	return b.Runtime.Materialize(ctx, rev, image)
}

func (b *behaviors) set(f func()) { b.mu.Lock(); f(); b.mu.Unlock() }

// reset deletes every elafros object in default and waits until they and
// their workloads and HTTPRoutes are gone, so each scenario starts empty.
func (e *env) reset(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	admin, err := client.New(e.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, "the previous scenario's objects to be gone", func() (bool, string) {
		left := 0
		for _, k := range store.Kinds {
			objs, err := admin.List(ctx, k, "default", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				left++
				_ = admin.Delete(ctx, k, "default", o.GetName())
			}
		}
		sel := metav1.ListOptions{LabelSelector: kube.ManagedByLabelKey + "=" + kube.ManagedByValue}
		deps, err := e.c.Client.AppsV1().Deployments("default").List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		svcs, err := e.c.Client.CoreV1().Services("default").List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		left += len(deps.Items) + len(svcs.Items)
		return left == 0, fmt.Sprintf("%d left", left)
	})
}

// TestConformance runs the seed's scenarios and the error catalogue
// against the real cluster, with the same assertions as the embedded
// store: the reconciler authenticates as the action's ServiceAccount,
// revisions become Deployments that kwok runs, routes become HTTPRoutes,
// and the applied traffic is read back from the HTTPRoutes.
func TestConformance(t *testing.T) {
	e := setup(t)
	for _, cached := range []bool{false, true} {
		name := "direct"
		if cached {
			name = "cached" // reads from informers, as elafros reconcile runs
		}
		t.Run(name, func(t *testing.T) { conformanceOn(t, e, cached) })
	}
}

func conformanceOn(t *testing.T, e *env, cached bool) {
	conformance.Run(t, func(t *testing.T) conformance.Backend {
		e.reset(t)
		ctx := t.Context()
		direct, err := client.New(e.action)
		if err != nil {
			t.Fatal(err)
		}
		var st store.Store = direct
		if cached {
			cs := kube.NewCachedStore(direct, "")
			if err := cs.Start(ctx); err != nil {
				t.Fatal(err)
			}
			st = cs
		}
		rt, err := kube.NewRuntime(e.action, kube.RuntimeOptions{Mirrors: map[string]string{"gcr.io": e.registry}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx); err != nil {
			t.Fatal(err)
		}
		tr, err := kube.NewTraffic(e.action, gateway())
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Start(ctx); err != nil {
			t.Fatal(err)
		}
		b := &behaviors{Runtime: rt, held: map[string]bool{}, failed: map[string][2]string{}}
		builds := reconciletest.NewBuilder(false)
		return conformance.Backend{
			Store: st, Runtime: b, Traffic: &refusable{Traffic: tr, e: e, t: t}, Builder: builds,
			Hold:    func(_, name string) { b.set(func() { b.held[name] = true }) },
			Release: func(_, name string) { b.set(func() { delete(b.held, name) }) },
			Fail: func(_, name, reason, message string) {
				// The process printed the message; the runtime reports it
				// as "Container failed with: <last line>".
				code := strings.TrimPrefix(reason, "ExitCode:")
				printed := strings.TrimPrefix(message, "Container failed with: ")
				b.set(func() { b.failed[name] = [2]string{code, printed} })
			},
			CompleteBuild: builds.Complete, FailBuild: builds.Fail,
			Exhaust: func(ns string) func() { return e.exhaust(t, ns) },
			Plan: func(ns, name string) (reconcile.TrafficPlan, bool) {
				p, found, err := kube.ReadPlan(ctx, e.c.Config, ns, name)
				if err != nil {
					t.Fatalf("reading the HTTPRoutes of %s: %v", name, err)
				}
				for i := range p.Split {
					o, err := st.Get(ctx, store.KindRevision, ns, p.Split[i].Revision)
					if err == nil {
						p.Split[i].Ready = o.(*v1alpha1.Revision).Status.Conditions.IsTrue(v1alpha1.ConditionReady)
					}
				}
				return p, found
			},
		}
	})
}

// exhaust puts a real ResourceQuota on ns that allows no Deployment, so
// that the API server refuses the next one (errors.md's "Resource
// exhausted"); the returned function removes it.
func (e *env) exhaust(t *testing.T, ns string) func() {
	t.Helper()
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "elafros-test", Namespace: ns},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/deployments.apps": resource.MustParse("0")}},
	}
	if _, err := e.c.Client.CoreV1().ResourceQuotas(ns).Create(context.Background(), q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	removed := false
	restore := func() {
		if removed {
			return
		}
		removed = true
		if err := e.c.Client.CoreV1().ResourceQuotas(ns).Delete(context.Background(), q.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("removing the quota: %v", err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// refusable is the kube Traffic on a cluster that can be made to refuse
// HTTPRoute writes, with a real ValidatingAdmissionPolicy (as a gateway
// admission policy or a missing permission would), for errors.md's
// "Traffic shift progressing slowly/stuck".
type refusable struct {
	*kube.Traffic
	e *env
	t *testing.T
}

const refusePolicy = "elafros-test-refuse-httproutes"

// Break denies every HTTPRoute create and update in default with err's
// text, and returns once the API server enforces it.
func (r *refusable) Break(err error) {
	ctx := context.Background()
	fail := admissionregistrationv1.Fail
	adm := r.e.c.Client.AdmissionregistrationV1()
	if _, cerr := adm.ValidatingAdmissionPolicies().Create(ctx, &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: refusePolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"gateway.networking.k8s.io"}, APIVersions: []string{"*"}, Resources: []string{"httproutes"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: err.Error()}},
		},
	}, metav1.CreateOptions{}); cerr != nil {
		r.t.Fatal(cerr)
	}
	if _, cerr := adm.ValidatingAdmissionPolicyBindings().Create(ctx, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: refusePolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: refusePolicy,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}, metav1.CreateOptions{}); cerr != nil {
		r.t.Fatal(cerr)
	}
	r.t.Cleanup(r.Repair)
	r.waitRefused(true)
}

// Repair removes the policy and returns once HTTPRoutes are accepted.
func (r *refusable) Repair() {
	ctx := context.Background()
	adm := r.e.c.Client.AdmissionregistrationV1()
	for _, err := range []error{
		adm.ValidatingAdmissionPolicyBindings().Delete(ctx, refusePolicy, metav1.DeleteOptions{}),
		adm.ValidatingAdmissionPolicies().Delete(ctx, refusePolicy, metav1.DeleteOptions{}),
	} {
		if err != nil && !apierrors.IsNotFound(err) {
			r.t.Error(err)
		}
	}
	r.waitRefused(false)
}

// waitRefused probes with a dry-run HTTPRoute create until the API
// server refuses it (or accepts it), as the policy takes effect.
func (r *refusable) waitRefused(want bool) {
	gw, err := gatewayclient.NewForConfig(r.e.c.Config)
	if err != nil {
		r.t.Fatal(err)
	}
	probe := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"}}
	testutil.EventuallyEvery(r.t, 30*time.Second, 100*time.Millisecond, fmt.Sprintf("HTTPRoute writes refused = %v", want), func() (bool, string) {
		_, err := gw.GatewayV1().HTTPRoutes("default").Create(context.Background(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		refused := err != nil && strings.Contains(err.Error(), refusePolicy)
		return (want && refused) || (!want && err == nil), fmt.Sprintf("last write: %v", err)
	})
}
