// Package reconcile is the bundled reconciler: level-triggered, idempotent
// controllers for Configuration, Revision, Route and Service over small
// interfaces: a store.Store (the storage contract, in internal/store), and
// the Runtime, Traffic and Builder this package defines for what it needs,
// so the same rules run one-shot in the action (Converge), continuously in
// the bot and in elafros serve (Run). A reconcile of an unchanged world
// writes nothing. It must not know client-go or HTTP.
package reconcile
