package v1alpha1

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// RolloutHistoryLimit is how many moves a Route's audit history keeps
// (the oldest go first), so the annotation stays far below the 256 KiB
// that Kubernetes allows for all of an object's annotations.
const RolloutHistoryLimit = 30

// RolloutMove is one traffic move in a Route's audit history: who made it
// (a person, or the reconciler applying the Service's strategy), why (the
// mode or command and the event), when, and the traffic from → to. The
// history is RolloutHistoryAnnotationKey's JSON list, written in the same
// update as the move, so a move is never without its record.
//
// +kubebuilder:object:generate=false
type RolloutMove struct {
	Time   time.Time       `json:"time"`
	Actor  string          `json:"actor,omitempty"`
	Reason string          `json:"reason,omitempty"`
	From   []TrafficTarget `json:"from"`
	To     []TrafficTarget `json:"to"`
}

// RolloutHistory reads r's audit history, oldest first. A history that
// cannot be read (edited by hand) is an error naming the annotation.
func (r *Route) RolloutHistory() ([]RolloutMove, error) {
	raw := r.Annotations[RolloutHistoryAnnotationKey]
	if raw == "" {
		return nil, nil
	}
	var h []RolloutMove
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		return nil, fmt.Errorf("route %s: annotation %s is not a JSON list of moves: %w", r.Name, RolloutHistoryAnnotationKey, err)
	}
	return h, nil
}

// RecordMove appends m (its time truncated to the second) to r's audit
// history, keeping the last RolloutHistoryLimit. An unreadable history is
// replaced rather than blocking every move.
func (r *Route) RecordMove(m RolloutMove) error {
	h, err := r.RolloutHistory()
	if err != nil {
		h = nil
	}
	if m.Actor == "" {
		m.Actor = "unknown"
	}
	m.Time = m.Time.UTC().Truncate(time.Second)
	h = append(h, m)
	if len(h) > RolloutHistoryLimit {
		h = h[len(h)-RolloutHistoryLimit:]
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if r.Annotations == nil {
		r.Annotations = map[string]string{}
	}
	r.Annotations[RolloutHistoryAnnotationKey] = string(b)
	return nil
}

// ReasonTrafficMoved is the reason of the Kubernetes Event of a traffic
// move.
const ReasonTrafficMoved = "TrafficMoved"

// Message is the move in one line, as its Event says it: "octocat moved
// traffic: current=a:100% → current=a:50% next=b:50% (/rollout 50)".
func (m RolloutMove) Message() string {
	actor := m.Actor
	if actor == "" {
		actor = "unknown"
	}
	msg := fmt.Sprintf("%s moved traffic: %s → %s", actor, FormatTraffic(m.From), FormatTraffic(m.To))
	if m.Reason != "" {
		msg += " (" + m.Reason + ")"
	}
	return msg
}

// FormatTraffic writes traffic on one line: "current=hello-00001:95%
// next=hello-00002:5%"; a target that follows a configuration is
// "latest(<configuration>)".
func FormatTraffic(t []TrafficTarget) string {
	parts := make([]string, 0, len(t))
	for _, x := range t {
		rev := x.RevisionName
		if rev == "" {
			rev = "latest(" + x.ConfigurationName + ")"
		}
		if x.Name != "" {
			rev = x.Name + "=" + rev
		}
		parts = append(parts, fmt.Sprintf("%s:%d%%", rev, x.Percent))
	}
	return strings.Join(parts, " ")
}
