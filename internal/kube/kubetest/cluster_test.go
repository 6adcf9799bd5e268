package kubetest

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := c.Client.AppsV1().Deployments("default").Get(ctx, "smoke", metav1.GetOptions{})
		if err == nil {
			for _, cond := range got.Status.Conditions {
				if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && got.Status.AvailableReplicas == 2 {
					t.Logf("deployment Available with %d replicas", got.Status.AvailableReplicas)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			pods, _ := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			for _, p := range pods.Items {
				t.Logf("pod %s node=%q phase=%s conditions=%v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
			}
			t.Fatalf("deployment not Available after 90s: %+v (err %v)", got.Status, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
