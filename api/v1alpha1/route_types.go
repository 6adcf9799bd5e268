package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Route is a named, long-lived HTTP endpoint that splits traffic by percent
// across revisions, and makes named targets addressable as subdomains.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rt,categories=elafros
// +kubebuilder:printcolumn:name="Domain",type=string,JSONPath=`.status.domain`
// +kubebuilder:printcolumn:name="Revisions",type=string,JSONPath=`.status.traffic[*].revisionName`
// +kubebuilder:printcolumn:name="Percents",type=string,JSONPath=`.status.traffic[*].percent`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="RolloutComplete")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Route struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RouteSpec   `json:"spec,omitempty"`
	Status RouteStatus `json:"status,omitempty"`
}

// RouteSpec is the desired traffic split. The seed's normative examples put
// it under spec.rollout.traffic (spec.md's spec.traffic is not accepted).
type RouteSpec struct {
	// Rollout holds the traffic split.
	Rollout RouteRollout `json:"rollout"`
}

// RouteRollout is the traffic split of a Route.
type RouteRollout struct {
	// Traffic lists the targets; percents are integers that total 100.
	// The API server checks what CEL can express (the same rules as
	// Validate, so kubectl and GitOps tools cannot write what the
	// embedded API refuses).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.map(t, has(t.percent) ? t.percent : 0).sum() == 100",message="the route must have traffic percent sum equal to 100"
	// +kubebuilder:validation:XValidation:rule="self.all(a, !has(a.name) || self.all(b, !has(b.name) || a.name != b.name || ((has(a.revisionName) ? a.revisionName : '') == (has(b.revisionName) ? b.revisionName : '') && (has(a.configurationName) ? a.configurationName : '') == (has(b.configurationName) ? b.configurationName : ''))))",message="the traffic targets must be unique: a name may repeat only for the same target"
	Traffic []TrafficTarget `json:"traffic"`
}

// TrafficTarget sends a percent of a Route's traffic to a revision, either
// pinned (revisionName) or following a configuration's latest ready
// revision (configurationName), and optionally names it so that it is
// addressable as <name>.<route domain>.
//
// +kubebuilder:validation:XValidation:rule="has(self.configurationName) != has(self.revisionName)",message="the route must have exactly one of revisionName or configurationName in traffic field"
type TrafficTarget struct {
	// Name makes the target addressable as a subdomain (current, next, pr-42).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`
	// RevisionName pins a revision. Exactly one of revisionName and
	// configurationName is set in spec; status has revisionName only.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	RevisionName string `json:"revisionName,omitempty"`
	// ConfigurationName follows that configuration's latestReadyRevisionName.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	ConfigurationName string `json:"configurationName,omitempty"`
	// Percent of the route's traffic, 0 to 100. 0 keeps a named target
	// addressable without sending it traffic.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int `json:"percent"`
}

// RouteStatus is the observed state of a Route.
type RouteStatus struct {
	// ObservedGeneration is the last generation reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: RolloutComplete, RolloutInProgress, TrafficDropped.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions Conditions `json:"conditions,omitempty"`
	// Domain is the host of the traffic-split route,
	// <route>.<namespace>.<domain suffix>.
	// +optional
	Domain string `json:"domain,omitempty"`
	// Traffic is the split being served, with every configurationName
	// dereferenced to a revisionName.
	// +optional
	Traffic []TrafficTarget `json:"traffic,omitempty"`
	// Rollouts are the gradual moves under way (with the
	// elafros.dev/rollout-duration annotation): the share of a
	// configuration target moving onto its newly ready revision.
	// +optional
	Rollouts []TargetRollout `json:"rollouts,omitempty"`
}

// TargetRollout is the gradual move of one configuration target's share
// onto a newly ready revision. The split reached so far is status.traffic;
// this records what it moves to and since when, so that every reconcile
// can compute the next step from the clock alone.
type TargetRollout struct {
	// ConfigurationName is the target's configuration.
	ConfigurationName string `json:"configurationName"`
	// Name is the target's name, when it has one.
	// +optional
	Name string `json:"name,omitempty"`
	// RevisionName is the revision the share moves to.
	RevisionName string `json:"revisionName"`
	// StartTime is when the move began.
	StartTime metav1.Time `json:"startTime"`
}

// RouteList is a list of Routes.
//
// +kubebuilder:object:root=true
type RouteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Route `json:"items"`
}
