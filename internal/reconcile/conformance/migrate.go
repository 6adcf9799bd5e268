package conformance

import (
	"sync/atomic"
	"time"
)

// clock is the real time moved forward by Advance, for deadline scenarios:
// real, so that a server's own timestamps (creationTimestamp) compare with
// it however long the backend took to start.
type clock struct{ offset atomic.Int64 }

func timeNow() *clock { return &clock{} }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by secs seconds.
func (c *clock) Advance(secs int) { c.offset.Add(int64(time.Duration(secs) * time.Second)) }

// frozenClock stands still unless advanced: a gradual rollout's split is
// a function of the time since it began, so the suite controls that time
// exactly, however long a backend takes to make a revision Ready. It
// starts at a whole second, as the API server's timestamps are.
type frozenClock struct{ at atomic.Int64 }

func newFrozenClock() *frozenClock {
	c := &frozenClock{}
	c.at.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

func (c *frozenClock) Now() time.Time { return time.Unix(0, c.at.Load()) }

// Advance moves the clock forward by secs seconds.
func (c *frozenClock) Advance(secs int) { c.at.Add(int64(time.Duration(secs) * time.Second)) }
