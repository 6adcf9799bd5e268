package v1alpha1

// Labels and annotations that the system sets or reads.
const (
	// ConfigurationLabelKey names the Configuration that created a Revision.
	ConfigurationLabelKey = GroupName + "/configuration"
	// ConfigurationGenerationLabelKey records the Configuration generation
	// that a Revision was created from (its provenance).
	ConfigurationGenerationLabelKey = GroupName + "/configurationGeneration"
	// TypeLabelKey is the convention label "function" or "app" on revisions,
	// used to list revisions by type. It also picks the default
	// concurrencyModel.
	TypeLabelKey = GroupName + "/type"
	// RouteLabelKey marks objects (workloads, HTTPRoutes) owned by a Route.
	RouteLabelKey = GroupName + "/route"
	// ServiceLabelKey names the Service that owns a Configuration or Route.
	ServiceLabelKey = GroupName + "/service"

	// RolloutDurationAnnotationKey on a Route spreads the move of a
	// configuration target's share onto a newly ready revision over that
	// duration (a Go duration such as 90s or 5m; absent or 0s: at once).
	// Knative's name for it is serving.knative.dev/rollout-duration. A
	// Service sets it on its Route from spec.rollout.duration.
	RolloutDurationAnnotationKey = GroupName + "/rollout-duration"

	// DeployerAnnotationKey records who deployed a revision (a GitHub login).
	DeployerAnnotationKey = GroupName + "/deployer"
	// GitCommitAnnotationKey records the commit a revision was built from.
	GitCommitAnnotationKey = GroupName + "/gitCommit"
)

// Values of the elafros.dev/type label.
const (
	TypeFunction = "function"
	TypeApp      = "app"
)
