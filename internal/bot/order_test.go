package bot

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/internal/testutil"
)

// accepted takes n tickets as the webhook does, all queued.
func accepted(s *sequencer, n int) []*ticket {
	var ts []*ticket
	for i := range n {
		d := fmt.Sprintf("d%d", i)
		t := s.accept(d, nil)
		s.recorded(t, Entry{Delivery: d}, true, func(Entry) {}, func(string) bool { return true })
		ts = append(ts, t)
	}
	return ts
}

// recorder is an apply that logs each batch's deliveries.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	gate    chan struct{} // when set, apply says it entered, then waits for it
	entered chan struct{}
}

func (r *recorder) apply(_ context.Context, batch []*write) {
	if r.gate != nil {
		r.entered <- struct{}{}
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var b []string
	for _, w := range batch {
		b = append(b, w.t.delivery)
	}
	r.batches = append(r.batches, b)
}

func (r *recorder) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

// Writes of one route go in acceptance order, whatever order their
// commands get to them in.
func TestSequencerOrdersWritesByAcceptance(t *testing.T) {
	s := newSequencer()
	ts := accepted(s, 5)
	for i := len(ts) - 1; i >= 0; i-- { // claimed and keyed last first
		s.claim(ts[i].delivery)
		s.key(ts[i], "hello")
	}
	r := &recorder{}
	var wg sync.WaitGroup
	for i := len(ts) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := s.write(t.Context(), &write{t: ts[i], route: "hello"}, r.apply)
			if res.err != nil {
				t.Errorf("%s: %v", ts[i].delivery, res.err)
			}
			s.release(ts[i])
		}()
		time.Sleep(time.Millisecond) // later ones first, most of the time
	}
	wg.Wait()
	if diff := cmp.Diff([]string{"d0", "d1", "d2", "d3", "d4"}, r.order()); diff != "" {
		t.Errorf("write order (-want +got):\n%s", diff)
	}
	if len(s.tickets) != 0 || len(s.writes) != 0 {
		t.Errorf("left behind: %d tickets, %d routes of writes", len(s.tickets), len(s.writes))
	}
}

// While a write is being made, the writes queuing behind it on the same
// route go together in the next one, in order.
func TestSequencerBatchesWaitingWrites(t *testing.T) {
	s := newSequencer()
	ts := accepted(s, 4)
	for _, tk := range ts {
		s.claim(tk.delivery)
		s.key(tk, "hello")
	}
	r := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 2)}
	done := make(chan struct{}, len(ts))
	go func() {
		s.write(t.Context(), &write{t: ts[0], route: "hello"}, r.apply)
		s.release(ts[0])
		done <- struct{}{}
	}()
	<-r.entered // d0 is being written, held at the gate
	for _, tk := range ts[1:] {
		go func() {
			s.write(t.Context(), &write{t: tk, route: "hello"}, r.apply)
			s.release(tk)
			done <- struct{}{}
		}()
	}
	testutil.Eventually(t, time.Second, "three writes waiting", func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.writes["hello"]) == 3, fmt.Sprint(len(s.writes["hello"]))
	})
	close(r.gate)
	for range ts {
		<-done
	}
	if diff := cmp.Diff([][]string{{"d0"}, {"d1", "d2", "d3"}}, r.batches); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

// A command that has not said what it writes holds up the writes after
// it; one on another route does not.
func TestSequencerWaitsOnlyForWhatItMustFollow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(s *sequencer, tk *ticket) // the earlier command's state
		route string                         // the later command's route
		waits bool
	}{
		{"earlier claimed, not keyed", func(*sequencer, *ticket) {}, "b", true},
		{"earlier keyed to the same route", func(s *sequencer, tk *ticket) { s.key(tk, "a") }, "a", true},
		{"earlier keyed to another route", func(s *sequencer, tk *ticket) { s.key(tk, "a") }, "b", false},
		{"earlier writes nothing", func(s *sequencer, tk *ticket) { s.key(tk) }, "a", false},
		{"earlier released", func(s *sequencer, tk *ticket) { s.key(tk, "a"); s.release(tk) }, "a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSequencer()
			ts := accepted(s, 2)
			s.claim(ts[0].delivery)
			s.claim(ts[1].delivery)
			tc.first(s, ts[0])
			s.key(ts[1], tc.route)
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			r := &recorder{}
			res := s.write(ctx, &write{t: ts[1], route: tc.route}, r.apply)
			if waited := res.err != nil; waited != tc.waits {
				t.Errorf("waited %v, want %v (err %v)", waited, tc.waits, res.err)
			}
			if tc.waits && len(s.writes) != 0 {
				t.Errorf("a write given up is still waiting: %v", s.writes)
			}
		})
	}
}

// A delivery the work queue could not take (full) holds nothing up; a
// replayed one does not wait for queued ones (they may be behind it in the
// queue), only for those being carried out.
func TestSequencerDroppedAndReplayed(t *testing.T) {
	s := newSequencer()
	dropped := s.accept("dropped", nil)
	s.recorded(dropped, Entry{Delivery: "dropped"}, true, func(Entry) {}, func(string) bool { return false })
	queued := accepted(s, 1)[0]
	// queued is in the queue, not claimed: a replay goes ahead of it.
	replay := s.claim("replayed")
	s.key(replay, "a")
	r := &recorder{}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if res := s.write(ctx, &write{t: replay, route: "a"}, r.apply); res.err != nil {
		t.Fatalf("the replay waited: %v", res.err)
	}
	s.release(replay)
	// queued, claimed later, waits for neither.
	s.claim(queued.delivery)
	s.key(queued, "a")
	if res := s.write(ctx, &write{t: queued, route: "a"}, r.apply); res.err != nil {
		t.Fatalf("waited for a dropped delivery: %v", res.err)
	}
	if diff := cmp.Diff([]string{"replayed", "d0"}, r.order()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Deliveries are queued in acceptance order even when the journal
// records a later one first; one not recorded is skipped.
func TestSequencerQueuesInAcceptanceOrder(t *testing.T) {
	s := newSequencer()
	a, b, c := s.accept("a", nil), s.accept("b", nil), s.accept("c", nil)
	var got []string
	enqueue := func(e Entry) { got = append(got, e.Delivery) }
	ok := func(string) bool { return true }
	s.recorded(c, Entry{Delivery: "c"}, true, enqueue, ok)
	s.recorded(b, Entry{Delivery: "b"}, false, enqueue, ok) // a duplicate
	if len(got) != 0 {
		t.Fatalf("queued %v before a was recorded", got)
	}
	s.recorded(a, Entry{Delivery: "a"}, true, enqueue, ok)
	if diff := cmp.Diff([]string{"a", "c"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
