package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

var (
	metaBucket  = []byte("meta")
	indexBucket = []byte("labels")
	// layoutKey in the meta bucket holds the store's layout version.
	layoutKey = []byte("layout")
)

// Layout is the version of the store's layout that this build writes.
// A store without one was written before versioning (layout 0), whose
// buckets are the same: it is stamped and read on. A store with a newer
// one is refused rather than misread.
const Layout = 1

// ErrLocked is returned (wrapped) by Open when another process holds the
// store file.
var ErrLocked = errors.New("the store is in use by another process")

// LayoutError is returned by Open for a store written in a layout this
// build does not read.
type LayoutError struct {
	Path  string
	Found string
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("store %s has data layout %q, which this elafros does not read (it reads layouts 0 to %d): "+
		"run the newer elafros that wrote it, or start over with `elafros serve --reset --yes` (this deletes every deployment in it)",
		e.Path, e.Found, Layout)
}

// watchBuffer is how many events a watcher may lag before it is closed
// (and must list again).
const watchBuffer = 8192

// Store is a store.Store in one bbolt file.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	mu       sync.Mutex // orders commits and event delivery
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch     chan store.Event
	closed bool
}

// Option configures Open.
type Option func(*options)

type options struct {
	noSync      bool
	now         func() time.Time
	lockTimeout time.Duration
}

// WithLockTimeout is how long Open waits for another process to release
// the file before failing with ErrLocked. Default 1s.
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithNoSync skips fsync on commit: for tests and benchmarks only, where
// losing the file on power failure does not matter.
func WithNoSync() Option { return func(o *options) { o.noSync = true } }

// WithClock sets the clock used for creationTimestamp.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Open opens (or creates) the store file at path.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{now: time.Now, lockTimeout: time.Second}
	for _, f := range opts {
		f(&o)
	}
	// bbolt holds an exclusive flock on the file while open: a second
	// process waits up to Timeout, then fails instead of hanging.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout, NoSync: o.noSync, NoFreelistSync: o.noSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening store %s: %w (waited %s for its lock)", path, ErrLocked, o.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := checkLayout(tx, path); err != nil {
			return err
		}
		for _, b := range [][]byte{metaBucket, indexBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		for _, k := range store.Kinds {
			if _, err := tx.CreateBucketIfNotExists(bucketName(k)); err != nil {
				return err
			}
		}
		return nil
	})
	var le *LayoutError
	if errors.As(err, &le) {
		_ = db.Close()
		return nil, err
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initializing store %s: %w", path, err)
	}
	return &Store{db: db, now: o.now, watchers: map[*watcher]struct{}{}}, nil
}

// checkLayout stamps a new or pre-versioning store with Layout and
// refuses any other version.
func checkLayout(tx *bolt.Tx, path string) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	v := meta.Get(layoutKey)
	if v == nil {
		return meta.Put(layoutKey, []byte(strconv.Itoa(Layout)))
	}
	if n, err := strconv.Atoi(string(v)); err != nil || n != Layout {
		return &LayoutError{Path: path, Found: string(v)}
	}
	return nil
}

// Close closes the file and every watch.
func (s *Store) Close() error {
	s.mu.Lock()
	for w := range s.watchers {
		s.closeWatcher(w)
	}
	s.mu.Unlock()
	return s.db.Close()
}

func bucketName(k store.Kind) []byte { return []byte("objects/" + string(k)) }

func key(namespace, name string) []byte { return []byte(namespace + "/" + name) }

func decode(k store.Kind, data []byte) (store.Object, error) {
	o, err := store.NewObject(k)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, o); err != nil {
		return nil, fmt.Errorf("decoding stored %s: %w", k, err)
	}
	o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(k)))
	return o, nil
}

// Get implements store.Store.
func (s *Store) Get(_ context.Context, kind store.Kind, namespace, name string) (store.Object, error) {
	var out store.Object
	err := s.db.View(func(tx *bolt.Tx) error {
		o, err := get(tx, kind, namespace, name)
		out = o
		return err
	})
	return out, err
}

func get(tx *bolt.Tx, kind store.Kind, namespace, name string) (store.Object, error) {
	b := tx.Bucket(bucketName(kind))
	if b == nil {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	data := b.Get(key(namespace, name))
	if data == nil {
		return nil, apierrors.NewNotFound(store.Resource(kind), name)
	}
	return decode(kind, data)
}

// List implements store.Store.
func (s *Store) List(_ context.Context, kind store.Kind, namespace string, sel labels.Selector) ([]store.Object, error) {
	var out []store.Object
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(kind))
		if b == nil {
			return fmt.Errorf("unknown kind %q", kind)
		}
		if namespace != "" && sel != nil {
			if lk, lvs, ok := indexable(sel); ok {
				for _, lv := range lvs {
					if err := listIndexed(tx, kind, namespace, lk, lv, sel, &out); err != nil {
						return err
					}
				}
				if len(lvs) > 1 { // in name order, as a scan gives
					slices.SortFunc(out, func(a, b store.Object) int { return strings.Compare(a.GetName(), b.GetName()) })
				}
				return nil
			}
		}
		c := b.Cursor()
		var prefix []byte
		if namespace != "" {
			prefix = []byte(namespace + "/")
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			o, err := decode(kind, v)
			if err != nil {
				return err
			}
			if sel == nil || sel.Matches(labels.Set(o.GetLabels())) {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, err
}

// Create implements store.Store. Status is cleared, as a Kubernetes
// API server with a status subresource does.
func (s *Store) Create(_ context.Context, obj store.Object) (store.Object, error) {
	kind := store.KindOf(obj)
	o, err := copyOf(obj)
	if err != nil {
		return nil, err
	}
	if o.GetNamespace() == "" {
		o.SetNamespace(v1alpha1.DefaultNamespace)
	}
	if o.GetName() == "" {
		if o.GetGenerateName() == "" {
			return nil, apierrors.NewInvalid(gk(kind), "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
		}
		o.SetName(o.GetGenerateName() + rand.String(5))
	}
	if o.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	if err := setStatus(o, nil); err != nil {
		return nil, err
	}
	o.SetUID(uuid.NewUUID())
	o.SetCreationTimestamp(metav1.NewTime(s.now().Truncate(time.Second)))
	o.SetGeneration(1)
	o.SetDeletionTimestamp(nil)
	err = s.write(func(tx *bolt.Tx, emit func(store.EventType, store.Object)) error {
		b := tx.Bucket(bucketName(kind))
		if b.Get(key(o.GetNamespace(), o.GetName())) != nil {
			return apierrors.NewAlreadyExists(store.Resource(kind), o.GetName())
		}
		if err := put(tx, o); err != nil {
			return err
		}
		emit(store.Added, o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Update implements store.Store.
func (s *Store) Update(_ context.Context, obj store.Object) (store.Object, error) {
	var out store.Object
	err := s.write(func(tx *bolt.Tx, emit func(store.EventType, store.Object)) error {
		o, err := s.updateAndEmit(tx, obj, emit)
		out = o
		return err
	})
	return out, err
}

// updateAndEmit updates and announces a change (a no-op update announces
// nothing).
func (s *Store) updateAndEmit(tx *bolt.Tx, obj store.Object, emit func(store.EventType, store.Object)) (store.Object, error) {
	o, changed, err := s.update(tx, obj)
	if err != nil {
		return nil, err
	}
	if changed {
		emit(store.Modified, o)
	}
	return o, nil
}

// update merges obj's metadata and spec over the stored object.
func (s *Store) update(tx *bolt.Tx, obj store.Object) (store.Object, bool, error) {
	kind := store.KindOf(obj)
	cur, err := preconditions(tx, obj)
	if err != nil {
		return nil, false, err
	}
	o, err := copyOf(obj)
	if err != nil {
		return nil, false, err
	}
	if err := setStatus(o, cur); err != nil {
		return nil, false, err
	}
	o.SetUID(cur.GetUID())
	o.SetCreationTimestamp(cur.GetCreationTimestamp())
	o.SetGeneration(cur.GetGeneration())
	o.SetResourceVersion(cur.GetResourceVersion())
	specChanged := !reflect.DeepEqual(normalize(store.SpecOf(o)), normalize(store.SpecOf(cur)))
	if specChanged && kind == store.KindRevision {
		return nil, false, apierrors.NewInvalid(gk(kind), o.GetName(), field.ErrorList{
			field.Forbidden(field.NewPath("spec"), "a Revision is immutable; change its Configuration to make a new Revision")})
	}
	if !specChanged && sameJSON(o, cur) {
		return cur, false, nil // a no-op update changes nothing, not even resourceVersion
	}
	if specChanged {
		o.SetGeneration(cur.GetGeneration() + 1)
	}
	if err := put(tx, o); err != nil {
		return nil, false, err
	}
	return o, true, nil
}

// UpdateStatus implements store.Store.
func (s *Store) UpdateStatus(_ context.Context, obj store.Object) (store.Object, error) {
	var out store.Object
	err := s.write(func(tx *bolt.Tx, emit func(store.EventType, store.Object)) error {
		cur, err := preconditions(tx, obj)
		if err != nil {
			return err
		}
		o, err := copyOf(cur)
		if err != nil {
			return err
		}
		if err := setStatus(o, obj); err != nil {
			return err
		}
		if sameJSON(o, cur) {
			out = cur
			return nil
		}
		if err := put(tx, o); err != nil {
			return err
		}
		out = o
		emit(store.Modified, o)
		return nil
	})
	return out, err
}

// Patch implements store.Store: the patch and the write happen in one
// transaction, so a patch never loses a concurrent write.
func (s *Store) Patch(_ context.Context, kind store.Kind, namespace, name string, pt types.PatchType, data []byte) (store.Object, error) {
	var out store.Object
	err := s.write(func(tx *bolt.Tx, emit func(store.EventType, store.Object)) error {
		cur, err := get(tx, kind, namespace, name)
		if err != nil {
			return err
		}
		patched, err := store.ApplyPatch(cur, pt, data)
		if err != nil {
			return err
		}
		if patched.GetName() != name || patched.GetNamespace() != namespace {
			return apierrors.NewBadRequest("a patch may not change metadata.name or metadata.namespace")
		}
		if patched.GetResourceVersion() == "" {
			patched.SetResourceVersion(cur.GetResourceVersion())
		}
		o, err := s.updateAndEmit(tx, patched, emit)
		out = o
		return err
	})
	return out, err
}

// Delete implements store.Store; dependents (by ownerReference uid)
// are deleted with their owner, as Kubernetes' garbage collector does.
func (s *Store) Delete(_ context.Context, kind store.Kind, namespace, name string) error {
	return s.write(func(tx *bolt.Tx, emit func(store.EventType, store.Object)) error {
		o, err := get(tx, kind, namespace, name)
		if err != nil {
			return err
		}
		return deleteCascade(tx, o, emit)
	})
}

func deleteCascade(tx *bolt.Tx, o store.Object, emit func(store.EventType, store.Object)) error {
	kind := store.KindOf(o)
	if err := tx.Bucket(bucketName(kind)).Delete(key(o.GetNamespace(), o.GetName())); err != nil {
		return err
	}
	if err := unindex(tx, o); err != nil {
		return err
	}
	emit(store.Deleted, o)
	uid := o.GetUID()
	for _, k := range store.Kinds {
		b := tx.Bucket(bucketName(k))
		var owned []store.Object
		prefix := []byte(o.GetNamespace() + "/")
		c := b.Cursor()
		for kk, v := c.Seek(prefix); kk != nil && bytes.HasPrefix(kk, prefix); kk, v = c.Next() {
			d, err := decode(k, v)
			if err != nil {
				return err
			}
			for _, ref := range d.GetOwnerReferences() {
				if ref.UID == uid {
					owned = append(owned, d)
					break
				}
			}
		}
		for _, d := range owned {
			if err := deleteCascade(tx, d, emit); err != nil {
				return err
			}
		}
	}
	return nil
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context) (<-chan store.Event, error) {
	w := &watcher{ch: make(chan store.Event, watchBuffer)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		s.closeWatcher(w)
		s.mu.Unlock()
	}()
	return w.ch, nil
}

func (s *Store) closeWatcher(w *watcher) {
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	delete(s.watchers, w)
}

// write runs fn in a write transaction and delivers its events after the
// commit, in commit order.
func (s *Store) write(fn func(tx *bolt.Tx, emit func(store.EventType, store.Object)) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var events []store.Event
	err := s.db.Update(func(tx *bolt.Tx) error {
		return fn(tx, func(t store.EventType, o store.Object) {
			events = append(events, store.Event{Type: t, Object: o})
		})
	})
	if err != nil {
		return err
	}
	for _, e := range events {
		for w := range s.watchers {
			// Each watcher gets its own copy: consumers may change what
			// they receive.
			ev := store.Event{Type: e.Type, Object: e.Object.DeepCopyObject().(store.Object)}
			select {
			case w.ch <- ev:
			default:
				s.closeWatcher(w) // fell behind: it must list again
			}
		}
	}
	return nil
}

// put stores o with the next resourceVersion.
func put(tx *bolt.Tx, o store.Object) error {
	seq, err := tx.Bucket(metaBucket).NextSequence()
	if err != nil {
		return err
	}
	o.SetResourceVersion(strconv.FormatUint(seq, 10))
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketName(store.KindOf(o)))
	k := key(o.GetNamespace(), o.GetName())
	if old := b.Get(k); old != nil {
		prev, err := decode(store.KindOf(o), old)
		if err != nil {
			return err
		}
		if err := unindex(tx, prev); err != nil {
			return err
		}
	}
	if err := index(tx, o); err != nil {
		return err
	}
	return b.Put(k, data)
}

// The label index maps kind, namespace, label and value to object names,
// so that a selector List (a configuration's revisions) reads only the
// matching objects instead of the whole namespace.
func indexKey(kind store.Kind, ns, label, value, name string) []byte {
	return []byte(string(kind) + "\x00" + ns + "\x00" + label + "=" + value + "\x00" + name)
}

func index(tx *bolt.Tx, o store.Object) error {
	ib := tx.Bucket(indexBucket)
	for lk, lv := range o.GetLabels() {
		if err := ib.Put(indexKey(store.KindOf(o), o.GetNamespace(), lk, lv, o.GetName()), []byte{}); err != nil {
			return err
		}
	}
	return nil
}

func unindex(tx *bolt.Tx, o store.Object) error {
	ib := tx.Bucket(indexBucket)
	for lk, lv := range o.GetLabels() {
		if err := ib.Delete(indexKey(store.KindOf(o), o.GetNamespace(), lk, lv, o.GetName())); err != nil {
			return err
		}
	}
	return nil
}

// indexable returns a requirement of sel that the label index answers: a
// key and its values (one for an equality, each of an "in"; an object has
// one value, so the lists are disjoint).
func indexable(sel labels.Selector) (string, []string, bool) {
	reqs, ok := sel.Requirements()
	if !ok {
		return "", nil, false
	}
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			return r.Key(), r.Values().List(), true
		}
	}
	return "", nil, false
}

func listIndexed(tx *bolt.Tx, kind store.Kind, ns, lk, lv string, sel labels.Selector, out *[]store.Object) error {
	prefix := indexKey(kind, ns, lk, lv, "")
	b := tx.Bucket(bucketName(kind))
	c := tx.Bucket(indexBucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		data := b.Get(key(ns, string(k[len(prefix):])))
		if data == nil {
			continue
		}
		o, err := decode(kind, data)
		if err != nil {
			return err
		}
		if sel.Matches(labels.Set(o.GetLabels())) {
			*out = append(*out, o)
		}
	}
	return nil
}

// preconditions loads the stored object and checks obj's resourceVersion.
func preconditions(tx *bolt.Tx, obj store.Object) (store.Object, error) {
	kind := store.KindOf(obj)
	cur, err := get(tx, kind, obj.GetNamespace(), obj.GetName())
	if err != nil {
		return nil, err
	}
	rv := obj.GetResourceVersion()
	if rv == "" {
		return nil, apierrors.NewInvalid(gk(kind), obj.GetName(), field.ErrorList{
			field.Invalid(field.NewPath("metadata", "resourceVersion"), rv, "must be specified for an update")})
	}
	if rv != cur.GetResourceVersion() {
		return nil, apierrors.NewConflict(store.Resource(kind), obj.GetName(),
			fmt.Errorf("the object has been modified (resourceVersion %s, stored %s); read it again and retry", rv, cur.GetResourceVersion()))
	}
	return cur, nil
}

func gk(k store.Kind) schema.GroupKind {
	return schema.GroupKind{Group: v1alpha1.GroupName, Kind: string(k)}
}

func copyOf(o store.Object) (store.Object, error) {
	c, ok := o.DeepCopyObject().(store.Object)
	if !ok {
		return nil, fmt.Errorf("cannot copy %T", o)
	}
	c.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(store.KindOf(o))))
	return c, nil
}

// setStatus copies from's status into o (a zero status when from is nil).
func setStatus(o, from store.Object) error {
	switch x := o.(type) {
	case *v1alpha1.Configuration:
		x.Status = v1alpha1.ConfigurationStatus{}
		if f, ok := from.(*v1alpha1.Configuration); ok {
			x.Status = *f.Status.DeepCopy()
		}
	case *v1alpha1.Revision:
		x.Status = v1alpha1.RevisionStatus{}
		if f, ok := from.(*v1alpha1.Revision); ok {
			x.Status = *f.Status.DeepCopy()
		}
	case *v1alpha1.Route:
		x.Status = v1alpha1.RouteStatus{}
		if f, ok := from.(*v1alpha1.Route); ok {
			x.Status = *f.Status.DeepCopy()
		}
	case *v1alpha1.Service:
		x.Status = v1alpha1.ServiceStatus{}
		if f, ok := from.(*v1alpha1.Service); ok {
			x.Status = *f.Status.DeepCopy()
		}
	default:
		return fmt.Errorf("unknown object %T", o)
	}
	return nil
}

// normalize makes nil and empty slices and maps compare equal, as they do
// once stored.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func sameJSON(a, b store.Object) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

var _ store.Store = (*Store)(nil)
