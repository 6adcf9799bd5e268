// Package reconcile will hold the bundled reconciler: level-triggered,
// idempotent controllers for Configuration, Revision, Route and Service
// over small Store, Runtime and Traffic interfaces, so the same rules run
// one-shot in the action, continuously in the bot, and in elafros serve.
// It must not know client-go or HTTP. (Arrives with the reconciler issue.)
package reconcile
