// Package conformance is the seed's five scenarios (and the error
// catalogue's) as a test suite that any Store and Runtime pair runs: one
// subtest per step, asserting the exact fields the seed's GET responses
// show. The embedded store runs it in internal/local; the kube backend
// runs the same suite against a real cluster.
//
// Which seed lines each step checks (normative_examples.md, errors.md in
// ../shared/seed):
//
//	scenarios-2-1-3/2/*            normative_examples.md 272-414 (POSTs, revision "Starting Instances" 315-336,
//	                               latestCreated 341-358, latestReady 362-383, route serving 387-414)
//	scenarios-2-1-3/1/*            normative_examples.md 77-211 (PATCH image, configuration 95-116, revision def 119-147,
//	                               route at 100% 188-211)
//	scenarios-2-1-3/3/*            normative_examples.md 483-679 (pin 483-497, env PATCH 502-548, current/next 554-605,
//	                               the "Traffic:" typo 610-627, next at 100% 631-657, current = next 662-679)
//	scenario-1-gradual/*           normative_examples.md 150-185 (75/25, RolloutComplete False) with
//	                               elafros.dev/rollout-duration; errors.md 238-262 (shift stuck: see errors/Traffic shift stuck)
//	scenario-4-build/*             normative_examples.md 732-831 (buildName, BuildComplete, imageSource); errors.md 53-96
//	scenario-5-function            normative_examples.md 883-929 (labels, SingleThreaded, timeoutSeconds 20)
//	RunBuilds                      scenarios 4 and 5 with the real builder (go_1_9_fn, nodejs_8_9_4)
//	errors/Revision not found by Route                 errors.md 98-127
//	errors/Configuration not found by Route            errors.md 129-155 (its "Revision 'my-service'" is a slip)
//	errors/Container image fails at startup            errors.md 297-322 and 33-51 (LatestRevisionReady copies)
//	errors/Latest Revision of a Configuration deleted  errors.md 157-183
//	errors/Build failed                                errors.md 53-96
//	errors/Container image not present in repository   errors.md 265-295
//	errors/Resource exhausted while creating a revision errors.md 185-205
//	errors/Traffic shift stuck                         errors.md 238-262
//	errors/Deployment progressing slowly               errors.md 207-236
package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// Backend is what the suite drives. Hold and Release control when a
// revision's workload becomes Ready, so that the seed's intermediate states
// ("Starting Instances") can be observed; CompleteBuild and FailBuild
// finish builds; Fail makes a workload fail at startup.
type Backend struct {
	Store         store.Store
	Runtime       reconcile.Runtime
	Traffic       reconcile.Traffic
	Builder       reconcile.Builder
	Hold          func(ns, name string)
	Release       func(ns, name string)
	Fail          func(ns, name, reason, message string)
	CompleteBuild func(ns, name string) error
	FailBuild     func(ns, name, reason, message string) error
	// Plan returns the traffic last applied to a route, when the backend
	// can tell (nil: not checked).
	Plan func(ns, name string) (reconcile.TrafficPlan, bool)
	// DomainSuffix is the suffix the reconciler is given.
	DomainSuffix string
	// Exhaust, when set, makes the namespace refuse new workloads (a
	// ResourceQuota on a cluster) until the returned function is called.
	// Without it, a Runtime with Exhaust(ns, err) func() is used.
	Exhaust func(ns string) (restore func())
}

// NewBackend makes a fresh, empty backend for one scenario.
type NewBackend func(t *testing.T) Backend

const ns = "default"

// logURLTemplate is the suite's --log-url-template (errors.md's logUrl,
// "could be ELK or Stackdriver").
const logURLTemplate = "https://logs.example.com/search?namespace={namespace}&revision={name}"

type env struct {
	t   *testing.T
	b   Backend
	r   *reconcile.Reconciler
	ctx context.Context
}

func newEnv(t *testing.T, nb NewBackend, opts reconcile.Options) *env {
	b := nb(t)
	if b.DomainSuffix == "" {
		b.DomainSuffix = "mydomain.com"
	}
	opts.DomainSuffix = b.DomainSuffix
	if opts.LogURLTemplate == "" {
		opts.LogURLTemplate = logURLTemplate
	}
	r, err := reconcile.New(b.Store, b.Runtime, b.Traffic, b.Builder, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, b: b, r: r, ctx: t.Context()}
}

// settle runs passes until one writes nothing (things may still be
// starting: that is what the seed's intermediate GETs show).
func (e *env) settle() {
	e.t.Helper()
	for i := 0; i < 50; i++ {
		before := e.r.Writes()
		if _, errs := e.r.Pass(e.ctx, ns); len(errs) > 0 {
			e.t.Fatalf("reconcile: %v", errs)
		}
		if e.r.Writes() == before {
			return
		}
	}
	e.t.Fatal("no steady state after 50 passes: the reconciler keeps writing")
}

// converge runs until nothing is in progress, within a deadline.
func (e *env) converge() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	if err := e.r.Converge(ctx, ns); err != nil {
		e.t.Fatal(err)
	}
}

// apply decodes a seed body strictly, defaults it as every entry point
// does, and creates it.
func (e *env) create(body string) {
	e.t.Helper()
	docs, errs := manifest.Decode("body.yaml", []byte(body))
	if len(errs) > 0 || len(docs) != 1 {
		e.t.Fatalf("decoding body: %v", errs)
	}
	o := docs[0].Object
	o.SetDefaults()
	if fe := o.Validate(); len(fe) > 0 {
		e.t.Fatalf("body does not validate: %v", fe)
	}
	if _, err := e.b.Store.Create(e.ctx, o.(store.Object)); err != nil {
		e.t.Fatalf("create: %v", err)
	}
}

func (e *env) patch(kind store.Kind, name string, pt types.PatchType, body string) error {
	_, err := e.b.Store.Patch(e.ctx, kind, ns, name, pt, []byte(body))
	return err
}

func (e *env) config(name string) *v1alpha1.Configuration {
	e.t.Helper()
	o, err := e.b.Store.Get(e.ctx, store.KindConfiguration, ns, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.Configuration)
}

func (e *env) revision(name string) *v1alpha1.Revision {
	e.t.Helper()
	o, err := e.b.Store.Get(e.ctx, store.KindRevision, ns, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.Revision)
}

func (e *env) route(name string) *v1alpha1.Route {
	e.t.Helper()
	o, err := e.b.Store.Get(e.ctx, store.KindRoute, ns, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.Route)
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

// cond returns a condition's status, reason and message ("" when absent).
func cond(cs v1alpha1.Conditions, t v1alpha1.ConditionType) [3]string {
	c := cs.Get(t)
	if c == nil {
		return [3]string{}
	}
	return [3]string{string(c.Status), c.Reason, c.Message}
}

func status(s corev1.ConditionStatus) string { return string(s) }

func target(rev, name string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{RevisionName: rev, Name: name, Percent: pct}
}

func rev(cfg string, gen int) string { return reconcile.RevisionName(cfg, int64(gen)) }

func (e *env) checkPlan(route string, split []reconcile.Backend, hosts map[string]string) {
	e.t.Helper()
	if e.b.Plan == nil {
		return
	}
	p, ok := e.b.Plan(ns, route)
	if !ok {
		e.t.Fatalf("no traffic applied for route %s", route)
	}
	diff(e.t, "applied split", split, p.Split)
	if hosts == nil {
		hosts = map[string]string{}
	}
	served := make(map[string]string, len(p.Hosts))
	for h, target := range p.Hosts {
		served[h] = target.Revision
	}
	diff(e.t, "addressable hosts", hosts, served)
}

func (e *env) host(tag, route string) string {
	return fmt.Sprintf("%s.%s.%s.%s", tag, route, ns, e.b.DomainSuffix)
}
