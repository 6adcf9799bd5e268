package v1alpha1

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RolloutStrategy decides what a new ready revision of a Service does to
// its Route.
// +kubebuilder:validation:Enum=automatic;manual;canary
type RolloutStrategy string

const (
	// StrategyAutomatic follows the latest ready revision to 100%.
	StrategyAutomatic RolloutStrategy = "automatic"
	// StrategyManual moves nothing until told (pinned).
	StrategyManual RolloutStrategy = "manual"
	// StrategyCanary makes the new revision "next" at the first step while
	// "current" keeps the rest.
	StrategyCanary RolloutStrategy = "canary"
)

// Service is the shorthand most users write: it owns one Configuration and
// one Route of its name, and a rollout policy that drives the Route.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=esvc,categories=elafros
// +kubebuilder:printcolumn:name="Domain",type=string,JSONPath=`.status.domain`
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.rollout.strategy`
// +kubebuilder:printcolumn:name="LatestReady",type=string,JSONPath=`.status.latestReadyRevisionName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Service struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceSpec   `json:"spec,omitempty"`
	Status ServiceStatus `json:"status,omitempty"`
}

// ServiceSpec is a Configuration spec plus a rollout policy.
type ServiceSpec struct {
	ConfigurationSpec `json:",inline"`
	// Rollout is the policy that moves the Route's traffic.
	// +optional
	Rollout ServiceRollout `json:"rollout,omitempty"`
}

// ServiceRollout is a Service's rollout policy.
type ServiceRollout struct {
	// Strategy is automatic (default), manual or canary.
	// +optional
	Strategy RolloutStrategy `json:"strategy,omitempty"`
	// Steps are the percents a canary walks through, strictly increasing
	// and ending at 100. Default for canary: [5, 25, 50, 100].
	// +optional
	Steps []int `json:"steps,omitempty"`
	// Interval is the least time a canary stays at a step before scheduled
	// promotion moves it on. Default for canary: 10m.
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Duration spreads an automatic rollout over this time: the Route's
	// traffic moves onto a newly ready revision in steps instead of at
	// once (the Route's elafros.dev/rollout-duration annotation). Only
	// for the automatic strategy; absent or 0s: at once.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// Approvers are GitHub logins or org/team slugs allowed to move
	// traffic with /rollout, beyond people with write access.
	// +optional
	Approvers []string `json:"approvers,omitempty"`
	// Previews deploys each pull request at 0% as pr-<N>. Default true.
	// +optional
	Previews *bool `json:"previews,omitempty"`
	// RequireChecks makes /rollout move traffic only when the commit's
	// checks are green (GitHub's check runs and commit statuses): true
	// means every check and status reported on it has passed and there is
	// at least one; a list of names means each of those has passed.
	// Missing results are not green.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	RequireChecks *RequiredChecks `json:"requireChecks,omitempty"`
}

// RequiredChecks is requireChecks: true or false (All), or a list of
// check names (Names), as written.
type RequiredChecks struct {
	// All: every check reported on the commit must pass, and there must
	// be one.
	All bool `json:"-"`
	// Names must each have passed.
	Names []string `json:"-"`
}

// Required says whether any check is required.
func (r *RequiredChecks) Required() bool { return r != nil && (r.All || len(r.Names) > 0) }

// MarshalJSON writes true/false or the list, as written.
func (r RequiredChecks) MarshalJSON() ([]byte, error) {
	if r.Names != nil {
		return json.Marshal(r.Names)
	}
	return json.Marshal(r.All)
}

// UnmarshalJSON reads true, false or a list of check names.
func (r *RequiredChecks) UnmarshalJSON(b []byte) error {
	var all bool
	if err := json.Unmarshal(b, &all); err == nil {
		*r = RequiredChecks{All: all}
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err == nil && names != nil {
		*r = RequiredChecks{Names: names}
		return nil
	}
	return fmt.Errorf("must be true (every check reported on the commit passed), false, or a list of check names such as [test, lint], got %s", b)
}

// ServiceStatus is the observed state of a Service, mirrored from its
// Configuration and Route.
type ServiceStatus struct {
	// ObservedGeneration is the last generation reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions Conditions `json:"conditions,omitempty"`
	// LatestCreatedRevisionName mirrors the Configuration's.
	// +optional
	LatestCreatedRevisionName string `json:"latestCreatedRevisionName,omitempty"`
	// LatestReadyRevisionName mirrors the Configuration's.
	// +optional
	LatestReadyRevisionName string `json:"latestReadyRevisionName,omitempty"`
	// Domain mirrors the Route's.
	// +optional
	Domain string `json:"domain,omitempty"`
	// Traffic mirrors the Route's.
	// +optional
	Traffic []TrafficTarget `json:"traffic,omitempty"`
}

// ServiceList is a list of Services.
//
// +kubebuilder:object:root=true
type ServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Service `json:"items"`
}
