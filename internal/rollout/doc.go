// Package rollout will hold the pure traffic planning: set next to N%,
// finish, abort, pin, promote one step. Every function refuses what would
// break a traffic invariant. It must not do I/O. (Arrives with the
// reconciler issue.)
package rollout
