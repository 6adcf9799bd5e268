// Package cli holds the elafros command line: each command parses flags
// into an options struct and calls one run function that writes to the
// IOStreams it is given, so tests drive it directly. It holds no business
// rules; those live in api, manifest, reconcile and rollout.
package cli
