package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConcurrencyModel says how many requests a revision instance serves at once.
// +kubebuilder:validation:Enum=SingleThreaded;Multi
type ConcurrencyModel string

const (
	// ConcurrencySingleThreaded serializes requests: one at a time per
	// instance. The default for functions.
	ConcurrencySingleThreaded ConcurrencyModel = "SingleThreaded"
	// ConcurrencyMulti lets an instance serve requests concurrently. The
	// default for apps.
	ConcurrencyMulti ConcurrencyModel = "Multi"
)

// Revision is an immutable snapshot of code and configuration, created by a
// Configuration.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rev;revs,categories=elafros
// +kubebuilder:printcolumn:name="Configuration",type=string,JSONPath=`.metadata.labels['elafros\.dev/configuration']`
// +kubebuilder:printcolumn:name="Generation",type=string,JSONPath=`.metadata.labels['elafros\.dev/configurationGeneration']`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Revision struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is immutable: the API server refuses any change to it (kubectl
	// edit included); a change is a new Revision, made by its
	// Configuration.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a Revision's spec is immutable: change its Configuration to make a new Revision"
	Spec   RevisionSpec   `json:"spec,omitempty"`
	Status RevisionStatus `json:"status,omitempty"`
}

// RevisionSpec is copied from a Configuration's revisionTemplate.
type RevisionSpec struct {
	// BuildName is the build this revision waits for, if built from source.
	// +optional
	BuildName string `json:"buildName,omitempty"`
	// Container is the k8s core/v1 Container that serves requests. Its
	// ports, resources, volume mounts, lifecycle and tty fields are not
	// allowed: elafros sets PORT and owns the workload shape.
	// +kubebuilder:validation:XValidation:rule="!has(self.ports) || size(self.ports) == 0",message="ports: not allowed: elafros sets the PORT environment variable; listen on $PORT"
	// +kubebuilder:validation:XValidation:rule="!has(self.resources) || ((!has(self.resources.limits) || size(self.resources.limits) == 0) && (!has(self.resources.requests) || size(self.resources.requests) == 0) && (!has(self.resources.claims) || size(self.resources.claims) == 0))",message="resources: not allowed: the Elafros API leaves resources to the platform"
	// +kubebuilder:validation:XValidation:rule="!has(self.volumeMounts) || size(self.volumeMounts) == 0",message="volumeMounts: not allowed: revisions have no volumes"
	// +kubebuilder:validation:XValidation:rule="!has(self.volumeDevices) || size(self.volumeDevices) == 0",message="volumeDevices: not allowed: revisions have no volumes"
	// +kubebuilder:validation:XValidation:rule="!has(self.lifecycle)",message="lifecycle: not allowed: elafros owns the instance lifecycle"
	// +kubebuilder:validation:XValidation:rule="!(has(self.stdin) && self.stdin) && !(has(self.stdinOnce) && self.stdinOnce)",message="stdin: not allowed: revisions serve HTTP, not a terminal"
	// +kubebuilder:validation:XValidation:rule="!(has(self.tty) && self.tty)",message="tty: not allowed: revisions serve HTTP, not a terminal"
	// +kubebuilder:validation:XValidation:rule="!has(self.env) || self.env.all(e, e.name != 'PORT')",message="env: PORT is set by elafros; listen on $PORT"
	Container corev1.Container `json:"container"`
	// ConcurrencyModel is SingleThreaded (default for functions) or Multi
	// (default for apps).
	// +optional
	ConcurrencyModel ConcurrencyModel `json:"concurrencyModel,omitempty"`
	// TimeoutSeconds is the longest a request may take; past it the caller
	// gets 504. Between 1 and 3600, default 300.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`
	// ServiceAccountName the code runs as (kube backend).
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// ImageSource records a revision's provenance.
type ImageSource struct {
	// Repository the image was built from (a git URL).
	// +optional
	Repository string `json:"repository,omitempty"`
	// Commit SHA the image was built from.
	// +optional
	Commit string `json:"commit,omitempty"`
	// Context is the directory within the repository that was built.
	// +optional
	Context string `json:"context,omitempty"`
}

// RevisionStatus is the observed state of a Revision.
type RevisionStatus struct {
	// ObservedGeneration is the last generation reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, and BuildComplete when built from source.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions Conditions `json:"conditions,omitempty"`
	// ImageSource is the provenance of the image.
	// +optional
	ImageSource *ImageSource `json:"imageSource,omitempty"`
	// ImageDigest is the container image resolved to a digest.
	// +optional
	ImageDigest string `json:"imageDigest,omitempty"`
	// LogURL is where this revision's logs can be read.
	// +optional
	LogURL string `json:"logUrl,omitempty"`
}

// RevisionList is a list of Revisions.
//
// +kubebuilder:object:root=true
type RevisionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Revision `json:"items"`
}
