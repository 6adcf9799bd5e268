package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// Key names one object.
type Key struct {
	Kind      store.Kind
	Namespace string
	Name      string
}

func (k Key) String() string { return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name) }

// Result asks for another reconcile after a delay (0: none needed).
type Result struct {
	RequeueAfter time.Duration
	// InProgress: something is still starting, building or migrating, so
	// a one-shot run is not converged yet.
	InProgress bool
}

// Reconciler holds the controllers.
type Reconciler struct {
	store   *countingStore
	runtime Runtime
	builder Builder
	traffic Traffic
	opts    Options
}

// New returns a Reconciler. builder may be nil when no Configuration
// builds from source (a revision with a buildName then fails clearly).
func New(s store.Store, runtime Runtime, traffic Traffic, builder Builder, opts Options) (*Reconciler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if s == nil || runtime == nil || traffic == nil {
		return nil, errors.New("reconcile.New: store, runtime and traffic are required")
	}
	return &Reconciler{store: &countingStore{Store: s}, runtime: runtime, builder: builder, traffic: traffic, opts: o}, nil
}

// Options returns the effective options (with defaults).
func (r *Reconciler) Options() Options { return r.opts }

// Writes is how many writes the reconciler has made to the store.
func (r *Reconciler) Writes() int64 { return r.store.writes.Load() }

// Reconcile converges one object.
func (r *Reconciler) Reconcile(ctx context.Context, k Key) (Result, error) {
	switch k.Kind {
	case store.KindConfiguration:
		return r.reconcileConfiguration(ctx, k.Namespace, k.Name)
	case store.KindRevision:
		return r.reconcileRevision(ctx, k.Namespace, k.Name)
	case store.KindRoute:
		return r.reconcileRoute(ctx, k.Namespace, k.Name)
	case store.KindService:
		return r.reconcileService(ctx, k.Namespace, k.Name)
	}
	return Result{}, fmt.Errorf("unknown kind %q", k.Kind)
}

func (r *Reconciler) now() metav1.Time { return metav1.NewTime(r.opts.Now().Truncate(time.Second)) }

// countingStore counts writes, so that drivers know whether a pass
// changed anything.
type countingStore struct {
	store.Store
	writes atomic.Int64
}

func (c *countingStore) Create(ctx context.Context, o store.Object) (store.Object, error) {
	c.writes.Add(1)
	return c.Store.Create(ctx, o)
}

func (c *countingStore) Update(ctx context.Context, o store.Object) (store.Object, error) {
	c.writes.Add(1)
	return c.Store.Update(ctx, o)
}

func (c *countingStore) UpdateStatus(ctx context.Context, o store.Object) (store.Object, error) {
	c.writes.Add(1)
	return c.Store.UpdateStatus(ctx, o)
}

func (c *countingStore) Delete(ctx context.Context, k store.Kind, ns, name string) error {
	c.writes.Add(1)
	return c.Store.Delete(ctx, k, ns, name)
}

// getOrNil returns nil (and no error) for a missing object.
func getOrNil[T store.Object](ctx context.Context, s store.Store, k store.Kind, ns, name string) (T, error) {
	var zero T
	o, err := s.Get(ctx, k, ns, name)
	if apierrors.IsNotFound(err) {
		return zero, nil
	}
	if err != nil {
		return zero, err
	}
	t, ok := o.(T)
	if !ok {
		return zero, fmt.Errorf("store returned %T for %s", o, k)
	}
	return t, nil
}

func ownerRef(o store.Object, kind store.Kind) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion:         v1alpha1.APIVersion,
		Kind:               string(kind),
		Name:               o.GetName(),
		UID:                o.GetUID(),
		Controller:         &t,
		BlockOwnerDeletion: &t,
	}
}

func ownedBy(o store.Object, owner store.Object) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == owner.GetUID() {
			return true
		}
	}
	return false
}

// RevisionName is the name of a configuration's revision for a generation,
// as Elafros named them: <configuration>-00002.
func RevisionName(configuration string, generation int64) string {
	return fmt.Sprintf("%s-%05d", configuration, generation)
}
