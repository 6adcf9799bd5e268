package kube

// What an observed workload means: a revision's Deployment and pods
// classified into Ready, or a failure with the reason and message its
// Ready condition carries (ExitCode:N, ContainerMissing, Unschedulable,
// ProgressDeadlineExceeded, …). Pure functions of the objects, tested in
// classify_test.go without a cluster; runtime.go feeds them from its
// informers.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// workloadState classifies a revision's Deployment d (nil: not there
// yet) and its live pods, oldest first: Ready once d carries hash and is
// available; else the first failure a pod shows (it says more than the
// Deployment: the crash, the image), then the Deployment's own; else
// starting (the zero state).
func workloadState(d *appsv1.Deployment, hash string, pods []*corev1.Pod, image string) reconcile.WorkloadState {
	if d == nil {
		return reconcile.WorkloadState{}
	}
	if deploymentReady(d, hash) {
		return reconcile.WorkloadState{Ready: true}
	}
	if reason, msg := podsFailure(pods, image); reason != "" {
		return reconcile.WorkloadState{Reason: reason, Message: msg}
	}
	if reason, msg := deploymentFailure(d); reason != "" {
		return reconcile.WorkloadState{Reason: reason, Message: msg}
	}
	return reconcile.WorkloadState{}
}

// deploymentReady: d carries hash, its controller has seen its
// generation, and all its replicas are updated and available, with no
// old ones left.
func deploymentReady(d *appsv1.Deployment, hash string) bool {
	if d.DeletionTimestamp != nil || d.Annotations[SpecHashAnnotation] != hash {
		return false
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.AvailableReplicas >= want && s.Replicas == s.UpdatedReplicas
}

// deploymentFailure is the Deployment's own failure: pods it cannot
// create (quota, admission), or its progress deadline exceeded.
func deploymentFailure(d *appsv1.Deployment) (reason, msg string) {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return c.Reason, c.Message
		}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == v1alpha1.ReasonProgressDeadlineExceeded {
			return c.Reason, c.Message
		}
	}
	return "", ""
}

// podsFailure is the first container failure of pods, else the first
// unschedulable pod.
func podsFailure(pods []*corev1.Pod, image string) (reason, msg string) {
	for _, p := range pods {
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			if reason, msg := containerFailure(cs, image); reason != "" {
				return reason, msg
			}
		}
	}
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return ReasonUnschedulable, c.Message
			}
		}
	}
	return "", ""
}

// imagePullReasons are the waiting reasons of an image that cannot be
// pulled.
var imagePullReasons = []string{"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}

// configReasons are the waiting reasons of a container the kubelet cannot
// create (a missing Secret or ConfigMap in env, …); they are reported as
// they are.
var configReasons = []string{"CreateContainerConfigError", "CreateContainerError"}

// containerFailure: a crash (ExitCode:N with the last line of its
// termination message), an image that cannot be pulled
// (ContainerMissing) or a container that cannot be created.
func containerFailure(cs corev1.ContainerStatus, image string) (reason, msg string) {
	w := cs.State.Waiting
	term := cs.State.Terminated
	crashed := term != nil && term.ExitCode != 0
	if w != nil && w.Reason == "CrashLoopBackOff" {
		if term = cs.LastTerminationState.Terminated; term == nil {
			return w.Reason, w.Message
		}
		crashed = true
	}
	switch {
	case crashed:
		return ReasonExitCodePrefix + strconv.Itoa(int(term.ExitCode)), exitMessage(term)
	case w != nil && slices.Contains(imagePullReasons, w.Reason):
		m := w.Message
		if m == "" {
			m = w.Reason
		}
		return v1alpha1.ReasonContainerMissing, fmt.Sprintf("Unable to fetch image '%s': %s", image, m)
	case w != nil && slices.Contains(configReasons, w.Reason):
		return w.Reason, w.Message
	}
	return "", ""
}

// exitMessage is "Container failed with: <last non-empty line>" of the
// termination message, or says the exit code (and a reason such as
// OOMKilled) when there is none.
func exitMessage(t *corev1.ContainerStateTerminated) string {
	if line := lastLine(t.Message); line != "" {
		return "Container failed with: " + line
	}
	msg := fmt.Sprintf("Container exited with code %d", t.ExitCode)
	if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
		msg += " (" + t.Reason + ")"
	}
	return msg
}

func lastLine(s string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}
