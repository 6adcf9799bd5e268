package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

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
	// ServiceLabelKey names the Service that owns a Configuration or Route,
	// or that a preview Configuration previews.
	ServiceLabelKey = GroupName + "/service"
	// RepositoryLabelKey marks every object the Action applies with the
	// repository it came from, as RepositoryLabelValue encodes it, so the
	// bot finds a repository's services by selector. The full name is in
	// RepositoryAnnotationKey (a label value cannot hold "/").
	RepositoryLabelKey = GroupName + "/repository"
	// PreviewLabelKey marks a pull request's preview Configuration with the
	// pull request's number.
	PreviewLabelKey = GroupName + "/preview"

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
	// RepositoryAnnotationKey records the repository (owner/name) an
	// object was applied from.
	RepositoryAnnotationKey = GroupName + "/repository"
	// SourceDigestAnnotationKey records a digest of the working tree on
	// revision templates built by "elafros up", so that an edit makes a new
	// revision even before it is committed.
	SourceDigestAnnotationKey = GroupName + "/sourceDigest"
	// PullRequestAnnotationKey records the pull request (its number) whose
	// head a preview revision was built from, or whose merge commit a
	// revision deployed from the default branch was built from (so
	// scheduled promotion can tell that pull request how its canary goes).
	PullRequestAnnotationKey = GroupName + "/pullRequest"
	// RolloutHistoryAnnotationKey holds a Route's audit history: the last
	// traffic moves made through the deploy facade, as a JSON list.
	RolloutHistoryAnnotationKey = GroupName + "/rolloutHistory"
	// StagedRevisionAnnotationKey on a Service's Route records the last
	// revision its strategy placed (pinned, staged or started as a canary),
	// so that the strategy places each revision once.
	StagedRevisionAnnotationKey = GroupName + "/stagedRevision"
	// RolloutPausedAnnotationKey on a Service stops scheduled promotion
	// until it is removed ("/rollout pause" and "resume").
	RolloutPausedAnnotationKey = GroupName + "/rolloutPaused"
)

// ProvenanceAnnotationKeys are the revision template annotations that say
// who deployed a revision and from which commit rather than what it runs:
// a change of only these makes no new revision (a push whose image and
// configuration are unchanged moves nothing). The source digest is not
// one of them: it changes with what is built.
var ProvenanceAnnotationKeys = []string{DeployerAnnotationKey, GitCommitAnnotationKey, PullRequestAnnotationKey}

// RepositoryLabelValue encodes a repository's full name (owner/name) as a
// label value: "owner.name" (GitHub owners cannot contain a dot, so the
// first dot splits them), or, when that is longer than a label value may
// be (63) or holds other characters, "sha256-" and a prefix of its hash.
func RepositoryLabelValue(fullName string) string {
	fullName = strings.ToLower(fullName)
	v := strings.Replace(fullName, "/", ".", 1)
	ok := len(v) <= 63 && len(v) > 0
	for i, r := range v {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || i == len(v)-1 || (r != '-' && r != '_' && r != '.')) {
			ok = false
		}
	}
	if ok {
		return v
	}
	sum := sha256.Sum256([]byte(fullName))
	return "sha256-" + hex.EncodeToString(sum[:])[:40]
}

// Values of the elafros.dev/type label.
const (
	TypeFunction = "function"
	TypeApp      = "app"
)
