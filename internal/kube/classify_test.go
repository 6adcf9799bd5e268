package kube

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// TestWorkloadState is the failure classification without a cluster: a
// Deployment and its pods as the informers would hold them, and the
// WorkloadState (so the Ready condition's reason and message) they mean.
func TestWorkloadState(t *testing.T) {
	const hash, image = "h1", "gcr.io/elafros-samples/my-service:v1"
	deployment := func(mutate ...func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2, Annotations: map[string]string{SpecHashAnnotation: hash}}}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2}
		for _, m := range mutate {
			m(d)
		}
		return d
	}
	available := func(d *appsv1.Deployment) {
		d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.AvailableReplicas = 1, 1, 1
	}
	condition := func(c appsv1.DeploymentCondition) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) { d.Status.Conditions = append(d.Status.Conditions, c) }
	}
	pod := func(cs ...corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: cs}}
	}
	waiting := func(reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "user-container", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	crashLoop := func(code int32, reason, msg string) corev1.ContainerStatus {
		cs := waiting("CrashLoopBackOff", "back-off 10s restarting failed container")
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}
		return cs
	}
	unschedulable := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/1 nodes are available: 1 Insufficient cpu.",
	}}}}
	progressDeadline := condition(appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
		Reason: v1alpha1.ReasonProgressDeadlineExceeded, Message: `ReplicaSet "x" has timed out progressing.`})

	for _, tc := range []struct {
		name string
		d    *appsv1.Deployment
		pods []*corev1.Pod
		want reconcile.WorkloadState
	}{
		{name: "no Deployment yet: starting", want: reconcile.WorkloadState{}},
		{name: "available with this spec: Ready", d: deployment(available), want: reconcile.WorkloadState{Ready: true}},
		{name: "available but an older spec: starting", d: deployment(available, func(d *appsv1.Deployment) { d.Annotations[SpecHashAnnotation] = "h0" })},
		{name: "available but its controller has not seen the spec: starting", d: deployment(available, func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 1 })},
		{name: "an old pod is still there: starting", d: deployment(available, func(d *appsv1.Deployment) { d.Status.Replicas = 2 })},
		{name: "being deleted: not Ready", d: deployment(available, func(d *appsv1.Deployment) { d.DeletionTimestamp = &metav1.Time{} })},
		{name: "pods still creating: starting", d: deployment(), pods: []*corev1.Pod{pod(waiting("ContainerCreating", ""))}},
		{
			name: "a crash loop: the exit code and the last line of the message",
			d:    deployment(), pods: []*corev1.Pod{pod(crashLoop(2, "Error", "starting\npanic: no DATABASE_URL\n\n"))},
			want: reconcile.WorkloadState{Reason: "ExitCode:2", Message: "Container failed with: panic: no DATABASE_URL"},
		},
		{
			name: "killed without a message: the code and the reason",
			d:    deployment(), pods: []*corev1.Pod{pod(crashLoop(137, "OOMKilled", ""))},
			want: reconcile.WorkloadState{Reason: "ExitCode:137", Message: "Container exited with code 137 (OOMKilled)"},
		},
		{
			name: "a crash loop not yet terminated once: as the kubelet says",
			d:    deployment(), pods: []*corev1.Pod{pod(waiting("CrashLoopBackOff", "back-off"))},
			want: reconcile.WorkloadState{Reason: "CrashLoopBackOff", Message: "back-off"},
		},
		{
			name: "an image that cannot be pulled: ContainerMissing, as errors.md has it",
			d:    deployment(), pods: []*corev1.Pod{pod(waiting("ImagePullBackOff", `Back-off pulling image "x"`))},
			want: reconcile.WorkloadState{Reason: v1alpha1.ReasonContainerMissing, Message: "Unable to fetch image '" + image + `': Back-off pulling image "x"`},
		},
		{
			name: "an image pull error without a message names the reason",
			d:    deployment(), pods: []*corev1.Pod{pod(waiting("ErrImagePull", ""))},
			want: reconcile.WorkloadState{Reason: v1alpha1.ReasonContainerMissing, Message: "Unable to fetch image '" + image + "': ErrImagePull"},
		},
		{
			name: "a container that cannot be created: as it is",
			d:    deployment(), pods: []*corev1.Pod{pod(waiting("CreateContainerConfigError", `secret "db" not found`))},
			want: reconcile.WorkloadState{Reason: "CreateContainerConfigError", Message: `secret "db" not found`},
		},
		{
			name: "an unschedulable pod",
			d:    deployment(), pods: []*corev1.Pod{unschedulable},
			want: reconcile.WorkloadState{Reason: ReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient cpu."},
		},
		{
			name: "a container failure comes before an unschedulable pod",
			d:    deployment(), pods: []*corev1.Pod{unschedulable, pod(crashLoop(1, "Error", "boom"))},
			want: reconcile.WorkloadState{Reason: "ExitCode:1", Message: "Container failed with: boom"},
		},
		{
			name: "pods it cannot create (quota)",
			d: deployment(condition(appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
				Reason: "FailedCreate", Message: "exceeded quota: pods"})),
			want: reconcile.WorkloadState{Reason: "FailedCreate", Message: "exceeded quota: pods"},
		},
		{
			name: "the progress deadline exceeded",
			d:    deployment(progressDeadline),
			want: reconcile.WorkloadState{Reason: v1alpha1.ReasonProgressDeadlineExceeded, Message: `ReplicaSet "x" has timed out progressing.`},
		},
		{
			name: "a pod's failure says more than the deadline",
			d:    deployment(progressDeadline), pods: []*corev1.Pod{pod(crashLoop(3, "Error", "exit 3"))},
			want: reconcile.WorkloadState{Reason: "ExitCode:3", Message: "Container failed with: exit 3"},
		},
		{
			name: "Ready wins over an old pod's crash",
			d:    deployment(available), pods: []*corev1.Pod{pod(crashLoop(1, "Error", "old"))},
			want: reconcile.WorkloadState{Ready: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := workloadState(tc.d, hash, tc.pods, image)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("workloadState (-want +got):\n%s", diff)
			}
		})
	}
}
