package router

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// errQueueFull: a SingleThreaded revision is busy and its queue is full.
var errQueueFull = errors.New("revision is single-threaded and its queue is full")

// gates holds one gate per SingleThreaded revision that has a request in
// flight or waiting; a gate nobody holds or waits for is dropped.
type gates struct {
	mu sync.Mutex
	m  map[routeKey]*gate // namespace/revision -> gate
}

// gate lets one request through at a time; the others wait in FIFO order.
// All fields are guarded by gates.mu.
type gate struct {
	refs    int // the holder and the waiters
	busy    bool
	waiters []chan struct{}
}

// acquire waits until the caller is the only request in flight for key,
// or returns errQueueFull if limit requests are already waiting, or ctx's
// error if ctx ends first (the caller then no longer waits). On success
// the caller must call release(key, g).
func (gs *gates) acquire(ctx context.Context, key routeKey, limit int) (*gate, error) {
	gs.mu.Lock()
	g := gs.m[key]
	if g == nil {
		if gs.m == nil {
			gs.m = make(map[routeKey]*gate)
		}
		g = &gate{}
		gs.m[key] = g
	}
	if !g.busy {
		g.busy = true
		g.refs++
		gs.mu.Unlock()
		return g, nil
	}
	if len(g.waiters) >= limit {
		gs.mu.Unlock()
		return nil, errQueueFull
	}
	ready := make(chan struct{})
	g.waiters = append(g.waiters, ready)
	g.refs++
	gs.mu.Unlock()

	select {
	case <-ready:
		return g, nil
	case <-ctx.Done():
	}
	gs.mu.Lock()
	if i := slices.Index(g.waiters, ready); i >= 0 {
		g.waiters = slices.Delete(g.waiters, i, i+1)
		gs.unref(key, g)
		gs.mu.Unlock()
		return nil, ctx.Err()
	}
	gs.mu.Unlock()
	// The gate was handed over while ctx ended: pass it on.
	gs.release(key, g)
	return nil, ctx.Err()
}

// release hands the gate to the first waiter, or opens it.
func (gs *gates) release(key routeKey, g *gate) {
	gs.mu.Lock()
	if len(g.waiters) > 0 {
		next := g.waiters[0]
		g.waiters = slices.Delete(g.waiters, 0, 1)
		close(next)
	} else {
		g.busy = false
	}
	gs.unref(key, g)
	gs.mu.Unlock()
}

// unref drops one reference to g; gs.mu must be held.
func (gs *gates) unref(key routeKey, g *gate) {
	g.refs--
	if g.refs == 0 && gs.m[key] == g {
		delete(gs.m, key)
	}
}

// queued reports how many requests wait for key.
func (gs *gates) queued(key routeKey) int {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g := gs.m[key]; g != nil {
		return len(g.waiters)
	}
	return 0
}
