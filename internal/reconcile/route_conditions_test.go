package reconcile

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
)

// TestRouteConditions is the Route's status decision without a store: what
// reconcileRoute decided (targets, held, moving) in, conditions and the
// requeue out.
func TestRouteConditions(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := metav1.NewTime(at)
	const deadline = 120 * time.Second
	target := func(name, rev string, pct int, ready bool, why string) resolvedTarget {
		return resolvedTarget{TrafficTarget: v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}, ready: ready, why: why}
	}
	current := target("current", "web-00001", 100, true, "")
	next := target("next", "web-00002", 0, false, "Starting Instances")
	starting := target("", "web-00002", 50, false, "Starting Instances")
	crashed := starting
	crashed.failed, crashed.why = true, "Container failed with: boom"
	missing := resolvedTarget{TrafficTarget: v1alpha1.TrafficTarget{RevisionName: v1alpha1.NotFoundRevisionName, Percent: 50},
		missingReason: v1alpha1.ReasonConfigurationMissing, why: `Configuration "gone" referenced in traffic not found.`}
	cond := func(typ v1alpha1.ConditionType, status corev1.ConditionStatus, reason, msg string) v1alpha1.Condition {
		return v1alpha1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: &now}
	}
	complete := cond(v1alpha1.ConditionRolloutComplete, corev1.ConditionTrue, "", "")
	idle := cond(v1alpha1.ConditionRolloutInProgress, corev1.ConditionFalse, "", "")
	inProgress := func(reason, msg string) []v1alpha1.Condition {
		return []v1alpha1.Condition{
			cond(v1alpha1.ConditionRolloutComplete, corev1.ConditionFalse, reason, msg),
			cond(v1alpha1.ConditionRolloutInProgress, corev1.ConditionTrue, reason, msg),
		}
	}
	waitMsg := `Waiting for revision "web-00002" before moving 50% of the traffic: Starting Instances`

	for _, tc := range []struct {
		name    string
		before  v1alpha1.RouteStatus
		outcome routeOutcome
		want    []v1alpha1.Condition
		wantRes Result
	}{{
		name:    "everything Ready and served: complete",
		outcome: routeOutcome{targets: []resolvedTarget{current}},
		want:    []v1alpha1.Condition{complete, idle},
	}, {
		name:    "a 0% target not Ready yet: not complete, polled",
		outcome: routeOutcome{targets: []resolvedTarget{current, next}},
		want: []v1alpha1.Condition{
			cond(v1alpha1.ConditionRolloutComplete, corev1.ConditionFalse, v1alpha1.ReasonRevisionNotReady,
				`Target "next" (revision "web-00002") is not addressable until it is Ready: Starting Instances`),
			idle,
		},
		wantRes: Result{RequeueAfter: pollInterval, InProgress: true},
	}, {
		name:    "a share waiting for its revision: the split is held",
		outcome: routeOutcome{targets: []resolvedTarget{current, starting}, waiting: []resolvedTarget{starting}},
		want:    inProgress(v1alpha1.ReasonRevisionNotReady, waitMsg),
		wantRes: Result{RequeueAfter: pollInterval, InProgress: true},
	}, {
		name:    "a share waiting for a revision that failed: not in progress for a one-shot run",
		outcome: routeOutcome{targets: []resolvedTarget{current, crashed}, waiting: []resolvedTarget{crashed}},
		want:    inProgress(v1alpha1.ReasonRevisionNotReady, `Waiting for revision "web-00002" before moving 50% of the traffic: Container failed with: boom`),
		wantRes: Result{RequeueAfter: pollInterval},
	}, {
		name:    "a served revision that lost readiness keeps its share",
		before:  v1alpha1.RouteStatus{Traffic: []v1alpha1.TrafficTarget{{RevisionName: "web-00002", Percent: 50}}},
		outcome: routeOutcome{targets: []resolvedTarget{starting}, waiting: []resolvedTarget{starting}},
		want: inProgress(v1alpha1.ReasonRevisionNotReady,
			`Revision "web-00002" keeps its 50% but is not Ready (Starting Instances); its requests fail until it recovers.`),
		wantRes: Result{RequeueAfter: pollInterval, InProgress: true},
	}, {
		name:    "a share returned during a gradual move",
		outcome: routeOutcome{targets: []resolvedTarget{current, starting}, waiting: []resolvedTarget{starting}, returned: `"web-00001"`},
		want: inProgress(v1alpha1.ReasonRevisionNotReady,
			`Revision "web-00002" stopped being Ready during the rollout (Starting Instances); its share returned to "web-00001".`),
		wantRes: Result{RequeueAfter: pollInterval, InProgress: true},
	}, {
		name: "held past the progress deadline",
		before: v1alpha1.RouteStatus{Conditions: v1alpha1.Conditions{{Type: v1alpha1.ConditionRolloutInProgress,
			Status: corev1.ConditionTrue, Reason: v1alpha1.ReasonRevisionNotReady, LastTransitionTime: &metav1.Time{Time: at.Add(-deadline - time.Second)}}}},
		outcome: routeOutcome{targets: []resolvedTarget{current, starting}, waiting: []resolvedTarget{starting}},
		want: []v1alpha1.Condition{
			cond(v1alpha1.ConditionRolloutComplete, corev1.ConditionFalse, v1alpha1.ReasonProgressDeadlineExceeded,
				"Unable to update traffic split for more than 120 seconds. "+waitMsg),
			{Type: v1alpha1.ConditionRolloutInProgress, Status: corev1.ConditionTrue, Reason: v1alpha1.ReasonProgressDeadlineExceeded,
				Message: "Unable to update traffic split for more than 120 seconds. " + waitMsg, LastTransitionTime: &metav1.Time{Time: at.Add(-deadline - time.Second)}},
		},
		wantRes: Result{RequeueAfter: pollInterval, InProgress: true},
	}, {
		name:    "moving gradually",
		outcome: routeOutcome{targets: []resolvedTarget{current}, moving: &migration{revision: "web-00002", percent: 20, share: 100, duration: time.Minute, next: 6 * time.Second}},
		want:    inProgress(v1alpha1.ReasonRolloutInProgress, `Moving 100% of the traffic to revision "web-00002" over 1m0s: 20% so far.`),
		wantRes: Result{RequeueAfter: 6 * time.Second, InProgress: true},
	}, {
		name:    "a missing target with nothing served: dropped, reported as it is",
		outcome: routeOutcome{targets: []resolvedTarget{missing}},
		want: []v1alpha1.Condition{
			cond(v1alpha1.ConditionRolloutComplete, corev1.ConditionFalse, v1alpha1.ReasonConfigurationMissing, missing.why),
			idle,
			cond(v1alpha1.ConditionTrafficDropped, corev1.ConditionTrue, v1alpha1.ReasonConfigurationMissing, missing.why),
		},
	}, {
		name:    "a missing target while a split is served: held",
		outcome: routeOutcome{targets: []resolvedTarget{current, missing}, waiting: []resolvedTarget{missing}},
		want: append(inProgress(v1alpha1.ReasonConfigurationMissing, missing.why+" The previous split keeps serving."),
			cond(v1alpha1.ConditionTrafficDropped, corev1.ConditionTrue, v1alpha1.ReasonConfigurationMissing, missing.why)),
		wantRes: Result{RequeueAfter: pollInterval, InProgress: true},
	}, {
		name:    "TrafficDropped goes once the target is back",
		before:  v1alpha1.RouteStatus{Conditions: v1alpha1.Conditions{cond(v1alpha1.ConditionTrafficDropped, corev1.ConditionTrue, v1alpha1.ReasonConfigurationMissing, "")}},
		outcome: routeOutcome{targets: []resolvedTarget{current}},
		want:    []v1alpha1.Condition{complete, idle},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.before.DeepCopy()
			res := routeConditions(st, tc.outcome, now, at, deadline)
			sorted := func(cs v1alpha1.Conditions) []v1alpha1.Condition {
				out := append([]v1alpha1.Condition(nil), cs...)
				for i := range out {
					for j := i + 1; j < len(out); j++ {
						if out[j].Type < out[i].Type {
							out[i], out[j] = out[j], out[i]
						}
					}
				}
				return out
			}
			if diff := cmp.Diff(sorted(tc.want), sorted(st.Conditions)); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRes, res); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.before.Traffic, st.Traffic); diff != "" {
				t.Errorf("routeConditions changed the traffic (-before +after):\n%s", diff)
			}
		})
	}
}
