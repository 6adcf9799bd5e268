package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/bot"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github/githubtest"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

// The package's tests that need a cluster share one, started by the first
// of them (so "go test -run TestBot" does not pay for it) and stopped by
// TestMain when the package's tests end.
var pkgCluster struct {
	once sync.Once
	c    *kubetest.Cluster
	tb   *clusterTB
	msg  string // why it did not start
	skip bool   // the binaries are not built (outside CI)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tb := pkgCluster.tb; tb != nil {
		tb.cleanup()
	}
	os.Exit(code)
}

// testCluster returns the package's cluster with the elafros CRDs, RBAC
// and test Gateway installed. Under CI a cluster that cannot start fails
// the test; elsewhere missing binaries skip it with the command to run.
func testCluster(t testing.TB) *kubetest.Cluster {
	t.Helper()
	pkgCluster.once.Do(func() {
		dir, err := os.MkdirTemp("", "elafros-bot-cluster-")
		if err != nil {
			pkgCluster.msg = err.Error()
			return
		}
		tb := &clusterTB{dir: dir}
		tb.Cleanup(func() { _ = os.RemoveAll(dir) })
		pkgCluster.tb = tb
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(clusterFatal)
				if !ok {
					panic(r)
				}
				pkgCluster.msg, pkgCluster.skip = f.msg, f.skip
			}
		}()
		c := kubetest.Start(tb)
		c.InstallElafros(tb)
		pkgCluster.c = c
	})
	if pkgCluster.c == nil {
		if pkgCluster.skip && os.Getenv("CI") == "" {
			t.Skip(pkgCluster.msg)
		}
		t.Fatalf("the test cluster did not start: %s", pkgCluster.msg)
	}
	return pkgCluster.c
}

// clusterFatal carries a Fatal (or Skip) out of kubetest.Start.
type clusterFatal struct {
	msg  string
	skip bool
}

// clusterTB is the testing.TB the package's cluster is started with: it
// outlives any one test, so its cleanups run from TestMain. kubetest calls
// only the methods defined here; the embedded TB (nil) satisfies the
// interface's unexported method.
type clusterTB struct {
	testing.TB
	dir      string
	mu       sync.Mutex
	cleanups []func()
	failed   atomic.Bool
}

func (p *clusterTB) Helper() {}
func (p *clusterTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}
func (p *clusterTB) Failed() bool                   { return p.failed.Load() }
func (p *clusterTB) Logf(format string, a ...any)   { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (p *clusterTB) Log(a ...any)                   { fmt.Fprintln(os.Stderr, a...) }
func (p *clusterTB) Errorf(format string, a ...any) { p.failed.Store(true); p.Logf(format, a...) }
func (p *clusterTB) Error(a ...any)                 { p.failed.Store(true); p.Log(a...) }
func (p *clusterTB) Fatal(a ...any) {
	p.failed.Store(true)
	panic(clusterFatal{msg: fmt.Sprint(a...)})
}
func (p *clusterTB) Fatalf(format string, a ...any) {
	p.failed.Store(true)
	panic(clusterFatal{msg: fmt.Sprintf(format, a...)})
}
func (p *clusterTB) Skip(a ...any) { panic(clusterFatal{msg: fmt.Sprint(a...), skip: true}) }
func (p *clusterTB) Skipf(format string, a ...any) {
	panic(clusterFatal{msg: fmt.Sprintf(format, a...), skip: true})
}
func (p *clusterTB) Context() context.Context { return context.Background() }
func (p *clusterTB) Name() string             { return "bot-cluster" }
func (p *clusterTB) TempDir() string {
	d, err := os.MkdirTemp(p.dir, "t")
	if err != nil {
		p.Fatal(err)
	}
	return d
}

func (p *clusterTB) cleanup() {
	p.mu.Lock()
	cs := p.cleanups
	p.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// journalNamespace is where config/bot runs the bot and keeps its journal.
const journalNamespace = "elafros-system"

// testNamespace makes a fresh namespace for one test's journal, so tests
// sharing the cluster do not see each other's entries.
func testNamespace(t testing.TB, c *kubetest.Cluster, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
	if err := applyYAML(c, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", name)); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestKubeJournal(t *testing.T) {
	c := testCluster(t)
	ns := testNamespace(t, c, "journal")
	j, err := bot.NewKubeJournal(c.Client, ns)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	guid := "1b5b0c80-cf7a-11f0-8b3e-1d2a3f4e5a6b" // GitHub's X-GitHub-Delivery shape
	odd := "Delivery/With Spaces_and_CAPS"
	record := []struct {
		name    string
		e       bot.Entry
		wantNew bool
		wantErr string
	}{
		{"a GitHub GUID", bot.Entry{Delivery: guid, Event: "issue_comment", Payload: json.RawMessage(`{"n":1}`), ReceivedAt: t0.Add(2 * time.Minute)}, true, ""},
		{"an id that is no object name", bot.Entry{Delivery: odd, Event: "pull_request", Payload: json.RawMessage(`{"n":2}`), ReceivedAt: t0}, true, ""},
		{"another", bot.Entry{Delivery: "c", Event: "issue_comment", Payload: json.RawMessage(`{"n":3}`), ReceivedAt: t0.Add(time.Minute)}, true, ""},
		{"the GUID again (a redelivery)", bot.Entry{Delivery: guid, Event: "issue_comment", Payload: json.RawMessage(`{"n":9}`), ReceivedAt: t0.Add(time.Hour)}, false, ""},
		{"no delivery id", bot.Entry{Event: "issue_comment"}, false, "without X-GitHub-Delivery"},
		{"a payload no ConfigMap holds", bot.Entry{Delivery: "big", Payload: json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)}, false, "over the"},
	}
	for _, tc := range record {
		t.Run("record/"+tc.name, func(t *testing.T) {
			isNew, err := j.Record(tc.e)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Record = %v, %v; want an error with %q", isNew, err, tc.wantErr)
				}
				return
			}
			if err != nil || isNew != tc.wantNew {
				t.Fatalf("Record = %v, %v; want %v", isNew, err, tc.wantNew)
			}
		})
	}
	if seen, _ := j.Seen("big"); seen {
		t.Error("a refused entry was recorded")
	}
	// The journal is plain objects an operator can read.
	cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(t.Context(), "bot-delivery-"+guid, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the GUID's ConfigMap: %v", err)
	}
	if cm.Labels[bot.JournalLabel] != bot.JournalPending || cm.Data["payload"] != `{"n":1}` {
		t.Errorf("ConfigMap %s: labels %v, data %v", cm.Name, cm.Labels, cm.Data)
	}

	if err := j.Finish(guid, "moved"); err != nil {
		t.Fatal(err)
	}
	if err := j.Finish("never-recorded", "moved"); err == nil || !strings.Contains(err.Error(), "not recorded") {
		t.Errorf("Finish of an unknown delivery: %v", err)
	}
	pending, err := j.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range pending {
		got = append(got, e.Delivery+" "+e.Event+" "+string(e.Payload)+" "+e.ReceivedAt.Format(time.RFC3339))
	}
	want := []string{odd + ` pull_request {"n":2} 2026-12-01T12:00:00Z`, `c issue_comment {"n":3} 2026-12-01T12:01:00Z`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pending, oldest first (-want +got):\n%s", diff)
	}
	cm, err = c.Client.CoreV1().ConfigMaps(ns).Get(t.Context(), "bot-delivery-"+guid, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[bot.JournalLabel] != bot.JournalDone || cm.Labels[bot.OutcomeLabel] != "moved" || cm.Data["payload"] != "" {
		t.Errorf("finished ConfigMap: labels %v, data %v (done, outcome moved, no payload)", cm.Labels, cm.Data)
	}

	for _, tc := range []struct {
		delivery string
		want     bool
	}{{guid, true}, {odd, true}, {"c", true}, {"nope", false}} {
		if seen, err := j.Seen(tc.delivery); err != nil || seen != tc.want {
			t.Errorf("Seen(%q) = %v, %v; want %v", tc.delivery, seen, err, tc.want)
		}
	}

	// Prune forgets done entries received before the cut, only them.
	if n, err := j.Prune(t0.Add(time.Minute)); err != nil || n != 0 {
		t.Errorf("Prune before the done entry was received = %d, %v; want 0", n, err)
	}
	if n, err := j.Prune(t0.Add(3 * time.Hour)); err != nil || n != 1 {
		t.Errorf("Prune = %d, %v; want 1 (the finished GUID)", n, err)
	}
	for _, tc := range []struct {
		delivery string
		want     bool
	}{{guid, false}, {odd, true}, {"c", true}} {
		if seen, _ := j.Seen(tc.delivery); seen != tc.want {
			t.Errorf("after Prune, Seen(%q) = %v; want %v", tc.delivery, seen, tc.want)
		}
	}

	// Two replicas recording the same delivery at once: exactly one of
	// them is told it is new.
	other, err := bot.NewKubeJournal(c.Client, ns)
	if err != nil {
		t.Fatal(err)
	}
	var news atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jj := j
			if i%2 == 1 {
				jj = other
			}
			isNew, err := jj.Record(bot.Entry{Delivery: "raced", Event: "issue_comment", Payload: json.RawMessage(`{}`)})
			if err != nil {
				t.Error(err)
			}
			if isNew {
				news.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := news.Load(); n != 1 {
		t.Errorf("%d of 16 concurrent Records of one delivery were new; want 1", n)
	}

	if _, err := bot.NewKubeJournal(c.Client, ""); err == nil {
		t.Error("a journal without a namespace")
	}
}

func applyYAML(c *kubetest.Cluster, docs ...string) error {
	var bs [][]byte
	for _, d := range docs {
		bs = append(bs, []byte(d))
	}
	return kube.ApplyManifests(context.Background(), c.Config, bs...)
}

// shortLease makes leadership change hands in seconds. The renew deadline
// leaves room for a slow API server under -race: one renewal missed would
// add a stop and a lead to the events the test expects in order.
func shortLease(ns, identity string, keep bool) bot.LeaseConfig {
	return bot.LeaseConfig{Namespace: ns, Name: "elafros-bot", Identity: identity, KeepOnStop: keep,
		LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 200 * time.Millisecond}
}

func TestLeaseElector(t *testing.T) {
	c := testCluster(t)
	ns := testNamespace(t, c, "lease")
	var leaders, most atomic.Int64
	events := make(chan string, 16)
	type replica struct {
		el     *bot.LeaseElector
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(id string, keep bool) *replica {
		el, err := bot.NewLeaseElector(c.Client, shortLease(ns, id, keep), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{el: el, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			el.Run(ctx, func(ctx context.Context) {
				n := leaders.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				events <- id + " leads"
				<-ctx.Done()
				leaders.Add(-1)
				events <- id + " stopped"
			})
		}()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	next := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %q within 30s", want)
		}
	}
	holder := func() string {
		l, err := c.Client.CoordinationV1().Leases(ns).Get(t.Context(), "elafros-bot", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}

	a := start("a", true) // a crash: its Lease is left to expire
	next("a leads")
	if !a.el.Leading() || holder() != "a" {
		t.Errorf("a leads but Leading() = %v and the Lease's holder is %q", a.el.Leading(), holder())
	}
	b := start("b", false)
	a.cancel() // killed
	<-a.done
	next("a stopped")
	next("b leads") // once a's Lease has expired
	if holder() != "b" {
		t.Errorf("the Lease's holder is %q, want b", holder())
	}

	// Someone else takes the Lease (as after a partition): b stops working
	// within its renew deadline, although nothing cancelled it.
	intruder, secs := "intruder", int32(3)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // b renews meanwhile
		l, err := c.Client.CoordinationV1().Leases(ns).Get(t.Context(), "elafros-bot", metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.AcquireTime, l.Spec.RenewTime = &intruder, &secs, &now, &now
		_, err = c.Client.CoordinationV1().Leases(ns).Update(t.Context(), l, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	next("b stopped")
	next("b leads") // the intruder never renews: b is back after it expires

	// A graceful stop hands the Lease over at once.
	b.cancel()
	<-b.done
	next("b stopped")
	if h := holder(); h != "" {
		t.Errorf("after a graceful stop the Lease is held by %q", h)
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d replicas led at once", m)
	}

	for _, tc := range []struct {
		name string
		c    bot.LeaseConfig
		want string
	}{
		{"no name", bot.LeaseConfig{Namespace: ns}, "must not be empty"},
		{"renew deadline past the lease", bot.LeaseConfig{Namespace: ns, Name: "x", LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}, "want lease duration (1s) > renew deadline (2s)"},
	} {
		if _, err := bot.NewLeaseElector(c.Client, tc.c, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

const (
	clRepo  = "Codertocat/Hello-World" // the recorded payloads' repository
	clHead7 = "7777777777777777777777777777777777777777"
)

var clSecret = []byte("cluster-webhook-secret")

// gate is a replica's way to GitHub that can be shut: while shut, every
// request waits for its context to end, as a replica stuck (then killed)
// in the middle of a command. entered is closed by the first such request.
type gate struct {
	shut    atomic.Bool
	once    sync.Once
	entered chan struct{}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	if g.shut.Load() {
		g.once.Do(func() { close(g.entered) })
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// replica is one bot process: its HTTP server, its Run, and its GitHub.
type replica struct {
	name   string
	url    string
	gate   *gate
	cancel context.CancelFunc
	done   chan struct{}
	srv    *httptest.Server
}

// kill stops the replica as a crash does: no more answers, its work
// cancelled mid-way, its Lease left to expire.
func (r *replica) kill() {
	r.srv.Close()
	r.cancel()
	<-r.done
}

// TestBotsOnCluster runs two bot replicas in-process against the test
// cluster, built by Build from a Config as cmd/bot builds them, each as
// the elafros-bot ServiceAccount (so config/rbac and config/bot's Role
// are enforced), with GitHub played by githubtest. The leader runs the
// bundled reconciler: nothing else reconciles in this test.
func TestBotsOnCluster(t *testing.T) {
	c := testCluster(t)
	ctx := t.Context()
	role, err := os.ReadFile(filepath.Join("..", "..", "config", "bot", "lease.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := applyYAML(c, string(role)); err != nil {
		t.Fatal(err)
	}
	sa := c.ServiceAccountConfig(t, journalNamespace, "elafros-bot")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {server: %q, insecure-skip-tls-verify: true}\nusers:\n- name: bot\n  user: {token: %q}\ncontexts:\n- name: test\n  context: {cluster: test, user: bot}\ncurrent-context: test\n", sa.Host, sa.BearerToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The services in a namespace of their own, so the test can run again
	// on the same cluster (-count); the journal and the Lease are in
	// elafros-system, where config/bot's Role lets the bot keep them.
	svcNS := testNamespace(t, c, "bots")
	gh := githubtest.NewServer(t)
	reg := processtest.StartRegistry(t)
	image := func(tag string) string {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(reg+"/hello:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		return ref.String()
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	start := func(name string) *replica {
		g := &gate{entered: make(chan struct{})}
		b, closeFn, err := bot.Build(bot.Config{
			Kubeconfig: kubeconfig, Namespace: svcNS, WebhookSecrets: [][]byte{clSecret},
			Token: gh.Token, APIURL: gh.URL, GitHubTransport: g, Workers: 4,
			JournalNamespace: journalNamespace, Lease: "elafros-bot", Identity: name,
			// Short, yet long enough for a loaded machine to renew in time.
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
			// The leader lists the journal only when it becomes leader:
			// what the follower accepts reaches it through the watch.
			PollEvery: time.Hour,
			Reconcile: true, Gateway: kubetest.TestGateway, DomainSuffix: "apps.test",
		}, log.With("replica", name))
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		r := &replica{name: name, gate: g, cancel: cancel, done: make(chan struct{}), srv: httptest.NewServer(b.Handler())}
		r.url = r.srv.URL
		go func() {
			defer close(r.done)
			if err := b.Run(rctx, 4); err != nil {
				t.Errorf("replica %s: %v", name, err)
			}
		}()
		t.Cleanup(func() { r.kill(); closeFn() })
		return r
	}
	holder := func() string {
		l, err := c.Client.CoordinationV1().Leases(journalNamespace).Get(ctx, "elafros-bot", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	journal := func() []corev1.ConfigMap {
		l, err := c.Client.CoreV1().ConfigMaps(journalNamespace).List(ctx, metav1.ListOptions{LabelSelector: bot.JournalLabel})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}

	// A leads first (so the test knows whom to kill); B follows.
	a := start("a")
	testutil.Eventually(t, 30*time.Second, "replica a leads", func() (bool, string) { return holder() == "a", "holder " + holder() })
	b := start("b")

	// The fixture, written as the Action would: service hello (manual)
	// from the repository, and PR 7's preview. The revisions become Ready
	// only through the reconciler inside the leading bot.
	svc := &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: svcNS,
		Labels:      map[string]string{v1alpha1.RepositoryLabelKey: v1alpha1.RepositoryLabelValue(clRepo)},
		Annotations: map[string]string{v1alpha1.RepositoryAnnotationKey: clRepo}}}
	svc.Spec.RevisionTemplate.Spec.Container.Image = image("v1")
	svc.Spec.Rollout.Strategy = v1alpha1.StrategyManual
	svc.SetDefaults()
	if _, err := admin.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	preview := &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: "hello-pr-7", Namespace: svcNS}}
	preview.Spec.RevisionTemplate.Spec.Container.Image = image("pr-7")
	preview.Spec.RevisionTemplate.Annotations = map[string]string{v1alpha1.GitCommitAnnotationKey: clHead7}
	preview.SetDefaults()
	if _, err := admin.Create(ctx, preview); err != nil {
		t.Fatal(err)
	}
	ready := func(rev string) {
		t.Helper()
		testutil.Eventually(t, 120*time.Second, "revision "+rev+" Ready (the bot's reconciler)", func() (bool, string) {
			o, err := admin.Get(ctx, store.KindRevision, svcNS, rev)
			if err != nil {
				return false, err.Error()
			}
			r := o.(*v1alpha1.Revision)
			return r.Status.Conditions.IsTrue(v1alpha1.ConditionReady), fmt.Sprintf("%+v", r.Status.Conditions)
		})
	}
	ready("hello-00001")
	ready("hello-pr-7-00001")
	route := func() *v1alpha1.Route {
		t.Helper()
		o, err := admin.Get(ctx, store.KindRoute, svcNS, "hello")
		if err != nil {
			t.Fatal(err)
		}
		return o.(*v1alpha1.Route)
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		rt := route().DeepCopy()
		rt.Spec.Rollout.Traffic = []v1alpha1.TrafficTarget{
			{Name: "current", RevisionName: "hello-00001", Percent: 100}, {Name: "next", RevisionName: "hello-00001"},
			{Name: "pr-7", RevisionName: "hello-pr-7-00001"}}
		_, err := admin.Update(ctx, rt)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	gh.SetPullRequest(clRepo, githubtest.PullRequest{Number: 7, HeadSHA: clHead7, HeadRef: "seven", BaseRef: "main"})
	gh.SetPermission(clRepo, "writer", "write")

	var seq atomic.Int64
	delivery := func() string { return fmt.Sprintf("cluster-%d-%d", time.Now().UnixNano(), seq.Add(1)) }
	comment := func(body string) ([]byte, int64) {
		t.Helper()
		var p map[string]any
		if err := json.Unmarshal(githubtest.Payload(t, "issue_comment.created.with-installation.json"), &p); err != nil {
			t.Fatal(err)
		}
		id := gh.AddComment(clRepo, 7, "writer", body)
		issue := p["issue"].(map[string]any)
		issue["number"] = 7
		issue["pull_request"] = map[string]any{"url": "https://api.github.com/repos/" + clRepo + "/pulls/7"}
		cm := p["comment"].(map[string]any)
		cm["id"], cm["body"], cm["created_at"] = id, body, time.Now().UTC().Format(time.RFC3339)
		cm["user"].(map[string]any)["login"] = "writer"
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return out, id
	}
	post := func(r *replica, d string, key, body []byte) int {
		t.Helper()
		req, err := githubtest.NewWebhookRequest(r.url+"/webhook", "issue_comment", d, key, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	reactions := func(id int64) []string {
		cm, _ := gh.Comment(id)
		var out []string
		for _, r := range cm.Reactions {
			out = append(out, r.Content)
		}
		return out
	}
	rocket := func(id int64) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, fmt.Sprintf("🚀 on comment %d", id), func() (bool, string) {
			rs := reactions(id)
			return slices.Contains(rs, "rocket") || slices.Contains(rs, "confused"), fmt.Sprint(rs)
		})
		if rs := reactions(id); !slices.Contains(rs, "rocket") {
			cs := gh.Comments(clRepo, 7)
			t.Fatalf("comment %d got %v; the bot said %q", id, rs, cs[len(cs)-1].Body)
		}
	}
	wantTraffic := func(next int) {
		t.Helper()
		want := []v1alpha1.TrafficTarget{
			{Name: "current", RevisionName: "hello-00001", Percent: 100 - next}, {Name: "next", RevisionName: "hello-pr-7-00001", Percent: next},
			{Name: "pr-7", RevisionName: "hello-pr-7-00001"}}
		if diff := cmp.Diff(want, route().Spec.Rollout.Traffic); diff != "" {
			t.Fatalf("route spec (-want +got):\n%s", diff)
		}
		// The leader's reconciler makes status follow the spec.
		testutil.Eventually(t, 60*time.Second, "status.traffic following the spec", func() (bool, string) {
			rt := route()
			return cmp.Equal(want, rt.Status.Traffic), fmt.Sprintf("status %+v, observed generation %d of %d", rt.Status.Traffic, rt.Status.ObservedGeneration, rt.Generation)
		})
	}
	state := func(d string) (string, string) {
		cm, err := c.Client.CoreV1().ConfigMaps(journalNamespace).Get(ctx, bot.JournalName(d), metav1.GetOptions{})
		if err != nil {
			return "absent", ""
		}
		return cm.Labels[bot.JournalLabel], cm.Labels[bot.OutcomeLabel]
	}
	// moved waits for d's entry to say done, moved: the bot writes it once
	// the command's answers (the 🚀 among them) are out.
	moved := func(d string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, "journal entry "+d+" done, moved", func() (bool, string) {
			s, o := state(d)
			return s == bot.JournalDone && o == "moved", s + " " + o
		})
	}

	t.Run("bad signature: 401 and nothing recorded", func(t *testing.T) {
		before := len(journal())
		p, id := comment("/rollout 50")
		for _, r := range []*replica{a, b} {
			for name, key := range map[string][]byte{"missing": nil, "wrong secret": []byte("guess")} {
				if code := post(r, delivery(), key, p); code != http.StatusUnauthorized {
					t.Errorf("%s to %s: %d, want 401", name, r.name, code)
				}
			}
		}
		if n := len(journal()); n != before {
			t.Errorf("the journal went from %d to %d entries", before, n)
		}
		if rs := reactions(id); len(rs) != 0 {
			t.Errorf("reactions %v on a refused delivery", rs)
		}
	})

	t.Run("rollout 50 accepted by the follower, applied by the leader", func(t *testing.T) {
		p, id := comment("/rollout 50")
		d := delivery()
		if code := post(b, d, clSecret, p); code != http.StatusAccepted {
			t.Fatalf("b answered %d, want 202", code)
		}
		rocket(id)
		wantTraffic(50)
		moved(d)
		// The move is a Kubernetes Event on the Route too, as the commenter's.
		evs, err := c.Client.CoreV1().Events(svcNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Route,involvedObject.name=hello,reason=" + deploy.ReasonTrafficMoved})
		if err != nil {
			t.Fatal(err)
		}
		var moves []string
		for _, e := range evs.Items {
			if e.Source.Component == "elafros-bot" {
				moves = append(moves, e.Message)
			}
		}
		if len(moves) != 1 || !strings.Contains(moves[0], "next=hello-pr-7-00001:50%") {
			t.Errorf("TrafficMoved events by the bot = %q, want the move to 50%%", moves)
		}
	})

	t.Run("one delivery posted to both replicas is applied once", func(t *testing.T) {
		p, id := comment("/rollout 30")
		d := delivery()
		codes := make([]int, 2)
		var wg sync.WaitGroup
		for i, r := range []*replica{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); codes[i] = post(r, d, clSecret, p) }()
		}
		wg.Wait()
		slices.Sort(codes)
		if diff := cmp.Diff([]int{http.StatusOK, http.StatusAccepted}, codes); diff != "" {
			t.Fatalf("answers (-want +got):\n%s", diff)
		}
		rocket(id)
		wantTraffic(30)
		if code := post(a, d, clSecret, p); code != http.StatusOK {
			t.Errorf("a redelivery after it ran: %d, want 200", code)
		}
		replies := 0
		for _, cm := range gh.Comments(clRepo, 7) {
			if strings.Contains(cm.Body, "`/rollout 30`") {
				replies++
			}
		}
		if n := strings.Count(strings.Join(reactions(id), " "), "rocket"); replies != 1 || n != 1 {
			t.Errorf("%d replies and %d 🚀 for one delivery; want 1 and 1", replies, n)
		}
	})

	t.Run("metrics say which replica leads", func(t *testing.T) {
		// The gauge follows the Lease a moment later (the callbacks run
		// after the Lease is written), so they agree once things settle.
		testutil.Eventually(t, 30*time.Second, "the leader gauges to name the Lease's holder", func() (bool, string) {
			leader := holder()
			if leader != "a" && leader != "b" {
				return false, fmt.Sprintf("the Lease is held by %q, not by a replica", leader)
			}
			for _, r := range []*replica{a, b} {
				want := "elafros_bot_leader 0"
				if r.name == leader {
					want = "elafros_bot_leader 1"
				}
				resp, err := http.Get(r.url + "/metrics")
				if err != nil {
					return false, err.Error()
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(body), "\n"+want+"\n") {
					return false, fmt.Sprintf("%s's /metrics lacks %q (the Lease is %s's)", r.name, want, leader)
				}
			}
			return true, ""
		})
	})

	t.Run("the leader killed between ack and apply: the other replica applies it", func(t *testing.T) {
		// a leads unless a slow renewal handed the Lease to b meanwhile.
		leader, other := a, b
		if holder() == "b" {
			leader, other = b, a
		}
		leader.gate.shut.Store(true) // stuck at its first GitHub call
		p, id := comment("/rollout 60")
		d := delivery()
		if code := post(leader, d, clSecret, p); code != http.StatusAccepted {
			t.Fatalf("%s answered %d, want 202", leader.name, code)
		}
		select {
		case <-leader.gate.entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never started the command", leader.name)
		}
		leader.kill()
		if s, _ := state(d); s != bot.JournalPending {
			t.Fatalf("after %s's death the entry is %s, want pending", leader.name, s)
		}
		if got := route().Spec.Rollout.Traffic[1].Percent; got != 30 {
			t.Fatalf("next at %d%% before anyone applied the command", got)
		}
		testutil.Eventually(t, 30*time.Second, other.name+" takes the Lease", func() (bool, string) { return holder() == other.name, "holder " + holder() })
		rocket(id)
		wantTraffic(60) // the survivor's reconciler, now the only one, follows too
		moved(d)
	})
}

// BenchmarkKubeJournalRecord is what a replica does on a cluster before it
// answers 202: one ConfigMap Create with a recorded comment's payload.
func BenchmarkKubeJournalRecord(b *testing.B) {
	c := testCluster(b)
	j, err := bot.NewKubeJournal(c.Client, testNamespace(b, c, "bench-record"))
	if err != nil {
		b.Fatal(err)
	}
	p := githubtest.Payload(b, "issue_comment.created.with-installation.json")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if isNew, err := j.Record(bot.Entry{Delivery: fmt.Sprintf("record-%d", i), Event: "issue_comment", Payload: p}); err != nil || !isNew {
			b.Fatalf("Record = %v, %v", isNew, err)
		}
	}
}

// BenchmarkKubeJournalHandOver is what a follower's 202 adds before the
// leader can start on it: from one replica's Record to the other's watch
// signal.
func BenchmarkKubeJournalHandOver(b *testing.B) {
	c := testCluster(b)
	ns := testNamespace(b, c, "bench-handover")
	follower, err := bot.NewKubeJournal(c.Client, ns)
	if err != nil {
		b.Fatal(err)
	}
	leader, err := bot.NewKubeJournal(c.Client, ns)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := leader.Changes(ctx, func(err error) { b.Error(err) })
	p := githubtest.Payload(b, "issue_comment.created.with-installation.json")
	b.ResetTimer()
	for i := range b.N {
		if _, err := follower.Record(bot.Entry{Delivery: fmt.Sprintf("handover-%d", i), Event: "issue_comment", Payload: p}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-changes:
		case <-time.After(30 * time.Second):
			b.Fatalf("no signal for entry %d", i)
		}
	}
}
