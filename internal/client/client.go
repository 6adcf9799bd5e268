// Package client is the one REST client of elafros: a store.Store over
// the Kubernetes REST dialect, built on client-go's REST client, so the
// same code talks to elafros serve and to a Kubernetes cluster with the
// elafros.dev CRDs (through a kubeconfig context). It translates; it holds
// no business rules.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// Scheme knows the elafros.dev types and the meta types of the wire.
var Scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err) // only on a programming error in v1alpha1's registration
	}
	return s
}

// Store is a store.Store over HTTP.
type Store struct {
	rc *rest.RESTClient
	// noStrategicMerge: the server answered 415 to a strategic merge
	// patch (a Kubernetes API server, for custom resources).
	noStrategicMerge atomic.Bool
}

// New returns a Store for the API server described by cfg.
func New(cfg *rest.Config) (*Store, error) {
	c := rest.CopyConfig(cfg)
	gv := v1alpha1.SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = "elafros"
	}
	if c.QPS == 0 {
		c.QPS, c.Burst = 200, 400
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("building the REST client: %w", err)
	}
	return &Store{rc: rc}, nil
}

// ForServer returns a Store for an elafros serve API at url
// (e.g. http://127.0.0.1:7070).
func ForServer(url string) (*Store, error) {
	return New(&rest.Config{Host: url})
}

// ForKubeconfig returns a Store for the cluster of a kubeconfig context
// ("" for the current one); path "" uses the default loading rules.
func ForKubeconfig(path, context string) (*Store, error) {
	cfg, err := Kubeconfig(path, context)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Kubeconfig loads the rest.Config of a kubeconfig context ("" for the
// current one); path "" uses the default loading rules ($KUBECONFIG,
// ~/.kube/config, then the in-cluster ServiceAccount).
func Kubeconfig(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}

func plural(k store.Kind) string { return store.Resource(k).Resource }

func typed(o runtime.Object) (store.Object, error) {
	ro, ok := o.(store.Object)
	if !ok {
		return nil, fmt.Errorf("unexpected %T from the API", o)
	}
	ro.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(store.KindOf(ro))))
	return ro, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, kind store.Kind, ns, name string) (store.Object, error) {
	out, err := store.NewObject(kind)
	if err != nil {
		return nil, err
	}
	if err := s.rc.Get().Namespace(ns).Resource(plural(kind)).Name(name).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return typed(out)
}

func newList(kind store.Kind) (runtime.Object, func() []store.Object) {
	switch kind {
	case store.KindConfiguration:
		l := &v1alpha1.ConfigurationList{}
		return l, func() []store.Object { return items(l.Items) }
	case store.KindRevision:
		l := &v1alpha1.RevisionList{}
		return l, func() []store.Object { return items(l.Items) }
	case store.KindRoute:
		l := &v1alpha1.RouteList{}
		return l, func() []store.Object { return items(l.Items) }
	default:
		l := &v1alpha1.ServiceList{}
		return l, func() []store.Object { return items(l.Items) }
	}
}

func items[T any, PT interface {
	*T
	store.Object
}](in []T) []store.Object {
	out := make([]store.Object, len(in))
	for i := range in {
		o := PT(&in[i])
		o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(store.KindOf(o))))
		out[i] = o
	}
	return out
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, kind store.Kind, ns string, sel labels.Selector) ([]store.Object, error) {
	l, get := newList(kind)
	req := s.rc.Get().Namespace(ns).Resource(plural(kind))
	if sel != nil && !sel.Empty() {
		req = req.Param("labelSelector", sel.String())
	}
	if err := req.Do(ctx).Into(l); err != nil {
		return nil, err
	}
	return get(), nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, o store.Object) (store.Object, error) {
	out, _ := store.NewObject(store.KindOf(o))
	ns := o.GetNamespace()
	if ns == "" {
		ns = v1alpha1.DefaultNamespace
	}
	if err := s.rc.Post().Namespace(ns).Resource(plural(store.KindOf(o))).Param("fieldValidation", "Strict").Body(o).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return typed(out)
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, o store.Object) (store.Object, error) {
	return s.put(ctx, o, "")
}

// UpdateStatus implements store.Store.
func (s *Store) UpdateStatus(ctx context.Context, o store.Object) (store.Object, error) {
	return s.put(ctx, o, "status")
}

func (s *Store) put(ctx context.Context, o store.Object, sub string) (store.Object, error) {
	kind := store.KindOf(o)
	out, _ := store.NewObject(kind)
	req := s.rc.Put().Namespace(o.GetNamespace()).Resource(plural(kind)).Name(o.GetName()).Param("fieldValidation", "Strict")
	if sub != "" {
		req = req.SubResource(sub)
	}
	if err := req.Body(o).Do(ctx).Into(out); err != nil {
		return nil, err
	}
	return typed(out)
}

// Patch implements store.Store. YAML bodies are sent as JSON.
//
// A Kubernetes API server refuses strategic merge patches on custom
// resources (415). For those the patch is merged here, with the same
// patch tags (env merged by name), and written back with an update that
// carries the resourceVersion it was merged onto: the API server refuses
// it if anything changed in between, and the merge is done again on the
// fresh object. Server-side apply (application/apply-patch+yaml) is sent
// as the "elafros" field manager.
func (s *Store) Patch(ctx context.Context, kind store.Kind, ns, name string, pt types.PatchType, data []byte) (store.Object, error) {
	body, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("the patch is not JSON or YAML: %w", err)
	}
	if pt == types.StrategicMergePatchType && s.noStrategicMerge.Load() {
		return s.mergeHere(ctx, kind, ns, name, body)
	}
	out, _ := store.NewObject(kind)
	// Strict: a Kubernetes API server would otherwise drop unknown fields
	// (the seed's "Traffic:") with only a warning.
	req := s.rc.Patch(pt).Namespace(ns).Resource(plural(kind)).Name(name).Param("fieldValidation", "Strict")
	if pt == types.ApplyPatchType {
		req = req.Param("fieldManager", FieldManager).Param("force", "true")
	}
	err = req.Body(body).Do(ctx).Into(out)
	if pt == types.StrategicMergePatchType && apierrors.IsUnsupportedMediaType(err) {
		s.noStrategicMerge.Store(true)
		return s.mergeHere(ctx, kind, ns, name, body)
	}
	if err != nil {
		return nil, err
	}
	return typed(out)
}

// FieldManager names elafros' writes in managedFields.
const FieldManager = "elafros"

// mergeHere applies a strategic merge patch client-side onto the current
// object and updates it optimistically, retrying on conflict.
func (s *Store) mergeHere(ctx context.Context, kind store.Kind, ns, name string, patch []byte) (store.Object, error) {
	var out store.Object
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.Get(ctx, kind, ns, name)
		if err != nil {
			return err
		}
		merged, err := store.ApplyPatch(cur, types.StrategicMergePatchType, patch)
		if err != nil {
			return err
		}
		merged.SetResourceVersion(cur.GetResourceVersion())
		out, err = s.Update(ctx, merged)
		return err
	})
	return out, err
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, kind store.Kind, ns, name string) error {
	prop := metav1.DeletePropagationBackground
	return s.rc.Delete().Namespace(ns).Resource(plural(kind)).Name(name).
		Body(&metav1.DeleteOptions{PropagationPolicy: &prop}).Do(ctx).Error()
}

// Watch implements store.Store: one watch per kind, merged. The
// channel closes when any of them ends; the caller lists again.
func (s *Store) Watch(ctx context.Context) (<-chan store.Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	var ws []watch.Interface
	for _, k := range store.Kinds {
		w, err := s.rc.Get().Resource(plural(k)).Param("watch", "true").Watch(ctx)
		if err != nil {
			cancel()
			for _, w := range ws {
				w.Stop()
			}
			return nil, fmt.Errorf("watching %s: %w", plural(k), err)
		}
		ws = append(ws, w)
	}
	out := make(chan store.Event, 1024)
	var once sync.Once
	var wg sync.WaitGroup
	stop := func() {
		once.Do(func() {
			cancel()
			for _, w := range ws {
				w.Stop()
			}
		})
	}
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			for e := range w.ResultChan() {
				if e.Type == watch.Error || e.Type == watch.Bookmark {
					if e.Type == watch.Error {
						return
					}
					continue
				}
				o, err := typed(e.Object)
				if err != nil {
					return
				}
				select {
				case out <- store.Event{Type: store.EventType(e.Type), Object: o}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// ListWatch returns a cache.ListerWatcher of kind in namespace ("" for
// all), for informers over the elafros.dev objects.
func (s *Store) ListWatch(kind store.Kind, ns string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l, _ := newList(kind)
			err := s.rc.Get().Namespace(ns).Resource(plural(kind)).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(l)
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			return s.rc.Get().Namespace(ns).Resource(plural(kind)).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
		},
	}
}

// Logs returns a revision's output (elafros serve's log subresource).
func (s *Store) Logs(ctx context.Context, ns, revision string) ([]byte, error) {
	return s.rc.Get().Namespace(ns).Resource("revisions").Name(revision).SubResource("log").DoRaw(ctx)
}

// IsUnreachable reports whether err means the server did not answer
// (refused the connection, or its name does not resolve).
func IsUnreachable(err error) bool {
	var dns *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dns)
}

var _ store.Store = (*Store)(nil)
