package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// HistoryLimit is how many moves a Route's audit history keeps (the
// oldest go first), so the annotation stays far below the 256 KiB that
// Kubernetes allows for all of an object's annotations.
const HistoryLimit = 30

// Move is one traffic move in a Route's audit history: who made it, why
// (the mode or command and the event), when, and the traffic from → to.
type Move struct {
	Time   time.Time                `json:"time"`
	Actor  string                   `json:"actor,omitempty"`
	Reason string                   `json:"reason,omitempty"`
	From   []v1alpha1.TrafficTarget `json:"from"`
	To     []v1alpha1.TrafficTarget `json:"to"`
}

// History reads a Route's audit history, oldest first. A history that
// cannot be read (edited by hand) is an error naming the annotation.
func History(rt *v1alpha1.Route) ([]Move, error) {
	raw := rt.Annotations[v1alpha1.RolloutHistoryAnnotationKey]
	if raw == "" {
		return nil, nil
	}
	var h []Move
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		return nil, fmt.Errorf("route %s: annotation %s is not a JSON list of moves: %w", rt.Name, v1alpha1.RolloutHistoryAnnotationKey, err)
	}
	return h, nil
}

// record appends the move from → to to rt's history annotation.
func (c *Client) record(rt *v1alpha1.Route, from, to []v1alpha1.TrafficTarget) error {
	h, err := History(rt)
	if err != nil {
		h = nil // an unreadable history is replaced rather than blocking every move
	}
	actor := c.actor
	if actor == "" {
		actor = "unknown"
	}
	h = append(h, Move{Time: c.now().UTC().Truncate(time.Second), Actor: actor, Reason: c.reason, From: from, To: to})
	if len(h) > HistoryLimit {
		h = h[len(h)-HistoryLimit:]
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if rt.Annotations == nil {
		rt.Annotations = map[string]string{}
	}
	rt.Annotations[v1alpha1.RolloutHistoryAnnotationKey] = string(b)
	return nil
}

// RouteHistory reads the audit history of a route by name.
func (c *Client) RouteHistory(ctx context.Context, route string) ([]Move, error) {
	o, err := c.store.Get(ctx, store.KindRoute, c.ns(), route)
	if err != nil {
		return nil, err
	}
	return History(o.(*v1alpha1.Route))
}
