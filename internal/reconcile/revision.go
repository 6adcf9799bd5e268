package reconcile

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// pollInterval is how soon a revision that is starting or building is
// looked at again.
const pollInterval = time.Second

func (r *Reconciler) reconcileRevision(ctx context.Context, ns, name string) (Result, error) {
	rev, err := getOrNil[*v1alpha1.Revision](ctx, r.store, store.KindRevision, ns, name)
	if err != nil || rev == nil {
		return Result{}, err
	}
	st := rev.Status.DeepCopy()
	st.ObservedGeneration = rev.Generation
	st.LogURL = r.opts.LogURL(rev)
	res, err := r.revisionStatus(ctx, rev, st)
	if err != nil {
		return res, err
	}
	if !equality.Semantic.DeepEqual(*st, rev.Status) {
		c := rev.DeepCopy()
		c.Status = *st
		if _, err := r.store.UpdateStatus(ctx, c); err != nil {
			return res, err
		}
	}
	return res, nil
}

// revisionStatus computes the revision's status into st.
func (r *Reconciler) revisionStatus(ctx context.Context, rev *v1alpha1.Revision, st *v1alpha1.RevisionStatus) (Result, error) {
	now := r.now()
	set := func(t v1alpha1.ConditionType, s corev1.ConditionStatus, reason, msg string) {
		st.Conditions.Set(v1alpha1.Condition{Type: t, Status: s, Reason: reason, Message: msg}, now)
	}
	image := rev.Spec.Container.Image
	switch {
	case pinned(rev, st):
		// A revision is pinned once (the seed's immutable snapshot): the
		// digest it first resolved to is what every later start runs,
		// whatever its tag points to by then, and a completed build is
		// done for good, even for a builder that has never heard of it
		// (a restarted control plane).
		image = st.ImageDigest
	case rev.Spec.BuildName != "":
		if r.builder == nil {
			set(v1alpha1.ConditionBuildComplete, corev1.ConditionFalse, v1alpha1.ReasonBuildFailed, "no builder is configured")
			set(v1alpha1.ConditionReady, corev1.ConditionFalse, v1alpha1.ReasonContainerMissing,
				fmt.Sprintf("%s Revision needs build %q but this reconciler has no builder; run it where builds are enabled.", v1alpha1.MessageBuildFailed, rev.Spec.BuildName))
			return Result{}, nil
		}
		bs, found, err := r.builder.Status(ctx, rev.Namespace, rev.Spec.BuildName)
		if err != nil {
			return Result{}, fmt.Errorf("reading build %s: %w", rev.Spec.BuildName, err)
		}
		switch {
		case !found || !bs.Done:
			set(v1alpha1.ConditionBuildComplete, corev1.ConditionUnknown, v1alpha1.ReasonBuilding, fmt.Sprintf("Build %q is running.", rev.Spec.BuildName))
			set(v1alpha1.ConditionReady, corev1.ConditionFalse, v1alpha1.ReasonBuilding, fmt.Sprintf("Waiting for build %q.", rev.Spec.BuildName))
			return Result{RequeueAfter: pollInterval, InProgress: true}, nil
		case bs.Failed:
			// errors.md: BuildFailed copies the build's reason and message
			// (BuildStepFailed, "Step XYZ failed with error message: ..."),
			// and Ready says the container is missing because of it.
			reason := bs.Reason
			if reason == "" {
				reason = v1alpha1.ReasonBuildStepFailed
			}
			set(v1alpha1.ConditionBuildComplete, corev1.ConditionFalse, reason, bs.Message)
			set(v1alpha1.ConditionBuildFailed, corev1.ConditionTrue, reason, bs.Message)
			set(v1alpha1.ConditionReady, corev1.ConditionFalse, v1alpha1.ReasonContainerMissing,
				v1alpha1.MessageBuildFailed+" "+bs.Message)
			return Result{}, nil
		}
		set(v1alpha1.ConditionBuildComplete, corev1.ConditionTrue, "", "")
		st.Conditions.Remove(v1alpha1.ConditionBuildFailed)
		if bs.Image != "" {
			image = bs.Image
			st.ImageDigest = bs.Image
		}
		if bs.Source != nil {
			st.ImageSource = bs.Source.DeepCopy()
		}
	}
	if rev.Annotations[RetiredAnnotation] == "true" {
		if err := r.runtime.Retire(ctx, rev); err != nil {
			return Result{}, fmt.Errorf("retiring %s: %w", rev.Name, err)
		}
		set(ConditionActive, corev1.ConditionFalse, v1alpha1.ReasonInactive,
			"No route has referenced this revision for a while; its workload was removed. Referencing it again restarts it.")
		return Result{}, nil
	}
	st.Conditions.Remove(ConditionActive)
	ws, err := r.runtime.Materialize(ctx, rev, image)
	if err != nil {
		return Result{}, fmt.Errorf("materializing %s: %w", rev.Name, err)
	}
	// The runtime may narrow the pin (an index's digest to the digest of
	// the image it runs for its platform); it never moves it elsewhere,
	// since it was given the pinned digest to run.
	if ws.ImageDigest != "" {
		st.ImageDigest = ws.ImageDigest
	}
	// errors.md: an image that cannot be fetched is Failed as well as not
	// Ready, with the same reason and message.
	if ws.Reason == v1alpha1.ReasonContainerMissing {
		set(v1alpha1.ConditionFailed, corev1.ConditionTrue, ws.Reason, ws.Message)
	} else {
		st.Conditions.Remove(v1alpha1.ConditionFailed)
	}
	switch {
	case ws.Ready:
		set(v1alpha1.ConditionReady, corev1.ConditionTrue, "", "")
		return Result{}, nil
	case ws.Reason != "":
		set(v1alpha1.ConditionReady, corev1.ConditionFalse, ws.Reason, ws.Message)
		return Result{RequeueAfter: 5 * pollInterval}, nil
	}
	// Still starting: the seed's "Starting Instances", until the deadline.
	since := rev.CreationTimestamp.Time
	if c := st.Conditions.Get(v1alpha1.ConditionReady); c != nil && c.Status == corev1.ConditionTrue && c.LastTransitionTime != nil {
		since = c.LastTransitionTime.Time
	}
	if r.opts.Now().Sub(since) > r.opts.ProgressDeadline {
		set(v1alpha1.ConditionReady, corev1.ConditionFalse, v1alpha1.ReasonProgressDeadlineExceeded,
			fmt.Sprintf("Unable to create pods for more than %d seconds.", int(r.opts.ProgressDeadline.Seconds())))
	} else {
		set(v1alpha1.ConditionReady, corev1.ConditionFalse, v1alpha1.ReasonDeploying, v1alpha1.MessageStartingInstances)
	}
	return Result{RequeueAfter: pollInterval, InProgress: true}, nil
}

// pinned reports whether rev already runs a fixed digest: one was
// recorded, and it is not a build still to finish.
func pinned(rev *v1alpha1.Revision, st *v1alpha1.RevisionStatus) bool {
	if st.ImageDigest == "" {
		return false
	}
	return rev.Spec.BuildName == "" || st.Conditions.IsTrue(v1alpha1.ConditionBuildComplete)
}

// NoDeployment is the state of a revision whose workload the backend
// refused to create (a quota, an admission policy, a process that cannot
// be started), with errors.md's message; err says what refused it.
func NoDeployment(workload string, err error) WorkloadState {
	msg := fmt.Sprintf("The controller could not create a deployment named %s.", workload)
	if err != nil {
		msg += " " + err.Error()
	}
	return WorkloadState{Reason: v1alpha1.ReasonNoDeployment, Message: msg}
}
