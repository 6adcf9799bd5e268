package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// fixture is the embedded store with the bundled reconciler running
// continuously over in-memory runtime and traffic doubles, and a
// write-counting, conflict-injecting view of the store for the facade.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	store *local.Store
	rt    *reconciletest.Runtime
	view  *flakyStore
	now   time.Time
	mu    sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := local.Open(filepath.Join(t.TempDir(), "elafros.db"), local.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{t: t, store: s, rt: reconciletest.NewRuntime(), now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	f.view = &flakyStore{Recorder: reconciletest.NewRecorder(s)}
	r, err := reconcile.New(s, f.rt, reconciletest.NewTraffic(), reconciletest.NewBuilder(true), reconcile.Options{DomainSuffix: "example.com", Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	f.ctx = ctx
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, reconcile.RunOptions{Logger: slog.New(slog.DiscardHandler), Resync: 200 * time.Millisecond})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fixture) client(actor, reason string) *deploy.Client {
	return deploy.New(f.view, "default", deploy.WithPollInterval(10*time.Millisecond), deploy.WithActor(actor, reason), deploy.WithClock(f.clock))
}

// flakyStore counts writes (through the Recorder) and answers the next
// Conflicts updates with 409, as a store does when someone wrote between
// a read and a write.
type flakyStore struct {
	*reconciletest.Recorder
	mu        sync.Mutex
	Conflicts int
	conflicts int // how many were answered
}

func (s *flakyStore) Update(ctx context.Context, o store.Object) (store.Object, error) {
	s.mu.Lock()
	if s.Conflicts > 0 {
		s.Conflicts--
		s.conflicts++
		s.mu.Unlock()
		return nil, apierrors.NewConflict(schema.GroupResource{Group: v1alpha1.GroupName, Resource: "routes"}, o.GetName(), errors.New("the object has been modified"))
	}
	s.mu.Unlock()
	return s.Recorder.Update(ctx, o)
}

func service(name, image string, strategy v1alpha1.RolloutStrategy) *v1alpha1.Service {
	s := &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	s.Spec.RevisionTemplate.Spec.Container = corev1.Container{Image: image}
	s.Spec.Rollout.Strategy = strategy
	s.SetDefaults()
	return s
}

func (f *fixture) ship(c *deploy.Client, o store.Object, p deploy.Provenance) *deploy.Outcome {
	f.t.Helper()
	var steps []string
	out, err := c.Ship(f.ctx, []store.Object{o}, deploy.ShipOptions{Provenance: p, Wait: true,
		Progress: func(p deploy.Progress) { steps = append(steps, string(p.Step)) }})
	if err != nil {
		f.t.Fatalf("Ship: %v", err)
	}
	if len(out.Shipped) == 1 && !slicesEqual(steps, []string{"Starting", "Promoting"}) {
		f.t.Errorf("progress steps = %v, want [Starting Promoting]", steps)
	}
	return out
}

func slicesEqual(a, b []string) bool { return cmp.Equal(a, b) }

func (f *fixture) route(name string) *v1alpha1.Route {
	f.t.Helper()
	o, err := f.store.Get(f.ctx, store.KindRoute, "default", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return o.(*v1alpha1.Route)
}

func tt(name, rev string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}
}

func TestShipCreatedConfiguredUnchanged(t *testing.T) {
	f := newFixture(t)
	c := f.client("octocat", "deploy")
	prov := deploy.Provenance{Repository: "Octo-Org/hello-world", Commit: "aaaa111", Deployer: "octocat"}

	out := f.ship(c, service("hello", "registry.example/hello@sha256:1111", v1alpha1.StrategyAutomatic), prov)
	sh := out.Shipped[0]
	want := deploy.Shipped{Kind: store.KindService, Name: "hello", Action: deploy.ActionCreated, Domain: "hello.default.example.com",
		Revision: "hello-00001", Image: "registry.example/hello@sha256:1111", NewRevision: true,
		After: []v1alpha1.TrafficTarget{{RevisionName: "hello-00001", Percent: 100}}}
	if d := cmp.Diff(want, sh); d != "" {
		t.Errorf("first deploy (-want +got):\n%s", d)
	}
	rev, err := f.store.Get(f.ctx, store.KindRevision, "default", "hello-00001")
	if err != nil {
		t.Fatal(err)
	}
	gotProv := map[string]string{"label": rev.GetLabels()[v1alpha1.RepositoryLabelKey], "commit": rev.GetAnnotations()[v1alpha1.GitCommitAnnotationKey], "deployer": rev.GetAnnotations()[v1alpha1.DeployerAnnotationKey]}
	if d := cmp.Diff(map[string]string{"label": "octo-org.hello-world", "commit": "aaaa111", "deployer": "octocat"}, gotProv); d != "" {
		t.Errorf("revision provenance (-want +got):\n%s", d)
	}

	// The same image and configuration from another commit: nothing new.
	writes := f.view.Writes()
	out = f.ship(c, service("hello", "registry.example/hello@sha256:1111", v1alpha1.StrategyAutomatic), deploy.Provenance{Repository: prov.Repository, Commit: "bbbb222", Deployer: "hubot"})
	if a := out.Shipped[0]; a.Action != deploy.ActionUnchanged || a.NewRevision || a.Revision != "hello-00001" {
		t.Errorf("unchanged push: got %+v, want unchanged with no new revision", a)
	}
	if w := f.view.Writes() - writes; w != 0 {
		t.Errorf("unchanged push made %d writes, want 0", w)
	}

	// A new image: configured, a new revision serving 100%.
	out = f.ship(c, service("hello", "registry.example/hello@sha256:2222", v1alpha1.StrategyAutomatic), deploy.Provenance{Repository: prov.Repository, Commit: "cccc333"})
	sh = out.Shipped[0]
	if sh.Action != deploy.ActionConfigured || !sh.NewRevision || sh.Revision != "hello-00002" {
		t.Errorf("new image: got %+v, want configured with new revision hello-00002", sh)
	}
	if d := cmp.Diff([]v1alpha1.TrafficTarget{{RevisionName: "hello-00001", Percent: 100}}, sh.Before); d != "" {
		t.Errorf("before (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]v1alpha1.TrafficTarget{{RevisionName: "hello-00002", Percent: 100}}, sh.After); d != "" {
		t.Errorf("after (-want +got):\n%s", d)
	}
}

func TestShipDryRunWritesNothing(t *testing.T) {
	f := newFixture(t)
	c := f.client("octocat", "deploy")
	f.ship(c, service("hello", "img@sha256:1111", v1alpha1.StrategyAutomatic), deploy.Provenance{})
	writes := f.view.Writes()
	out, err := c.Ship(f.ctx, []store.Object{service("hello", "img@sha256:2222", v1alpha1.StrategyAutomatic), service("other", "img@sha256:3333", v1alpha1.StrategyAutomatic)},
		deploy.ShipOptions{DryRun: true, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []deploy.Applied{{Kind: "Service", Name: "hello", Action: deploy.ActionConfigured}, {Kind: "Service", Name: "other", Action: deploy.ActionCreated}}
	if d := cmp.Diff(want, out.Applied); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
	if w := f.view.Writes() - writes; w != 0 {
		t.Errorf("dry run made %d writes, want 0", w)
	}
	if len(out.Shipped) != 2 || out.Shipped[0].Before == nil || out.Shipped[0].After != nil {
		t.Errorf("dry run report: %+v, want the traffic before and nothing after", out.Shipped)
	}
}

func TestShipFailedRevision(t *testing.T) {
	f := newFixture(t)
	c := f.client("octocat", "deploy")
	f.rt.Fail("default", "hello-00001", "ExitCode:3", "panic: no config")
	_, err := c.Ship(f.ctx, []store.Object{service("hello", "img@sha256:1111", v1alpha1.StrategyAutomatic)}, deploy.ShipOptions{Wait: true})
	var failed *deploy.FailedError
	if !errors.As(err, &failed) {
		t.Fatalf("Ship: %v, want a FailedError", err)
	}
	if failed.Revision != "hello-00001" || failed.Reason != "ExitCode:3" || !strings.Contains(failed.Detail, "panic: no config") {
		t.Errorf("failure = %+v", failed)
	}
}

// events is a deploy.EventSink that keeps what it is told.
type events struct {
	mu   sync.Mutex
	seen []string
	fail error // every Event fails with it
}

func (e *events) Event(_ context.Context, o store.Object, typ, reason, msg string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return e.fail
	}
	e.seen = append(e.seen, fmt.Sprintf("%s %s/%s %s: %s", typ, store.KindOf(o), o.GetName(), reason, msg))
	return nil
}

// TestEventFailureIsTold: a sink that cannot record the event (no RBAC
// for events) does not stop the move, which is written with its history,
// and the caller is told.
func TestEventFailureIsTold(t *testing.T) {
	f := newFixture(t)
	var told []error
	c := deploy.New(f.view, "default", deploy.WithPollInterval(10*time.Millisecond), deploy.WithActor("octocat", "/rollout"),
		deploy.WithClock(f.clock), deploy.WithEvents(&events{fail: errors.New(`events is forbidden: cannot create resource "events"`)},
			func(err error) { told = append(told, err) }))
	f.ship(c, service("web", "img@sha256:1111", v1alpha1.StrategyCanary), deploy.Provenance{})
	f.ship(c, service("web", "img@sha256:2222", v1alpha1.StrategyCanary), deploy.Provenance{})
	rt, err := c.Rollout(f.ctx, "web", deploy.SetNext(50))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]v1alpha1.TrafficTarget{tt("current", "web-00001", 50), tt("next", "web-00002", 50)}, rt.Spec.Rollout.Traffic); d != "" {
		t.Errorf("traffic (-want +got):\n%s", d)
	}
	h, err := deploy.History(f.route("web"))
	if err != nil || len(h) == 0 || h[len(h)-1].Actor != "octocat" {
		t.Errorf("the move's history: %+v, %v", h, err)
	}
	if len(told) != 1 || !strings.Contains(told[0].Error(), "the move is in route web's history, but its Event was not recorded: events is forbidden") {
		t.Errorf("told %v, want one error naming the route and the cause", told)
	}
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

func TestRolloutOperations(t *testing.T) {
	f := newFixture(t)
	sink := &events{}
	c := deploy.New(f.view, "default", deploy.WithPollInterval(10*time.Millisecond), deploy.WithActor("octocat", "/rollout"),
		deploy.WithClock(f.clock), deploy.WithEvents(sink, func(err error) { t.Errorf("event: %v", err) }))
	f.ship(c, service("web", "img@sha256:1111", v1alpha1.StrategyCanary), deploy.Provenance{})
	f.ship(c, service("web", "img@sha256:2222", v1alpha1.StrategyCanary), deploy.Provenance{})
	// The canary starts at the first step: current web-00001 95%, next web-00002 5%.
	steps := []struct {
		name    string
		op      deploy.Op
		want    []v1alpha1.TrafficTarget
		refused string
	}{
		{"set next 50", deploy.SetNext(50), []v1alpha1.TrafficTarget{tt("current", "web-00001", 50), tt("next", "web-00002", 50)}, ""},
		{"promote one step", deploy.Promote([]int{5, 25, 50, 100}), []v1alpha1.TrafficTarget{tt("current", "web-00002", 100), tt("next", "web-00002", 0)}, ""},
		{"set next to a revision", deploy.SetNextTo("web-00001", 25), []v1alpha1.TrafficTarget{tt("current", "web-00002", 75), tt("next", "web-00001", 25)}, ""},
		{"abort", deploy.Abort, []v1alpha1.TrafficTarget{tt("current", "web-00002", 100), tt("next", "web-00001", 0)}, ""},
		{"set next 101 is refused", deploy.SetNext(101), nil, "101"},
		{"set next to a missing revision is refused", deploy.SetNextTo("web-00009", 10), nil, "web-00009"},
		{"finish", deploy.Finish, []v1alpha1.TrafficTarget{tt("current", "web-00001", 100), tt("next", "web-00001", 0)}, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := f.route("web")
			seen := len(sink.all())
			f.view.mu.Lock()
			f.view.Conflicts = 2 // someone else writes twice in between: retried
			f.view.mu.Unlock()
			rt, err := c.Rollout(f.ctx, "web", s.op)
			if s.refused != "" {
				if !rollout.IsRefused(err) || !strings.Contains(err.Error(), s.refused) {
					t.Fatalf("Rollout: %v, want a refusal naming %q", err, s.refused)
				}
				if d := cmp.Diff(before.Spec, f.route("web").Spec); d != "" {
					t.Errorf("a refusal changed the route (-before +after):\n%s", d)
				}
				if got := sink.all()[seen:]; len(got) != 0 {
					t.Errorf("a refusal made events %q", got)
				}
				return
			}
			// One event per move, after the write (not one per conflict retried).
			want := fmt.Sprintf("Normal Route/web TrafficMoved: octocat moved traffic: %s → %s (/rollout)", deploy.Split(before.Spec.Rollout.Traffic), deploy.Split(s.want))
			if got := sink.all()[seen:]; len(got) != 1 || got[0] != want {
				t.Errorf("events %q, want [%q]", got, want)
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(s.want, rt.Spec.Rollout.Traffic); d != "" {
				t.Errorf("traffic (-want +got):\n%s", d)
			}
			h, err := deploy.History(f.route("web"))
			if err != nil {
				t.Fatal(err)
			}
			last := h[len(h)-1]
			if last.Actor != "octocat" || last.Reason != "/rollout" || !cmp.Equal(last.From, before.Spec.Rollout.Traffic) || !cmp.Equal(last.To, s.want) {
				t.Errorf("history's last move = %+v, want octocat's /rollout from %v to %v", last, before.Spec.Rollout.Traffic, s.want)
			}
		})
	}
	f.view.mu.Lock()
	defer f.view.mu.Unlock()
	if f.view.conflicts < 10 {
		t.Errorf("only %d conflicts were injected and retried", f.view.conflicts)
	}
}

func TestRolloutRefusedOnNotReadyRevision(t *testing.T) {
	f := newFixture(t)
	c := f.client("octocat", "/rollout")
	f.ship(c, service("web", "img@sha256:1111", v1alpha1.StrategyManual), deploy.Provenance{})
	f.rt.Hold("default", "web-00002")
	if _, err := c.Apply(f.ctx, []store.Object{service("web", "img@sha256:2222", v1alpha1.StrategyManual)}); err != nil {
		t.Fatal(err)
	}
	// The reconciler makes the revision; it stays Starting.
	testutil.Eventually(t, 30*time.Second, "web-00002 is created", func() (bool, string) {
		_, err := f.store.Get(f.ctx, store.KindRevision, "default", "web-00002")
		return err == nil, fmt.Sprint(err)
	})
	before := f.route("web")
	_, err := c.Rollout(f.ctx, "web", deploy.SetNextTo("web-00002", 50))
	if !rollout.IsRefused(err) || !strings.Contains(err.Error(), "revision web-00002 cannot take traffic: ") {
		t.Fatalf("Rollout onto a revision that is not Ready: %v, want a refusal saying so", err)
	}
	if d := cmp.Diff(before.Spec, f.route("web").Spec); d != "" {
		t.Errorf("the refusal changed the route:\n%s", d)
	}
}

func TestPreview(t *testing.T) {
	f := newFixture(t)
	c := f.client("octocat", "preview")
	f.ship(c, service("web", "img@sha256:1111", v1alpha1.StrategyAutomatic), deploy.Provenance{})
	p, err := c.Preview(f.ctx, deploy.PreviewOptions{Service: "web", Number: 42, Image: "img@sha256:4242", Provenance: deploy.Provenance{Repository: "o/r", Commit: "head42"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Target != "pr-42" || p.Revision != "web-pr-42-00001" || p.Image != "img@sha256:4242" || p.Domain != "web.default.example.com" {
		t.Errorf("preview = %+v", p)
	}
	want := []v1alpha1.TrafficTarget{{RevisionName: "web-00001", Percent: 100}, tt("pr-42", "web-pr-42-00001", 0)}
	if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
		t.Errorf("route status (-want +got):\n%s", d)
	}
	// The service's own rollout goes on without touching the preview.
	f.ship(c, service("web", "img@sha256:2222", v1alpha1.StrategyAutomatic), deploy.Provenance{})
	want = []v1alpha1.TrafficTarget{{RevisionName: "web-00002", Percent: 100}, tt("pr-42", "web-pr-42-00001", 0)}
	if d := cmp.Diff(want, f.route("web").Status.Traffic); d != "" {
		t.Errorf("after a service deploy (-want +got):\n%s", d)
	}
	// Closed: the target goes, and so does the configuration.
	if err := c.ClosePreview(f.ctx, "web", 42); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]v1alpha1.TrafficTarget{{ConfigurationName: "web", Percent: 100}}, f.route("web").Spec.Rollout.Traffic); d != "" {
		t.Errorf("after close (-want +got):\n%s", d)
	}
	if _, err := f.store.Get(f.ctx, store.KindConfiguration, "default", "web-pr-42"); !apierrors.IsNotFound(err) {
		t.Errorf("preview configuration after close: %v, want NotFound", err)
	}
	if err := c.ClosePreview(f.ctx, "web", 42); err != nil {
		t.Errorf("closing again: %v, want nothing to do", err)
	}

	off := service("quiet", "img@sha256:1111", v1alpha1.StrategyAutomatic)
	no := false
	off.Spec.Rollout.Previews = &no
	f.ship(c, off, deploy.Provenance{})
	if _, err := c.Preview(f.ctx, deploy.PreviewOptions{Service: "quiet", Number: 1, Image: "img@sha256:1"}); !rollout.IsRefused(err) || !strings.Contains(err.Error(), "previews: false") {
		t.Errorf("preview of a service without previews: %v, want a refusal naming spec.rollout.previews", err)
	}
}

func TestPromoteDue(t *testing.T) {
	f := newFixture(t)
	c := f.client("schedule", "promote")
	svc := service("web", "img@sha256:1111", v1alpha1.StrategyCanary)
	svc.Spec.Rollout.Interval = &metav1.Duration{Duration: 10 * time.Minute}
	f.ship(c, svc, deploy.Provenance{})
	svc2 := svc.DeepCopy()
	svc2.Spec.RevisionTemplate.Spec.Container.Image = "img@sha256:2222"
	f.ship(c, svc2, deploy.Provenance{})

	run := func() deploy.Promotion {
		t.Helper()
		ps, err := c.PromoteDue(f.ctx, nil)
		if err != nil || len(ps) != 1 {
			t.Fatalf("PromoteDue = %+v, %v; want one promotion", ps, err)
		}
		return ps[0]
	}
	// The reconciler started the canary, and its history says when: the
	// interval starts there.
	h, err := c.RouteHistory(f.ctx, "web")
	if err != nil || len(h) == 0 {
		t.Fatalf("the route's history after the strategy staged the canary: %+v, %v", h, err)
	}
	if m := h[len(h)-1]; m.Actor != reconcile.StrategyActor || m.Reason != "strategy canary: revision web-00002 is ready" ||
		!cmp.Equal(m.To, []v1alpha1.TrafficTarget{tt("current", "web-00001", 95), tt("next", "web-00002", 5)}) || !m.Time.Equal(f.clock()) {
		t.Fatalf("the strategy's move in the history: %+v", m)
	}
	if p := run(); p.Outcome != deploy.Waiting || !strings.Contains(p.Why, "at this step since 2026-12-01T12:00:00Z") {
		t.Fatalf("first run: %+v, want waiting since the canary was staged", p)
	}
	f.advance(5 * time.Minute)
	if p := run(); p.Outcome != deploy.Waiting {
		t.Fatalf("after 5m: %+v, want waiting", p)
	}
	f.advance(5 * time.Minute)
	p := run()
	if p.Outcome != deploy.Promoted || !cmp.Equal(p.After, []v1alpha1.TrafficTarget{tt("current", "web-00001", 75), tt("next", "web-00002", 25)}) {
		t.Fatalf("after 10m: %+v, want promoted to 25%%", p)
	}
	// Paused: nothing moves, however long; resumed: it goes on.
	if err := c.SetPaused(f.ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	f.advance(time.Hour)
	if p := run(); p.Outcome != deploy.Paused || p.After != nil {
		t.Fatalf("paused: %+v, want paused and nothing moved", p)
	}
	if err := c.SetPaused(f.ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	f.advance(-time.Hour)
	// Moved by hand: the interval counts again from the move.
	hand := deploy.New(f.view, "default", deploy.WithActor("alice", "cli"), deploy.WithClock(f.clock))
	f.advance(time.Minute)
	if _, err := hand.Rollout(f.ctx, "web", deploy.SetNext(30)); err != nil {
		t.Fatal(err)
	}
	f.advance(9*time.Minute + 30*time.Second)
	if p := run(); p.Outcome != deploy.Waiting {
		t.Fatalf("9m30s after a manual move: %+v, want waiting", p)
	}
	f.advance(time.Minute)
	if p := run(); p.Outcome != deploy.Promoted || p.After[1].Percent != 50 {
		t.Fatalf("after the interval: %+v, want promoted to 50%%", p)
	}
	// The canary stops being Ready: rolled back.
	f.rt.Fail("default", "web-00002", "ExitCode:1", "boom")
	testutil.Eventually(t, 30*time.Second, "web-00002 stops being Ready after its workload failed", func() (bool, string) {
		ok, _ := c.Ready(f.ctx)("web-00002")
		return !ok, "still Ready"
	})
	p = run()
	if p.Outcome != deploy.RolledBack || !strings.Contains(p.Why, "health gate") || p.After[0].Percent != 100 {
		t.Fatalf("failing canary: %+v, want rolled back to current", p)
	}
}
