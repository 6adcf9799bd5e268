package kubetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/internal/testutil"
)

// TestDeploymentBecomesAvailable proves the test cluster is real: the
// scheduler places a Deployment's pods on the kwok node, kwok runs them,
// and the deployment controller reports it Available.
func TestDeploymentBecomesAvailable(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	one := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "smoke"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "smoke"}},
				Spec: corev1.PodSpec{
					Containers:  []corev1.Container{{Name: "app", Image: "registry.local/smoke:1"}},
					Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
				},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyEvery(t, 90*time.Second, 250*time.Millisecond, "the smoke Deployment is Available with 2 replicas", func() (bool, string) {
		got, err := c.Client.AppsV1().Deployments("default").Get(ctx, "smoke", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && got.Status.AvailableReplicas == 2 {
				return true, ""
			}
		}
		why := fmt.Sprintf("status %+v", got.Status)
		pods, _ := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		for _, p := range pods.Items {
			why += fmt.Sprintf("; pod %s node=%q phase=%s conditions=%v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
		}
		return false, why
	})
}

// TestBehaviors shows the test behaviors are real pod states: a held pod
// is scheduled and stays Pending; a crashing pod reports CrashLoopBackOff
// with the exit code and message of its annotations; an unlabelled one
// becomes Ready.
func TestBehaviors(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	mk := func(name string, labels, annotations map[string]string) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels, Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.local/app:1"}}},
		}
		if _, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("plain", nil, nil)
	mk("held", map[string]string{BehaviorLabel: BehaviorHold}, nil)
	mk("crashing", map[string]string{BehaviorLabel: BehaviorCrash},
		map[string]string{ExitCodeAnnotation: "127", MessageAnnotation: "SyntaxError: Unexpected identifier"})
	get := func(name string) *corev1.Pod {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, "plain Running and crashing in CrashLoopBackOff", func() (bool, string) {
		plain, crashing := get("plain"), get("crashing")
		if plain.Status.Phase != corev1.PodRunning || len(crashing.Status.ContainerStatuses) != 1 {
			return false, fmt.Sprintf("plain %s, crashing %+v", plain.Status.Phase, crashing.Status)
		}
		cs := crashing.Status.ContainerStatuses[0]
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || cs.LastTerminationState.Terminated == nil ||
			cs.LastTerminationState.Terminated.ExitCode != 127 || cs.LastTerminationState.Terminated.Message != "SyntaxError: Unexpected identifier" {
			t.Fatalf("crashing pod status: %+v", cs)
		}
		return true, ""
	})
	// The hold stage is kwok's last word on a held pod: Running, its
	// container started, never Ready.
	testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, "the held pod runs on "+NodeName+" and is never Ready", func() (bool, string) {
		held := get("held")
		for _, c := range held.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				t.Fatalf("held pod became Ready: %+v", held.Status)
			}
		}
		return held.Spec.NodeName == NodeName && held.Status.Phase == corev1.PodRunning, fmt.Sprintf("node %q phase %s", held.Spec.NodeName, held.Status.Phase)
	})
}

// TestRestart stops kube-apiserver and etcd and starts them again; what was
// written before is still there.
func TestRestart(t *testing.T) {
	c := Start(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "default"}, Data: map[string]string{"a": "b"}}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	c.Stop(t, "kube-apiserver", "etcd")
	t.Logf("stopped in %v", time.Since(t0))
	if _, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{}); err == nil {
		t.Fatal("the API answered while stopped")
	}
	t0 = time.Now()
	c.Start(t, "etcd", "kube-apiserver")
	t.Logf("started in %v", time.Since(t0))
	got, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || got.Data["a"] != "b" {
		t.Fatalf("after restart: %v %v", got, err)
	}
}
