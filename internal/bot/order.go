package bot

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
)

// sequencer puts the writes of concurrent commands in the order the bot
// accepted them, without making whole commands take turns.
//
// A command's GitHub round trips (permission, pull request, checks, the
// answers) take tens of milliseconds each; made in turn, 50 commands a
// second on one route cannot keep up. So every command reads concurrently,
// and only its write waits for its turn: the write of a command goes after
// every command accepted before it that may write the same service, and
// before those accepted after it. The route thus ends in the state of the
// last accepted command that moved it, and one command's write never
// conflicts with another's (only with the reconciler's status writes,
// which deploy's conflict retry absorbs).
//
// A ticket is taken when a delivery is accepted (its place in the order),
// queued once the journal holds it (in ticket order, so the work queue's
// FIFO order is the acceptance order), claimed by the worker that carries
// it out, keyed once the worker knows which services it may write, and
// done when it has written or knows it will not. A command waits only for
// earlier tickets that are in a worker's hands or on their way to one, so
// the wait cannot deadlock the workers: an earlier ticket in the queue is
// ahead of the later one in the queue's FIFO order.
type sequencer struct {
	mu      sync.Mutex
	next    uint64
	tickets map[string]*ticket // by delivery: every ticket not done
	// accepting are the tickets not yet queued, in order: a ticket is
	// queued only after all those before it are queued or dropped.
	accepting []*ticket
	// writes are the route writes waiting for their turn, by route, in
	// ticket order: the first whose turn comes takes with it those after
	// it whose turn would come next, and writes them all at once.
	writes map[string][]*write
	// changed is closed (and replaced) whenever a ticket moves on, to wake
	// the commands waiting for their turn.
	changed chan struct{}
}

// write is a command's change of a route, waiting for its turn or taken
// into a batch.
type write struct {
	t     *ticket
	route string
	op    deploy.Op
	// actor and reason are the command's, for the route's audit history.
	actor, reason string
	taken         bool
	// began is when its batch's write began (set with taken, under the
	// sequencer's lock), for the phase metrics.
	began time.Time
	done  chan struct{} // closed when res is set
	res   writeResult
}

type writeResult struct {
	after  *v1alpha1.Route
	before []v1alpha1.TrafficTarget
	err    error
}

type ticketState int

const (
	recording ticketState = iota // accepted; the journal is writing it
	recorded                     // in the journal, waiting to be queued in order
	queued                       // in the work queue
	claimed                      // a worker carries it out; what it writes is not known yet
	keyed                        // what it may write is known
	done                         // written, or will not write
)

type ticket struct {
	seq      uint64
	delivery string
	state    ticketState
	entry    Entry
	// replayed tickets were not taken at acceptance (a replay of the
	// journal at start): they wait only for tickets already claimed, as
	// an earlier ticket queued behind them could otherwise never reach a
	// worker.
	replayed bool
	keys     []string // the services it may write, once keyed
	// claimed is when a worker took it (for the phase metrics); set by
	// that worker only.
	claimed time.Time
}

func newSequencer() *sequencer {
	return &sequencer{tickets: map[string]*ticket{}, writes: map[string][]*write{}, changed: make(chan struct{})}
}

// wake tells the waiting commands that something moved on. s.mu is held.
func (s *sequencer) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// accept takes a ticket for a delivery being accepted; stamp runs under
// the lock, so that what it stamps (the time received) is in ticket order.
func (s *sequencer) accept(delivery string, stamp func()) *ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	t := &ticket{seq: s.next, delivery: delivery, state: recording}
	if stamp != nil {
		stamp()
	}
	s.accepting = append(s.accepting, t)
	return t
}

// recorded says the journal holds t's entry (ok) or will not carry it out
// (not ok: not recorded, or a delivery seen before). The tickets whose
// turn it is are queued with enqueue, in order; queued says whether a
// delivery made it into the work queue (one that did not, with the queue
// full, stays pending in the journal and gets a ticket when replayed).
func (s *sequencer) recorded(t *ticket, e Entry, ok bool, enqueue func(Entry), queuedOK func(delivery string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		t.state, t.entry = recorded, e
		s.tickets[t.delivery] = t
	} else {
		t.state = done
	}
	for len(s.accepting) > 0 && s.accepting[0].state != recording {
		h := s.accepting[0]
		s.accepting = s.accepting[1:]
		if h.state != recorded {
			continue
		}
		h.state = queued
		// The worker that takes it claims it under s.mu, which is held:
		// if it is not running now, it was never queued.
		enqueue(h.entry)
		if !queuedOK(h.delivery) {
			s.finish(h)
			s.wake() // a ticket done may let a write go
		}
		h.entry = Entry{} // the worker has its own copy
	}
	// Recording and queueing let no write go (an earlier ticket being
	// recorded or queued holds up as much as one claimed), so the waiting
	// writes are not woken for them: only keys and releases wake them.
}

// claim is a worker taking delivery; a delivery without a ticket (a
// replay) gets one after every ticket there is.
func (s *sequencer) claim(delivery string) *ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tickets[delivery]
	if t == nil || t.state == done {
		s.next++
		t = &ticket{seq: s.next, delivery: delivery, replayed: true}
		s.tickets[delivery] = t
	}
	t.state = claimed // holds up the same writes as queued did: no wake
	return t
}

// key says which services t may write; it waits for nothing.
func (s *sequencer) key(t *ticket, services ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.state == done {
		return
	}
	t.keys, t.state = slices.Clone(services), keyed
	if len(services) == 0 {
		s.finish(t)
	}
	s.wake()
}

// turn waits until every ticket before t that may write one of its
// services is done, so that t's write follows theirs.
func (s *sequencer) turn(ctx context.Context, t *ticket) error {
	for {
		s.mu.Lock()
		ch, ok := s.changed, s.clear(t)
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// clear says no earlier ticket stands in t's way. s.mu is held.
func (s *sequencer) clear(t *ticket) bool { return s.clearBut(t, nil) }

// clearBut is clear with the tickets of batch taken as done. s.mu is held.
func (s *sequencer) clearBut(t *ticket, batch []*write) bool {
	for _, u := range s.tickets {
		if u.seq >= t.seq || u.state == done || slices.ContainsFunc(batch, func(w *write) bool { return w.t == u }) {
			continue
		}
		switch u.state {
		case recording, recorded:
			// Not possible before a queued ticket (they are queued in
			// order); a replayed one does not wait for them.
			if !t.replayed {
				return false
			}
		case queued:
			if !t.replayed {
				return false
			}
		case claimed:
			return false
		case keyed:
			for _, k := range u.keys {
				if slices.Contains(t.keys, k) {
					return false
				}
			}
		}
	}
	return true
}

// release marks t done: it has written, or will not.
func (s *sequencer) release(t *ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.state != done {
		s.finish(t)
		s.wake()
	}
}

// finish marks t done and forgets it. s.mu is held.
func (s *sequencer) finish(t *ticket) {
	t.state = done
	if s.tickets[t.delivery] == t {
		delete(s.tickets, t.delivery)
	}
}

// write waits for w's turn and carries it out with apply, together with
// the writes to the same route whose turn comes right after (one read and
// one write of the route for all of them, so that a route as busy as 50
// commands a second is not limited by a round trip per command). Or it
// finds w taken into such a batch by an earlier write, and waits for it.
func (s *sequencer) write(ctx context.Context, w *write, apply func(context.Context, []*write)) writeResult {
	w.done = make(chan struct{})
	s.mu.Lock()
	s.writes[w.route] = append(s.writes[w.route], w)
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if w.taken {
			s.mu.Unlock()
			select {
			case <-w.done:
				return w.res
			case <-ctx.Done():
				// The batch carries on in its leader's hands; this
				// command is shutting down and stays pending.
				return writeResult{err: ctx.Err()}
			}
		}
		if s.clear(w.t) {
			batch := s.gather(w)
			s.mu.Unlock()
			apply(ctx, batch)
			s.mu.Lock()
			for _, x := range batch {
				close(x.done)
				if x != w && len(x.t.keys) <= 1 {
					// The others' tickets are done now; w's is released
					// by its command, as is one writing several routes
					// (a closed PR's), after its other writes.
					s.finish(x.t)
				}
			}
			s.wake()
			s.mu.Unlock()
			return w.res
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			if !w.taken {
				s.writes[w.route] = slices.DeleteFunc(s.writes[w.route], func(x *write) bool { return x == w })
				if len(s.writes[w.route]) == 0 {
					delete(s.writes, w.route)
				}
				s.mu.Unlock()
				return writeResult{err: ctx.Err()}
			}
			s.mu.Unlock()
		}
	}
}

// gather takes first (whose turn it is) and the writes to its route
// whose turn would come once those taken are done, in ticket order. s.mu
// is held.
func (s *sequencer) gather(first *write) []*write {
	waiting := s.writes[first.route]
	slices.SortFunc(waiting, func(a, b *write) int { return cmpSeq(a.t.seq, b.t.seq) })
	batch := []*write{first}
	for _, x := range waiting {
		if x == first || x.t.seq < first.t.seq {
			continue
		}
		if !s.clearBut(x.t, batch) {
			break
		}
		batch = append(batch, x)
	}
	now := time.Now()
	for _, x := range batch {
		x.taken, x.began = true, now
	}
	s.writes[first.route] = slices.DeleteFunc(waiting, func(x *write) bool { return x.taken })
	if len(s.writes[first.route]) == 0 {
		delete(s.writes, first.route)
	}
	return batch
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
