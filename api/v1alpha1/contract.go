package v1alpha1

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// TargetHeader names a route's named target on its main host
// ("Elafros-Target: next"); the local router and the kube backend's
// HTTPRoutes both match it.
const TargetHeader = "Elafros-Target"

// The environment every revision's process gets, whichever runtime runs
// it: the port to listen on, its names, and the concurrency model and
// timeout that the go-function builder's generated main enforces.
const (
	EnvPort             = "PORT"
	EnvRevision         = "ELAFROS_REVISION"
	EnvConfiguration    = "ELAFROS_CONFIGURATION"
	EnvConcurrencyModel = "ELAFROS_CONCURRENCY_MODEL"
	EnvTimeoutSeconds   = "ELAFROS_TIMEOUT_SECONDS"
)

// WorkloadEnvNames are the variables WorkloadEnv sets; a revision's own
// values of them give way.
var WorkloadEnvNames = []string{EnvPort, EnvRevision, EnvConfiguration, EnvConcurrencyModel, EnvTimeoutSeconds}

// WorkloadEnv is the environment contract of rev's process listening on
// port, in this order; the concurrency model and timeout are left out when
// unset (defaults set both).
func WorkloadEnv(rev *Revision, port int) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: EnvPort, Value: strconv.Itoa(port)},
		{Name: EnvRevision, Value: rev.Name},
		{Name: EnvConfiguration, Value: rev.Labels[ConfigurationLabelKey]},
	}
	if m := rev.Spec.ConcurrencyModel; m != "" {
		env = append(env, corev1.EnvVar{Name: EnvConcurrencyModel, Value: string(m)})
	}
	if t := rev.Spec.TimeoutSeconds; t != nil {
		env = append(env, corev1.EnvVar{Name: EnvTimeoutSeconds, Value: strconv.FormatInt(*t, 10)})
	}
	return env
}

// Readiness says whether r may serve traffic (its Ready condition is
// True) and, when not, why, in the words its condition gives: "Reason:
// message", so a refusal names the seed's reason (ContainerMissing,
// RevisionFailed...). The reconciler, the deploy facade and the rollout
// rules all read readiness here.
func (r *Revision) Readiness() (bool, string) {
	c := r.Status.Conditions.Get(ConditionReady)
	switch {
	case c == nil:
		return false, "it has not reported readiness yet"
	case c.Status == corev1.ConditionTrue:
		return true, ""
	case c.Reason != "" && c.Message != "":
		return false, c.Reason + ": " + c.Message
	case c.Message != "":
		return false, c.Message
	case c.Reason != "":
		return false, c.Reason
	}
	return false, "it is not Ready"
}
