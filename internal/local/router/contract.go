// Package router is the local control plane's HTTP router: one listener
// that matches the Host header to a Route's domain or a named target's
// host, splits requests across revisions with exact weights (a
// deterministic smooth weighted round-robin), and proxies to each
// revision's process, enforcing SingleThreaded (one request at a time,
// the rest queued, bounded) and timeoutSeconds (504). It implements
// reconcile.Traffic. It holds no business rules: the reconciler decides
// the split; the router serves it.
package router

import "time"

// Backend is where one revision's requests go.
type Backend struct {
	// Addr is host:port of the revision's process, on loopback.
	Addr string
	// SingleThreaded: at most one request at a time reaches the process.
	SingleThreaded bool
	// Timeout bounds a request; past it the caller gets 504. 0: none.
	Timeout time.Duration
}

// Resolver finds a revision's backend; ok is false while the revision has
// no running, ready process.
type Resolver interface {
	Backend(namespace, revision string) (b Backend, ok bool)
}
