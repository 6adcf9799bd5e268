package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConditionType is the type of a status condition.
type ConditionType string

// Condition types, from the seed's errors.md.
const (
	// ConditionReady is a Revision's (and a Service's) readiness to serve.
	ConditionReady ConditionType = "Ready"
	// ConditionBuildComplete mirrors a Revision's build outcome.
	ConditionBuildComplete ConditionType = "BuildComplete"
	// ConditionBuildFailed is True when the Revision's build failed; it
	// copies the build's reason and message.
	ConditionBuildFailed ConditionType = "BuildFailed"
	// ConditionLatestRevisionReady tells whether a Configuration's latest
	// created Revision became Ready.
	ConditionLatestRevisionReady ConditionType = "LatestRevisionReady"
	// ConditionRolloutComplete is True when a Route's status matches its spec.
	ConditionRolloutComplete ConditionType = "RolloutComplete"
	// ConditionRolloutInProgress is True while traffic migrates.
	ConditionRolloutInProgress ConditionType = "RolloutInProgress"
	// ConditionTrafficDropped is True when a traffic target cannot be served.
	ConditionTrafficDropped ConditionType = "TrafficDropped"
	// ConditionFailed is True on a Revision whose container cannot be
	// fetched (errors.md: "Container image not present in repository"); it
	// repeats Ready's reason and message, so that a tool can tell a failure
	// that needs the user from one still in progress.
	ConditionFailed ConditionType = "Failed"
)

// Condition reasons, from the seed's errors.md, plus the few the
// reconciler needs beyond it.
const (
	ReasonContainerMissing         = "ContainerMissing"
	ReasonBuildFailed              = "BuildFailed"
	ReasonBuildStepFailed          = "BuildStepFailed"
	ReasonBuilding                 = "Building"
	ReasonRevisionMissing          = "RevisionMissing"
	ReasonConfigurationMissing     = "ConfigurationMissing"
	ReasonRevisionNotReady         = "RevisionNotReady"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonNoDeployment             = "NoDeployment"
	ReasonDeploying                = "Deploying"
	ReasonInactive                 = "Inactive"
	ReasonRolloutInProgress        = "RolloutInProgress"
)

// MessageStartingInstances is the seed's message on a Revision that is
// still materializing.
const MessageStartingInstances = "Starting Instances"

// Messages the seed's errors.md writes; a hint of what to do may follow.
const (
	// MessageBuildFailed is Ready's message when the build failed.
	MessageBuildFailed = "Unable to start because container is missing and build failed."
	// MessageLatestRevisionDeleted is LatestRevisionReady's message when
	// the latest (or latest ready) Revision was deleted.
	MessageLatestRevisionDeleted = "The latest Revision appears to have been deleted."
	// MessageTrafficSplitStuck starts RolloutInProgress's message when the
	// split could not be applied for the progress deadline (%d seconds).
	MessageTrafficSplitStuck = "Unable to update traffic split for more than %d seconds."
)

// NotFoundRevisionName is written into status.traffic[].revisionName when
// the target's revision or configuration cannot be found (errors.md).
const NotFoundRevisionName = "Not found"

// Condition is one status condition. Unlike metav1.Condition, reason and
// lastTransitionTime are optional, as the seed writes them.
type Condition struct {
	// Type of the condition, e.g. Ready or RolloutComplete.
	Type ConditionType `json:"type"`
	// Status is True, False or Unknown.
	// +kubebuilder:validation:Enum=True;False;Unknown
	Status corev1.ConditionStatus `json:"status"`
	// Reason is a short CamelCase cause.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message tells a person what happened and what to do.
	// +optional
	Message string `json:"message,omitempty"`
	// LastTransitionTime is when Status last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// Failed reports a False condition whose reason waiting will not clear
// (ContainerMissing, BuildFailed, ExitCode:N, ...), as opposed to one that
// is still in progress (Deploying, Building, or no reason).
func (c *Condition) Failed() bool {
	if c == nil || c.Status != corev1.ConditionFalse {
		return false
	}
	switch c.Reason {
	case "", ReasonDeploying, ReasonBuilding:
		return false
	}
	return true
}

// Conditions is a list of conditions, at most one per type.
type Conditions []Condition

// Get returns the condition of type t, or nil.
func (cs Conditions) Get(t ConditionType) *Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// IsTrue reports whether the condition of type t has status True.
func (cs Conditions) IsTrue(t ConditionType) bool {
	c := cs.Get(t)
	return c != nil && c.Status == corev1.ConditionTrue
}

// IsFalse reports whether the condition of type t has status False.
func (cs Conditions) IsFalse(t ConditionType) bool {
	c := cs.Get(t)
	return c != nil && c.Status == corev1.ConditionFalse
}

// Set adds or replaces the condition of c.Type. The transition time moves
// only when the status changes, so that re-setting an unchanged condition
// writes nothing new (a reconcile of an unchanged world must not write).
// It reports whether anything changed.
func (cs *Conditions) Set(c Condition, now metav1.Time) bool {
	if old := cs.Get(c.Type); old != nil {
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return false
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = &now
		}
		*old = c
		return true
	}
	c.LastTransitionTime = &now
	*cs = append(*cs, c)
	return true
}

// Remove deletes the condition of type t and reports whether it was there.
func (cs *Conditions) Remove(t ConditionType) bool {
	for i := range *cs {
		if (*cs)[i].Type == t {
			*cs = append((*cs)[:i], (*cs)[i+1:]...)
			return true
		}
	}
	return false
}
