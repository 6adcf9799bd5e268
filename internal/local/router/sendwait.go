package router

import (
	"net"
	"syscall"
)

// sendWaiter writes a message and then waits for the connection to be
// readable, without the read that Go's net package makes first. A read
// right after sending a request (or an answer, on a keep-alive
// connection) always finds nothing: it costs a system call that returns
// EAGAIN before the goroutine parks on the poller. Writing from inside
// syscall.RawConn.Read's callback instead puts the write after the
// poller's readiness reset, so no readiness edge is lost, and the
// callback's first "not yet" parks the goroutine at once. The profile of
// the raw loop under wrk is three quarters system calls; this takes one
// in three away on each side (read+EAGAIN, write -> write).
type sendWaiter struct {
	raw     syscall.RawConn
	fn      func(uintptr) bool // step, bound once
	pending []byte
	woken   bool
	err     error
}

// init binds sw to c; without a file descriptor (a net.Pipe in a test),
// sendWait is not used.
func (sw *sendWaiter) init(c net.Conn) {
	if sw.fn == nil {
		sw.fn = sw.step
	}
	sw.raw = nil
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			sw.raw = raw
		}
	}
}

// sendWait writes p and waits until the connection has something to
// read (or is closed, or its read deadline passes). rest is what it
// could not write without blocking, for the caller to write as usual; the
// caller then reads as usual, and the read finds data.
func (sw *sendWaiter) sendWait(p []byte) (rest []byte, err error) {
	sw.pending, sw.woken, sw.err = p, false, nil
	err = sw.raw.Read(sw.fn)
	rest, sw.pending = sw.pending, nil
	if sw.err != nil {
		return rest, sw.err
	}
	return rest, err
}

// step is RawConn.Read's callback: the first call writes, the next one
// (readable) ends the wait.
func (sw *sendWaiter) step(fd uintptr) bool {
	if sw.woken {
		return true
	}
	sw.woken = true
	for len(sw.pending) > 0 {
		n, err := syscall.Write(int(fd), sw.pending)
		if n > 0 {
			sw.pending = sw.pending[n:]
		}
		switch err {
		case nil:
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true // the caller writes the rest, blocking
		default:
			sw.err = err
			return true
		}
	}
	return false
}
