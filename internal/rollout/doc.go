// Package rollout is the pure traffic planning of elafros: functions that
// turn a Route's spec.rollout.traffic into the next one (the seed's
// "rollout next percent N", finish, abort, pin, promote one step, stage a
// named preview). Every function refuses, with a reason, what would break
// an invariant: percents total 100, none negative, one target kind per
// entry, names unique per target, and no traffic moved onto a revision
// that is not Ready. It must not do I/O.
package rollout
