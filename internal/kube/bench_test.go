package kube_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/store"
)

// BenchmarkDeploy measures, on the test cluster, the time from a new
// revision template on a Configuration to its route's RolloutComplete at
// 100% (with the HTTPRoute updated), and the API requests the reconciler
// makes for it:
//
//	go test ./internal/kube -run '^$' -bench Deploy -benchtime 20x -count 3
func BenchmarkDeploy(b *testing.B) {
	e := setup(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n counter
	r := startReconciler(b, ctx, e, n.wrap(e.action), 10*time.Minute)
	b.Cleanup(cancel)
	admin, err := client.New(e.c.Config)
	if err != nil {
		b.Fatal(err)
	}
	app(b, ctx, r.store, "bench")
	eventually(b, "first revision", 60*time.Second, func() error { return converged(ctx, e, admin, "bench", 1) })
	time.Sleep(time.Second) // let the first rollout's follow-up requests finish
	reads, writes := n.reads.Load(), n.writes.Load()
	b.ResetTimer()
	for i := range b.N {
		gen := int64(i + 2)
		if err := setVersion(ctx, admin, "bench", int(gen)); err != nil {
			b.Fatal(err)
		}
		for converged(ctx, e, admin, "bench", gen) != nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n.reads.Load()-reads)/float64(b.N), "reads/deploy")
	b.ReportMetric(float64(n.writes.Load()-writes)/float64(b.N), "writes/deploy")
}

// TestResyncUnchangedMakesNoWrites converges 500 elafros Services (each a
// Configuration, a Route, a Revision, a Deployment, a Service and an
// HTTPRoute on the test cluster), then runs a full resync pass over them
// and counts the API requests it makes: none, neither writes nor reads
// (the Store, Runtime and Traffic read from informers).
// ELAFROS_RESYNC_SERVICES changes the count.
func TestResyncUnchangedMakesNoWrites(t *testing.T) {
	count := 500
	if v := os.Getenv("ELAFROS_RESYNC_SERVICES"); v != "" {
		var err error
		if count, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	e := setup(t)
	ctx := t.Context()
	var n counter
	cfg := n.wrap(e.action)
	r := newReconciler(t, ctx, e, cfg)
	st := r.Store
	for i := range count {
		body := fmt.Sprintf(`apiVersion: elafros.dev/v1alpha1
kind: Service
metadata: {name: svc-%d, namespace: default}
spec:
  revisionTemplate:
    spec:
      container:
        image: gcr.io/elafros-samples/my-service:v1
  rollout: {strategy: automatic}
`, i)
		docs, errs := manifest.Decode("svc.yaml", []byte(body))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		docs[0].Object.SetDefaults()
		if _, err := st.Create(ctx, docs[0].Object.(store.Object)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if err := r.Converge(cctx, "default"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d services converged in %v with %d reads and %d writes", count, time.Since(start).Round(time.Millisecond), n.reads.Load(), n.writes.Load())
	svcs, err := st.List(ctx, store.KindService, "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, o := range svcs {
		if o.(*v1alpha1.Service).Status.Conditions.IsTrue(v1alpha1.ConditionReady) {
			ready++
		}
	}
	if ready != count {
		t.Fatalf("%d of %d services Ready after converging", ready, count)
	}
	reads, writes := n.reads.Load(), n.writes.Load()
	start = time.Now()
	if _, errs := r.Pass(ctx, "default"); len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Logf("resync pass over %d unchanged services: %v, %d reads, %d writes", count, time.Since(start).Round(time.Millisecond), n.reads.Load()-reads, n.writes.Load()-writes)
	if w := n.writes.Load() - writes; w != 0 {
		t.Fatalf("a resync of %d unchanged services made %d writes, want 0", count, w)
	}
	if r := n.reads.Load() - reads; r != 0 {
		t.Fatalf("a resync of %d unchanged services made %d reads, want 0 (everything is in the informers); the last: %v", count, r, n.recentReads())
	}
}

// BenchmarkDeploymentRollout is the peer of BenchmarkDeploy on the same
// cluster: a bare Deployment whose pod template changes, until the
// deployment controller reports the new generation fully rolled out and
// available (what "kubectl rollout status" waits for), with no elafros.
func BenchmarkDeploymentRollout(b *testing.B) {
	c := kubetest.Start(b)
	ctx := context.Background()
	one := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bare"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bare"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.local/bare:1", Env: []corev1.EnvVar{{Name: "VERSION", Value: "1"}}}}},
			},
		},
	}
	deps := c.Client.AppsV1().Deployments("default")
	if _, err := deps.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	rolledOut := func() bool {
		got, err := deps.Get(ctx, "bare", metav1.GetOptions{})
		if err != nil {
			return false
		}
		s := got.Status
		return s.ObservedGeneration >= got.Generation && s.UpdatedReplicas == one && s.Replicas == one && s.AvailableReplicas == one
	}
	eventually(b, "first rollout", 60*time.Second, func() error {
		if !rolledOut() {
			return fmt.Errorf("not rolled out")
		}
		return nil
	})
	b.ResetTimer()
	for i := range b.N {
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"VERSION","value":"%d"}]}]}}}}`, i+2)
		if _, err := deps.Patch(ctx, "bare", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		for !rolledOut() {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
