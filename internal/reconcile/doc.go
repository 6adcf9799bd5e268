// Package reconcile is the bundled reconciler: level-triggered, idempotent
// controllers for Configuration, Revision, Route and Service over three
// small interfaces (Store, Runtime, Traffic) plus a Builder, so the same
// rules run one-shot in the action (Converge), continuously in the bot and
// in elafros serve (Run). A reconcile of an unchanged world writes
// nothing. It must not know client-go or HTTP.
package reconcile
