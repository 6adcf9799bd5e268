// Package local is the embedded backend: a Store in one bbolt file with
// Kubernetes semantics (monotonic resourceVersion, optimistic concurrency,
// generation on spec change, status written separately, cascading delete
// through ownerReferences, watch). It translates; it holds no business
// rules (those live in api, reconcile and rollout).
package local
