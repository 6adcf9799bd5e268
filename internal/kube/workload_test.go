package kube

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/testutil"
)

// revision is a defaulted Revision of the seed's my-service, with a user
// env var that collides with the workload contract.
func revision() *v1alpha1.Revision {
	timeout := int64(30)
	rev := &v1alpha1.Revision{
		ObjectMeta: metav1.ObjectMeta{
			Name: "my-service-00002", Namespace: "default", UID: "uid-2",
			Labels: map[string]string{v1alpha1.ConfigurationLabelKey: "my-service", "team": "a"},
			Annotations: map[string]string{
				v1alpha1.GroupName + "/commit":              "abc", // elafros.dev/*: not a pod annotation
				"kubectl.kubernetes.io/last-applied-config": "{}",  // neither
				"example.com/owner":                         "a",   // kept
			},
		},
	}
	rev.Spec.ConcurrencyModel = v1alpha1.ConcurrencyMulti
	rev.Spec.TimeoutSeconds = &timeout
	rev.Spec.Container = corev1.Container{
		Name: "user-container", Image: "gcr.io/elafros-samples/my-service:v2",
		Env: []corev1.EnvVar{{Name: "FOO", Value: "bar"}, {Name: "PORT", Value: "1234"}},
	}
	return rev
}

// TestDesiredWorkload pins the Deployment and Service a revision becomes,
// as the JSON applied (golden files; go test -run TestDesiredWorkload
// -update rewrites them).
func TestDesiredWorkload(t *testing.T) {
	o := RuntimeOptions{Replicas: 2, Port: 8080}
	pinned := "gcr.io/elafros-samples/my-service@sha256:" + "2222222222222222222222222222222222222222222222222222222222222222"
	d, dhash, err := desiredDeployment(revision(), revision().Spec.Container.Image, pinned, o)
	if err != nil {
		t.Fatal(err)
	}
	s, shash, err := desiredService(revision(), o.Port)
	if err != nil {
		t.Fatal(err)
	}
	for name, obj := range map[string]any{"deployment.json": d, "service.json": s} {
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, "testdata/workload/"+name, string(b)+"\n")
	}
	if d.Annotations[SpecHashAnnotation] != dhash || s.Annotations[SpecHashAnnotation] != shash {
		t.Errorf("hash annotations %q, %q; want the hashes returned, %q and %q", d.Annotations[SpecHashAnnotation], s.Annotations[SpecHashAnnotation], dhash, shash)
	}

	// The hash is what decides a write: the same revision hashes the
	// same, a new pinned image differently.
	_, again, err := desiredDeployment(revision(), revision().Spec.Container.Image, pinned, o)
	if err != nil {
		t.Fatal(err)
	}
	_, moved, err := desiredDeployment(revision(), revision().Spec.Container.Image, pinned[:len(pinned)-1]+"3", o)
	if err != nil {
		t.Fatal(err)
	}
	if again != dhash || moved == dhash {
		t.Errorf("hashes: first %s, same revision %s (want equal), new digest %s (want different)", dhash, again, moved)
	}
}

// TestContainer covers what the runtime adds to a revision's container:
// the port, the workload env (a user's PORT gives way), a TCP readiness
// probe unless the revision has one, probe ports defaulted, and the
// fallback termination message.
func TestContainer(t *testing.T) {
	const port = 9090
	httpProbe := func(p intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: p}}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Container)
		want   func(*corev1.Container)
	}{{
		name: "defaults",
		want: func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
		},
	}, {
		name:   "a readiness probe without a port gets the container port",
		mutate: func(c *corev1.Container) { c.ReadinessProbe = httpProbe(intstr.IntOrString{}) },
		want:   func(c *corev1.Container) { c.ReadinessProbe = httpProbe(intstr.FromInt32(port)) },
	}, {
		name:   "a probe's own port is kept",
		mutate: func(c *corev1.Container) { c.LivenessProbe = httpProbe(intstr.FromString("admin")) },
		want: func(c *corev1.Container) {
			c.LivenessProbe = httpProbe(intstr.FromString("admin"))
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
		},
	}, {
		name:   "the revision's termination message policy is kept",
		mutate: func(c *corev1.Container) { c.TerminationMessagePolicy = corev1.TerminationMessageReadFile },
		want: func(c *corev1.Container) {
			c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rev := revision()
			if tc.mutate != nil {
				tc.mutate(&rev.Spec.Container)
			}
			ac, err := container(rev, "img@sha256:1", port)
			if err != nil {
				t.Fatal(err)
			}
			var got corev1.Container
			b, _ := json.Marshal(ac)
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := corev1.Container{
				Name: "user-container", Image: "img@sha256:1",
				Ports: []corev1.ContainerPort{{Name: ContainerPortName, ContainerPort: port, Protocol: corev1.ProtocolTCP}},
				Env: append([]corev1.EnvVar{{Name: "FOO", Value: "bar"}},
					v1alpha1.WorkloadEnv(revision(), port)...),
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}
			tc.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("container (-want +got):\n%s", diff)
			}
		})
	}
}
