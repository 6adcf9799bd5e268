package kube

// The desired workload of a revision: its Deployment and Service as apply
// configurations, built from the Revision and the runtime's options alone,
// with no client (knative's resources/ packages). runtime.go applies them;
// workload_test.go tests them without a cluster.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
)

// workloadLabels are the labels of a revision's Deployment, Service and
// pods: the revision's own, then the revision, its configuration and the
// managed-by mark.
func workloadLabels(rev *v1alpha1.Revision) map[string]string {
	l := make(map[string]string, len(rev.Labels)+3)
	for k, v := range rev.Labels {
		l[k] = v
	}
	l[RevisionLabelKey] = rev.Name
	if c, ok := rev.Labels[v1alpha1.ConfigurationLabelKey]; ok {
		l[v1alpha1.ConfigurationLabelKey] = c
	}
	l[ManagedByLabelKey] = ManagedByValue
	return l
}

// podAnnotations are the revision's annotations but elafros.dev/* and
// kubectl.kubernetes.io/* (which change without meaning a new pod), plus
// the concurrency model and timeout.
func podAnnotations(rev *v1alpha1.Revision) map[string]string {
	a := make(map[string]string, len(rev.Annotations)+2)
	for k, v := range rev.Annotations {
		if strings.HasPrefix(k, v1alpha1.GroupName+"/") || strings.HasPrefix(k, "kubectl.kubernetes.io/") {
			continue
		}
		a[k] = v
	}
	a[ConcurrencyModelAnnotation] = string(rev.Spec.ConcurrencyModel)
	a[TimeoutSecondsAnnotation] = strconv.FormatInt(*rev.Spec.TimeoutSeconds, 10)
	return a
}

func ownerReference(rev *v1alpha1.Revision) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.APIVersion).WithKind("Revision").
		WithName(rev.Name).WithUID(rev.UID).
		WithController(true).WithBlockOwnerDeletion(true)
}

// desiredService is rev's ClusterIP Service (port 80 "http" to the
// container port), with its hash annotation.
func desiredService(rev *v1alpha1.Revision, port int32) (*corev1ac.ServiceApplyConfiguration, string, error) {
	svc := corev1ac.Service(ServiceName(rev.Name), rev.Namespace).
		WithLabels(workloadLabels(rev)).
		WithOwnerReferences(ownerReference(rev)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(map[string]string{RevisionLabelKey: rev.Name}).
			WithPorts(corev1ac.ServicePort().
				WithName(ContainerPortName).WithProtocol(corev1.ProtocolTCP).
				WithPort(ServicePort).WithTargetPort(intstr.FromInt32(port))))
	hash, err := specHash(svc)
	if err != nil {
		return nil, "", fmt.Errorf("service %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return svc.WithAnnotations(map[string]string{SpecHashAnnotation: hash}), hash, nil
}

// desiredDeployment is rev's Deployment running pinned (image is what the
// revision names, kept in an annotation), with o.Replicas pods listening
// on o.Port, and its hash annotation.
func desiredDeployment(rev *v1alpha1.Revision, image, pinned string, o RuntimeOptions) (*appsv1ac.DeploymentApplyConfiguration, string, error) {
	c, err := container(rev, pinned, o.Port)
	if err != nil {
		return nil, "", fmt.Errorf("revision %s/%s container: %w", rev.Namespace, rev.Name, err)
	}
	pod := corev1ac.PodSpec().
		WithContainers(c).
		// Requests in flight may take up to the timeout to finish.
		WithTerminationGracePeriodSeconds(*rev.Spec.TimeoutSeconds).
		// A Service per revision would give every pod one set of
		// variables per revision of the namespace (as Knative, off).
		WithEnableServiceLinks(false)
	if sa := rev.Spec.ServiceAccountName; sa != "" {
		pod.WithServiceAccountName(sa)
	}
	d := appsv1ac.Deployment(DeploymentName(rev.Name), rev.Namespace).
		WithLabels(workloadLabels(rev)).
		WithAnnotations(map[string]string{ImageAnnotation: image}).
		WithOwnerReferences(ownerReference(rev)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(o.Replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{RevisionLabelKey: rev.Name})).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(workloadLabels(rev)).
				WithAnnotations(podAnnotations(rev)).
				WithSpec(pod)))
	hash, err := specHash(d)
	if err != nil {
		return nil, "", fmt.Errorf("deployment %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return d.WithAnnotations(map[string]string{SpecHashAnnotation: hash}), hash, nil
}

// container is the revision's container running pinned, with the port,
// the environment contract of the local runtime, a readiness probe (TCP
// on the port unless the revision has one) and probes without a port
// pointed at it.
func container(rev *v1alpha1.Revision, pinned string, port int32) (*corev1ac.ContainerApplyConfiguration, error) {
	c := rev.Spec.Container.DeepCopy()
	c.Image = pinned
	c.Ports = []corev1.ContainerPort{{Name: ContainerPortName, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return slices.Contains(v1alpha1.WorkloadEnvNames, e.Name) })
	c.Env = append(c.Env, v1alpha1.WorkloadEnv(rev, int(port))...)
	if c.ReadinessProbe == nil {
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}}
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		defaultProbePort(p, port)
	}
	if c.TerminationMessagePolicy == "" {
		// A crash without a termination log reports its last output.
		c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	}
	return toApplyConfiguration(c)
}

// defaultProbePort points a probe without a port at the container port.
func defaultProbePort(p *corev1.Probe, port int32) {
	if p == nil {
		return
	}
	zero := intstr.IntOrString{}
	if h := p.HTTPGet; h != nil && h.Port == zero {
		h.Port = intstr.FromInt32(port)
	}
	if t := p.TCPSocket; t != nil && t.Port == zero {
		t.Port = intstr.FromInt32(port)
	}
	if g := p.GRPC; g != nil && g.Port == 0 {
		g.Port = port
	}
}

// toApplyConfiguration converts a container through JSON (the apply
// configuration has the same fields), dropping its empty resources.
func toApplyConfiguration(c *corev1.Container) (*corev1ac.ContainerApplyConfiguration, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	ac := &corev1ac.ContainerApplyConfiguration{}
	if err := json.Unmarshal(b, ac); err != nil {
		return nil, err
	}
	if ac.Resources != nil && reflect.ValueOf(*ac.Resources).IsZero() {
		ac.Resources = nil
	}
	return ac, nil
}

// specHash is a short hash of an apply configuration's JSON.
func specHash(obj any) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("hashing: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}
