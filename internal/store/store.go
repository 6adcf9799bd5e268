package store

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Object is an elafros.dev object in a Store.
type Object interface {
	metav1.Object
	runtime.Object
}

// Kind names one of the elafros.dev kinds.
type Kind string

// The kinds a Store holds.
const (
	KindConfiguration Kind = "Configuration"
	KindRevision      Kind = "Revision"
	KindRoute         Kind = "Route"
	KindService       Kind = "Service"
)

// Kinds lists every kind, in dependency order (what is owned comes later),
// as v1alpha1.Kinds does.
var Kinds = func() []Kind {
	ks := make([]Kind, len(v1alpha1.Kinds))
	for i, k := range v1alpha1.Kinds {
		ks[i] = Kind(k.Kind)
	}
	return ks
}()

// NewObject returns an empty object of kind k with its TypeMeta set.
func NewObject(k Kind) (Object, error) {
	info, ok := v1alpha1.KindFor(string(k))
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", k)
	}
	return info.New(), nil
}

// KindOf returns the kind of an elafros.dev object.
func KindOf(o Object) Kind {
	if info, ok := v1alpha1.KindOf(o); ok {
		return Kind(info.Kind)
	}
	return Kind(o.GetObjectKind().GroupVersionKind().Kind)
}

// SpecOf returns the spec of an elafros.dev object (what generation tracks).
func SpecOf(o Object) any {
	switch x := o.(type) {
	case *v1alpha1.Configuration:
		return x.Spec
	case *v1alpha1.Revision:
		return x.Spec
	case *v1alpha1.Route:
		return x.Spec
	case *v1alpha1.Service:
		return x.Spec
	}
	return nil
}

// EventType is what happened to an object.
type EventType string

// Event types.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change seen through Watch.
type Event struct {
	Type   EventType
	Object Object
}

// Store holds elafros.dev objects with Kubernetes semantics: a monotonic
// resourceVersion per write, optimistic concurrency (a write with a stale
// resourceVersion fails with a Conflict), metadata.generation bumped on
// spec changes only, status written only through UpdateStatus, and
// dependents deleted with their owner. Errors are apimachinery's
// (apierrors.IsNotFound, IsConflict, IsAlreadyExists, IsInvalid).
type Store interface {
	Get(ctx context.Context, kind Kind, namespace, name string) (Object, error)
	// List returns the objects of kind in namespace ("" for all) that
	// match selector (nil for all), ordered by namespace and name.
	List(ctx context.Context, kind Kind, namespace string, selector labels.Selector) ([]Object, error)
	Create(ctx context.Context, obj Object) (Object, error)
	// Update writes metadata and spec; status is kept as stored.
	Update(ctx context.Context, obj Object) (Object, error)
	// UpdateStatus writes status; metadata and spec are kept as stored.
	UpdateStatus(ctx context.Context, obj Object) (Object, error)
	// Patch applies a merge, JSON or strategic-merge patch to metadata and
	// spec (the env list is merged by name, as in the seed's scenario 3).
	Patch(ctx context.Context, kind Kind, namespace, name string, pt types.PatchType, data []byte) (Object, error)
	Delete(ctx context.Context, kind Kind, namespace, name string) error
	// Watch streams every change after the call. The channel closes when
	// ctx ends or the watcher falls behind; the caller then lists again.
	Watch(ctx context.Context) (<-chan Event, error)
}

// Resource returns the GroupResource (plural) of a kind, for errors.
func Resource(k Kind) schema.GroupResource {
	if info, ok := v1alpha1.KindFor(string(k)); ok {
		return info.GroupResource()
	}
	return v1alpha1.Resource(string(k))
}
