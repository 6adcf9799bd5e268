// Package reconciletest holds controllable doubles for the reconciler's
// Runtime, Builder and Traffic (the real ones are the local process
// runtime, the image builders and the router, each with its own issue),
// and a Store wrapper that counts writes, observes every Route status
// written, and can stop a reconciler between any two writes.
package reconciletest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

func key(ns, name string) string { return ns + "/" + name }

// Runtime is an in-memory reconcile.Runtime: a revision is Ready on its
// first Materialize unless it is held or failed.
type Runtime struct {
	mu       sync.Mutex
	absent   map[string]error
	full     map[string]error
	held     map[string]bool
	failures map[string]reconcile.WorkloadState
	running  map[string]string
	retired  map[string]int
}

// NewRuntime returns a Runtime with nothing held.
func NewRuntime() *Runtime {
	return &Runtime{absent: map[string]error{}, full: map[string]error{}, held: map[string]bool{}, failures: map[string]reconcile.WorkloadState{}, running: map[string]string{}, retired: map[string]int{}}
}

// Hold keeps the revision starting ("Starting Instances") until Release.
func (r *Runtime) Hold(ns, name string) { r.mu.Lock(); r.held[key(ns, name)] = true; r.mu.Unlock() }

// Release lets a held revision become Ready.
func (r *Runtime) Release(ns, name string) { r.mu.Lock(); delete(r.held, key(ns, name)); r.mu.Unlock() }

// Fail makes the revision's workload fail with reason and message (e.g.
// ExitCode:127) until Recover.
func (r *Runtime) Fail(ns, name, reason, message string) {
	r.mu.Lock()
	r.failures[key(ns, name)] = reconcile.WorkloadState{Reason: reason, Message: message}
	r.mu.Unlock()
}

// Absent makes image missing from the registry: a revision running it
// cannot fetch it, with err as the registry's answer.
func (r *Runtime) Absent(image string, err error) {
	r.mu.Lock()
	r.absent[image] = err
	r.mu.Unlock()
}

// Exhaust refuses every new workload in namespace ns with err (as a
// quota would) until the returned function is called; workloads that
// exist keep running.
func (r *Runtime) Exhaust(ns string, err error) (restore func()) {
	r.mu.Lock()
	r.full[ns] = err
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.full, ns)
		r.mu.Unlock()
	}
}

// Recover clears a failure.
func (r *Runtime) Recover(ns, name string) {
	r.mu.Lock()
	delete(r.failures, key(ns, name))
	r.mu.Unlock()
}

// Running reports whether the revision has a workload, and its image.
func (r *Runtime) Running(ns, name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.running[key(ns, name)]
	return img, ok
}

// Retired is how many times the revision's workload was retired.
func (r *Runtime) Retired(ns, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retired[key(ns, name)]
}

// Materialize implements reconcile.Runtime.
func (r *Runtime) Materialize(_ context.Context, rev *v1alpha1.Revision, image string) (reconcile.WorkloadState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key(rev.Namespace, rev.Name)
	if image == "" {
		return reconcile.WorkloadState{Reason: v1alpha1.ReasonContainerMissing, Message: "Unable to start: the revision has no image."}, nil
	}
	if err, ok := r.absent[image]; ok {
		return reconcile.WorkloadState{Reason: v1alpha1.ReasonContainerMissing, Message: fmt.Sprintf("Unable to fetch image '%s': %v", image, err)}, nil
	}
	if _, ok := r.running[k]; !ok {
		if err, full := r.full[rev.Namespace]; full {
			return reconcile.NoDeployment(rev.Name, err), nil
		}
	}
	r.running[k] = image
	if f, ok := r.failures[k]; ok {
		return f, nil
	}
	if r.held[k] {
		return reconcile.WorkloadState{}, nil
	}
	return reconcile.WorkloadState{Ready: true, ImageDigest: digestOf(image)}, nil
}

// Retire implements reconcile.Runtime.
func (r *Runtime) Retire(_ context.Context, rev *v1alpha1.Revision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key(rev.Namespace, rev.Name)
	if _, ok := r.running[k]; ok {
		delete(r.running, k)
		r.retired[k]++
	}
	return nil
}

func digestOf(image string) string {
	if strings.Contains(image, "@") {
		return image // already pinned: a registry resolves a digest to itself
	}
	return fmt.Sprintf("%s@sha256:%x", image, sha256.Sum256([]byte(image)))
}

// Builder is an in-memory reconcile.Builder. With Auto, builds succeed as
// soon as they start; otherwise Complete or Fail finishes them.
type Builder struct {
	Auto   bool
	mu     sync.Mutex
	builds map[string]*build
}

type build struct {
	spec  v1alpha1.BuildSpec
	image string
	state reconcile.BuildState
}

// NewBuilder returns a Builder.
func NewBuilder(auto bool) *Builder { return &Builder{Auto: auto, builds: map[string]*build{}} }

// Start implements reconcile.Builder.
func (b *Builder) Start(_ context.Context, ns, name string, spec v1alpha1.BuildSpec, image string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := key(ns, name)
	if _, ok := b.builds[k]; ok {
		return nil
	}
	bd := &build{spec: spec, image: image}
	if b.Auto {
		bd.state = succeeded(spec, image)
	}
	b.builds[k] = bd
	return nil
}

func succeeded(spec v1alpha1.BuildSpec, image string) reconcile.BuildState {
	data, _ := json.Marshal(spec)
	st := reconcile.BuildState{Done: true, Image: fmt.Sprintf("%s@sha256:%x", image, sha256.Sum256(data))}
	if spec.Source != nil && spec.Source.Git != nil {
		st.Source = &v1alpha1.ImageSource{Repository: spec.Source.Git.URL, Commit: spec.Source.Git.Commit}
	}
	return st
}

// Started reports whether a build was started, and with what spec.
func (b *Builder) Started(ns, name string) (v1alpha1.BuildSpec, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bd, ok := b.builds[key(ns, name)]
	if !ok {
		return v1alpha1.BuildSpec{}, false
	}
	return bd.spec, true
}

// Complete finishes a started build successfully.
func (b *Builder) Complete(ns, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	bd, ok := b.builds[key(ns, name)]
	if !ok {
		return fmt.Errorf("build %s was never started", key(ns, name))
	}
	bd.state = succeeded(bd.spec, bd.image)
	return nil
}

// Fail finishes a started build with a failure.
func (b *Builder) Fail(ns, name, reason, message string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	bd, ok := b.builds[key(ns, name)]
	if !ok {
		return fmt.Errorf("build %s was never started", key(ns, name))
	}
	bd.state = reconcile.BuildState{Done: true, Failed: true, Reason: reason, Message: message}
	return nil
}

// Status implements reconcile.Builder.
func (b *Builder) Status(_ context.Context, ns, name string) (reconcile.BuildState, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bd, ok := b.builds[key(ns, name)]
	if !ok {
		return reconcile.BuildState{}, false, nil
	}
	return bd.state, true, nil
}

// Traffic records the last plan applied to each route.
type Traffic struct {
	mu    sync.Mutex
	plans map[string]reconcile.TrafficPlan
	err   error
}

// Break makes every Apply fail with err until Repair (as a gateway
// refusing the split would).
func (t *Traffic) Break(err error) { t.mu.Lock(); t.err = err; t.mu.Unlock() }

// Repair lets Apply succeed again.
func (t *Traffic) Repair() { t.mu.Lock(); t.err = nil; t.mu.Unlock() }

// NewTraffic returns an empty Traffic.
func NewTraffic() *Traffic { return &Traffic{plans: map[string]reconcile.TrafficPlan{}} }

// Apply implements reconcile.Traffic.
func (t *Traffic) Apply(_ context.Context, route *v1alpha1.Route, plan reconcile.TrafficPlan) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	plan.Hosts = maps.Clone(plan.Hosts)
	plan.Tags = maps.Clone(plan.Tags)
	t.plans[key(route.Namespace, route.Name)] = plan
	return nil
}

// Forget implements reconcile.Traffic.
func (t *Traffic) Forget(_ context.Context, ns, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.plans, key(ns, name))
	return nil
}

// Plan returns the last plan applied to a route.
func (t *Traffic) Plan(ns, name string) (reconcile.TrafficPlan, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.plans[key(ns, name)]
	return p, ok
}

// ErrKilled is returned by a Recorder's writes once its budget is spent.
var ErrKilled = errors.New("reconciler stopped by the test")

// Recorder wraps a Store: it counts writes, lets OnRouteStatus see every
// Route status written (old and new), and with Budget >= 0 fails every
// write after that many, as if the process died there.
type Recorder struct {
	store.Store
	mu            sync.Mutex
	writes        int
	Budget        int
	OnRouteStatus func(old, new *v1alpha1.Route)
}

// NewRecorder wraps s with no write budget.
func NewRecorder(s store.Store) *Recorder { return &Recorder{Store: s, Budget: -1} }

// Writes is how many writes went through.
func (r *Recorder) Writes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

func (r *Recorder) spend() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Budget >= 0 && r.writes >= r.Budget {
		return ErrKilled
	}
	r.writes++
	return nil
}

// Create implements store.Store.
func (r *Recorder) Create(ctx context.Context, o store.Object) (store.Object, error) {
	if err := r.spend(); err != nil {
		return nil, err
	}
	return r.Store.Create(ctx, o)
}

// Update implements store.Store.
func (r *Recorder) Update(ctx context.Context, o store.Object) (store.Object, error) {
	if err := r.spend(); err != nil {
		return nil, err
	}
	return r.Store.Update(ctx, o)
}

// UpdateStatus implements store.Store.
func (r *Recorder) UpdateStatus(ctx context.Context, o store.Object) (store.Object, error) {
	if err := r.spend(); err != nil {
		return nil, err
	}
	var old *v1alpha1.Route
	if rt, ok := o.(*v1alpha1.Route); ok && r.OnRouteStatus != nil {
		if cur, err := r.Store.Get(ctx, store.KindRoute, rt.Namespace, rt.Name); err == nil {
			old = cur.(*v1alpha1.Route)
		}
	}
	out, err := r.Store.UpdateStatus(ctx, o)
	if err == nil && old != nil {
		r.OnRouteStatus(old, out.(*v1alpha1.Route))
	}
	return out, err
}

// Patch implements store.Store.
func (r *Recorder) Patch(ctx context.Context, k store.Kind, ns, name string, pt types.PatchType, data []byte) (store.Object, error) {
	if err := r.spend(); err != nil {
		return nil, err
	}
	return r.Store.Patch(ctx, k, ns, name, pt, data)
}

// Delete implements store.Store.
func (r *Recorder) Delete(ctx context.Context, k store.Kind, ns, name string) error {
	if err := r.spend(); err != nil {
		return err
	}
	return r.Store.Delete(ctx, k, ns, name)
}
