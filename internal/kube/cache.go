package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/store"
)

// CachedStore is a store.Store that reads from informers over the
// elafros.dev objects and writes through the REST client, so that a
// resync of an unchanged cluster costs no request at all.
//
//   - What this Store wrote or deleted is seen at once: an overlay keeps
//     each written object (and a tombstone for each deletion) until the
//     informer holds that resourceVersion or a newer one, so a pass never
//     misses its own writes.
//   - An object in neither is read from the API server (another writer may
//     have just created it).
//   - Watch events come from the informers, after the cache has applied
//     them, so a reconcile triggered by an event reads at least that state.
//   - Writes keep their optimistic concurrency: one made from a stale copy
//     is refused with a Conflict and retried.
type CachedStore struct {
	*client.Store
	kinds map[store.Kind]*kindCache

	namespace string

	mu       sync.Mutex
	overlay  map[overlayKey]overlayEntry
	watchers map[chan store.Event]struct{}
}

type kindCache struct {
	informer cache.SharedIndexInformer
}

type overlayKey struct {
	kind      store.Kind
	namespace string
	name      string
}

// overlayEntry is a written object, or a deletion (obj nil) of the object
// at resourceVersion rv.
type overlayEntry struct {
	obj store.Object
	rv  uint64
	at  time.Time
}

// overlayTTL bounds how long the overlay is trusted over the informer.
const overlayTTL = time.Minute

const allIndex = "all"

// NewCachedStore returns a CachedStore over s, caching namespace ("" for
// all: then the caller needs list and watch on every namespace). Call
// Start before use.
func NewCachedStore(s *client.Store, namespace string) *CachedStore {
	c := &CachedStore{Store: s, namespace: namespace, kinds: map[store.Kind]*kindCache{},
		overlay: map[overlayKey]overlayEntry{}, watchers: map[chan store.Event]struct{}{}}
	for _, k := range store.Kinds {
		obj, _ := store.NewObject(k)
		inf := cache.NewSharedIndexInformer(s.ListWatch(k, namespace), obj, 0, cache.Indexers{
			cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
			allIndex:             func(any) ([]string, error) { return []string{""}, nil },
		})
		_ = inf.SetTransform(dropManagedFields)
		_, _ = inf.AddEventHandler(c.handler(k))
		c.kinds[k] = &kindCache{informer: inf}
	}
	return c
}

// Start runs the informers until ctx ends and waits for their first list.
func (c *CachedStore) Start(ctx context.Context) error {
	// Fail fast (an informer would retry a forbidden list forever).
	for _, k := range store.Kinds {
		if _, err := c.Store.List(ctx, k, c.namespace, nil); err != nil {
			return fmt.Errorf("listing %s: %w", store.Resource(k).Resource, err)
		}
	}
	var synced []cache.InformerSynced
	for _, kc := range c.kinds {
		go kc.informer.RunWithContext(ctx)
		synced = append(synced, kc.informer.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return errors.New("the elafros.dev informers did not sync before the context ended")
	}
	return nil
}

func resourceVersion(o any) uint64 {
	m, err := meta.Accessor(o)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(m.GetResourceVersion(), 10, 64)
	return v
}

// typedCopy returns a deep copy of a cached object with its kind set.
func typedCopy(k store.Kind, o any) (store.Object, error) {
	ro, ok := o.(runtime.Object)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the %s cache", o, k)
	}
	out, ok := ro.DeepCopyObject().(store.Object)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the %s cache", o, k)
	}
	out.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(k)))
	return out, nil
}

// resolve merges the informer's copy of key with the overlay (c.mu held):
// the newer wins; a tombstone hides copies up to its resourceVersion.
func (c *CachedStore) resolve(key overlayKey, cached any) (any, bool) {
	ov, ok := c.overlay[key]
	if ok && time.Since(ov.at) > overlayTTL {
		delete(c.overlay, key)
		ok = false
	}
	if !ok {
		return cached, cached != nil
	}
	if cached != nil && resourceVersion(cached) > ov.rv {
		delete(c.overlay, key) // the informer caught up, or someone wrote after us
		return cached, true
	}
	if ov.obj == nil {
		if cached == nil {
			delete(c.overlay, key) // the informer saw the deletion
		}
		return nil, false
	}
	if cached != nil && resourceVersion(cached) == ov.rv {
		delete(c.overlay, key)
	}
	return ov.obj, true
}

// Get implements store.Store from the cache, or from the API server
// when neither the cache nor this Store's writes have the object.
func (c *CachedStore) Get(ctx context.Context, k store.Kind, ns, name string) (store.Object, error) {
	kc, ok := c.kinds[k]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", k)
	}
	cached, found, err := kc.informer.GetStore().GetByKey(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	if !found {
		cached = nil
	}
	key := overlayKey{k, ns, name}
	c.mu.Lock()
	o, found := c.resolve(key, cached)
	_, tombstone := c.overlay[key]
	c.mu.Unlock()
	switch {
	case found:
		return typedCopy(k, o)
	case tombstone:
		return nil, apierrors.NewNotFound(store.Resource(k), name)
	}
	return c.Store.Get(ctx, k, ns, name)
}

// List implements store.Store from the cache and this Store's writes.
func (c *CachedStore) List(_ context.Context, k store.Kind, ns string, sel labels.Selector) ([]store.Object, error) {
	kc, ok := c.kinds[k]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", k)
	}
	index, ikey := cache.NamespaceIndex, ns
	if ns == "" {
		index = allIndex
	}
	objs, err := kc.informer.GetIndexer().ByIndex(index, ikey)
	if err != nil {
		return nil, err
	}
	byKey := map[overlayKey]any{}
	for _, o := range objs {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		byKey[overlayKey{k, m.GetNamespace(), m.GetName()}] = o
	}
	c.mu.Lock()
	for key := range c.overlay {
		if key.kind == k && (ns == "" || key.namespace == ns) {
			if _, ok := byKey[key]; !ok {
				byKey[key] = nil
			}
		}
	}
	out := make([]store.Object, 0, len(byKey))
	for key, cached := range byKey {
		o, found := c.resolve(key, cached)
		if !found {
			continue
		}
		m, err := meta.Accessor(o)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		if sel != nil && !sel.Matches(labels.Set(m.GetLabels())) {
			continue
		}
		ro, err := typedCopy(k, o)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		out = append(out, ro)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
}

func (c *CachedStore) remember(o store.Object, err error) (store.Object, error) {
	if err != nil {
		return nil, err
	}
	key := overlayKey{store.KindOf(o), o.GetNamespace(), o.GetName()}
	cp, _ := o.DeepCopyObject().(store.Object)
	// As the informers keep it (dropManagedFields): a read must not
	// depend on whether the overlay or the informer answers it.
	cp.SetManagedFields(nil)
	c.mu.Lock()
	c.overlay[key] = overlayEntry{obj: cp, rv: resourceVersion(o), at: time.Now()}
	c.mu.Unlock()
	return o, nil
}

// Create implements store.Store.
func (c *CachedStore) Create(ctx context.Context, o store.Object) (store.Object, error) {
	return c.remember(c.Store.Create(ctx, o))
}

// Update implements store.Store.
func (c *CachedStore) Update(ctx context.Context, o store.Object) (store.Object, error) {
	return c.remember(c.Store.Update(ctx, o))
}

// UpdateStatus implements store.Store.
func (c *CachedStore) UpdateStatus(ctx context.Context, o store.Object) (store.Object, error) {
	return c.remember(c.Store.UpdateStatus(ctx, o))
}

// Patch implements store.Store.
func (c *CachedStore) Patch(ctx context.Context, k store.Kind, ns, name string, pt types.PatchType, data []byte) (store.Object, error) {
	return c.remember(c.Store.Patch(ctx, k, ns, name, pt, data))
}

// Delete implements store.Store: the object is hidden from reads at
// once (up to the resourceVersion last seen of it).
func (c *CachedStore) Delete(ctx context.Context, k store.Kind, ns, name string) error {
	err := c.Store.Delete(ctx, k, ns, name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	key := overlayKey{k, ns, name}
	var rv uint64
	if kc, ok := c.kinds[k]; ok {
		if o, found, _ := kc.informer.GetStore().GetByKey(ns + "/" + name); found {
			rv = resourceVersion(o)
		}
	}
	c.mu.Lock()
	if ov, ok := c.overlay[key]; ok && ov.rv > rv {
		rv = ov.rv
	}
	c.overlay[key] = overlayEntry{rv: rv, at: time.Now()}
	c.mu.Unlock()
	return err
}

// Watch implements store.Store with the informers' events, delivered
// after the cache has them. The channel closes when ctx ends or the
// watcher falls behind (the caller lists again).
func (c *CachedStore) Watch(ctx context.Context) (<-chan store.Event, error) {
	ch := make(chan store.Event, 4096)
	c.mu.Lock()
	c.watchers[ch] = struct{}{}
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		if _, ok := c.watchers[ch]; ok {
			delete(c.watchers, ch)
			close(ch)
		}
		c.mu.Unlock()
	}()
	return ch, nil
}

func (c *CachedStore) handler(k store.Kind) cache.ResourceEventHandler {
	emit := func(t store.EventType, o any) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		obj, err := typedCopy(k, o)
		if err != nil {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for ch := range c.watchers {
			select {
			case ch <- store.Event{Type: t, Object: obj}:
			default: // fell behind: close, the caller lists again
				delete(c.watchers, ch)
				close(ch)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { emit(store.Added, o) },
		UpdateFunc: func(_, o any) { emit(store.Modified, o) },
		DeleteFunc: func(o any) { emit(store.Deleted, o) },
	}
}

var _ store.Store = (*CachedStore)(nil)
