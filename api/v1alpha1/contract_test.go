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

func TestRevisionReadiness(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conds Conditions
		ready bool
		why   string
	}{
		{"no condition yet", nil, false, "it has not reported readiness yet"},
		{"ready", Conditions{{Type: ConditionReady, Status: corev1.ConditionTrue}}, true, ""},
		{"reason and message", Conditions{{Type: ConditionReady, Status: corev1.ConditionFalse, Reason: "ContainerMissing", Message: "Unable to fetch image 'x'"}}, false, "ContainerMissing: Unable to fetch image 'x'"},
		{"message only", Conditions{{Type: ConditionReady, Status: corev1.ConditionUnknown, Message: "starting"}}, false, "starting"},
		{"reason only", Conditions{{Type: ConditionReady, Status: corev1.ConditionFalse, Reason: "Deploying"}}, false, "Deploying"},
		{"bare false", Conditions{{Type: ConditionReady, Status: corev1.ConditionFalse}}, false, "it is not Ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Revision{Status: RevisionStatus{Conditions: tc.conds}}
			if ready, why := r.Readiness(); ready != tc.ready || why != tc.why {
				t.Errorf("Readiness() = %v, %q; want %v, %q", ready, why, tc.ready, tc.why)
			}
		})
	}
}
