// Package store is the storage contract every backend implements and every
// caller of a backend speaks: the Store interface with its Kubernetes
// semantics (resourceVersion, optimistic concurrency, generation, status
// written apart), the Kind names and their helpers, Object, watch events,
// and ApplyPatch, the one meaning of a PATCH (merge, JSON or strategic merge,
// decoded strictly) that the embedded store, the embedded API server and the
// REST client share. Errors are apimachinery's, so callers branch with
// apierrors.IsNotFound, IsConflict, IsAlreadyExists and IsInvalid.
//
// It holds no rule of the seed and must not import a backend (kube, local,
// client) or the controllers (reconcile): the controllers and the backends
// both depend on it, never the other way round.
package store
