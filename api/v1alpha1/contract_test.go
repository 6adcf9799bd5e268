package v1alpha1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWorkloadEnv(t *testing.T) {
	timeout := int64(30)
	rev := &Revision{ObjectMeta: metav1.ObjectMeta{Name: "web-00002", Labels: map[string]string{ConfigurationLabelKey: "web"}},
		Spec: RevisionSpec{ConcurrencyModel: ConcurrencySingleThreaded, TimeoutSeconds: &timeout}}
	want := []corev1.EnvVar{{Name: "PORT", Value: "8080"}, {Name: "ELAFROS_REVISION", Value: "web-00002"}, {Name: "ELAFROS_CONFIGURATION", Value: "web"},
		{Name: "ELAFROS_CONCURRENCY_MODEL", Value: "SingleThreaded"}, {Name: "ELAFROS_TIMEOUT_SECONDS", Value: "30"}}
	if d := cmp.Diff(want, WorkloadEnv(rev, 8080)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	rev.Spec = RevisionSpec{}
	if d := cmp.Diff(want[:3], WorkloadEnv(rev, 8080)); d != "" {
		t.Errorf("unset model and timeout are left out (-want +got):\n%s", d)
	}
	for _, e := range want {
		found := false
		for _, n := range WorkloadEnvNames {
			found = found || n == e.Name
		}
		if !found {
			t.Errorf("%s is set but not in WorkloadEnvNames", e.Name)
		}
	}
}
