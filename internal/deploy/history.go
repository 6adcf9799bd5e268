package deploy

import (
	"context"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// HistoryLimit is how many moves a Route's audit history keeps.
const HistoryLimit = v1alpha1.RolloutHistoryLimit

// Move is one traffic move in a Route's audit history: who made it, why,
// when, and the traffic from → to.
type Move = v1alpha1.RolloutMove

// History reads a Route's audit history, oldest first.
func History(rt *v1alpha1.Route) ([]Move, error) { return rt.RolloutHistory() }

// record appends the move from → to, as the client's actor's, to rt's
// history annotation.
func (c *Client) record(rt *v1alpha1.Route, from, to []v1alpha1.TrafficTarget) error {
	return rt.RecordMove(Move{Time: c.now(), Actor: c.actor, Reason: c.reason, From: from, To: to})
}

// RouteHistory reads the audit history of a route by name.
func (c *Client) RouteHistory(ctx context.Context, route string) ([]Move, error) {
	o, err := c.store.Get(ctx, store.KindRoute, c.ns(), route)
	if err != nil {
		return nil, err
	}
	return History(o.(*v1alpha1.Route))
}
