package router

import (
	"errors"
	"os"
	"time"
)

// The client watch. net/http notices a client that goes away while its
// request is being served because it keeps a read pending on every
// connection (a goroutine and a read per request): the lean path then
// cancels the request to the process (TestLeanPathClientGone). The raw
// loop does not read the client while it waits for the process, which is
// much of what makes it cheap, so a sweep does it for the requests that
// take long: every watchTick it looks for requests that have waited on
// their process for a tick or more and starts a read on their client
// connection. If that read ends with the client gone, the process's
// connection is cut (the process sees its request end, as through
// net/http) and the request is recorded as 499; if it reads a byte (the
// client's next, pipelined request), the byte is kept for the loop.
// Requests answered within a tick, nearly all of them, cost two atomic
// stores.

// watchTick is how often the sweep runs, and how long a request waits
// before its client is watched.
const watchTick = 50 * time.Millisecond

// A raw connection's watch state.
const (
	watchOff      int32 = iota // no request in flight to a process
	watchEligible              // a request waits on its process
	watchRunning               // a watcher reads the client
)

// startWatch marks the connection as waiting on a process since start.
func (rc *rawConn) startWatch(start time.Time) {
	rc.upstream.Store(nil)
	rc.waitSince.Store(start.UnixNano())
	rc.watch.Store(watchEligible)
}

// endWatch ends the request's watch; if a watcher runs, it is stopped and
// waited for, and a byte it read goes back into the read buffer.
func (rc *rawConn) endWatch() {
	if rc.watch.CompareAndSwap(watchEligible, watchOff) {
		return
	}
	_ = rc.c.SetReadDeadline(aLongTimeAgo)
	rc.extra = <-rc.watchDone
	_ = rc.c.SetReadDeadline(time.Time{})
	rc.watch.Store(watchOff)
}

// watchClients is the sweep; it runs until Shutdown or Close.
func (s *Server) watchClients() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	for {
		select {
		case <-s.stopWatch:
			return
		case now := <-t.C:
			cutoff := now.Add(-watchTick).UnixNano()
			s.mu.Lock()
			for rc := range s.conns {
				if rc.waitSince.Load() <= cutoff && rc.watch.CompareAndSwap(watchEligible, watchRunning) {
					go rc.watchClient()
				}
			}
			s.mu.Unlock()
		}
	}
}

// watchClient reads the client until endWatch stops it, and reports the
// byte it read, if any, on watchDone (-1 if none).
func (rc *rawConn) watchClient() {
	var b [1]byte
	n, err := rc.c.Read(b[:])
	if n == 1 {
		rc.watchDone <- int(b[0])
		return
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		// The client closed or reset its connection: cut the request.
		rc.gone.Store(true)
		if uc := rc.upstream.Load(); uc != nil {
			_ = uc.conn.SetDeadline(aLongTimeAgo)
		}
	}
	rc.watchDone <- -1
}
