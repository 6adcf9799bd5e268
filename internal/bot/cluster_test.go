package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/elafros/elafros/internal/bot"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
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
func testCluster(t *testing.T) *kubetest.Cluster {
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
	n        atomic.Int64
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
func testNamespace(t *testing.T, c *kubetest.Cluster, prefix string) string {
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

// shortLease makes leadership change hands in seconds.
func shortLease(ns, identity string, keep bool) bot.LeaseConfig {
	return bot.LeaseConfig{Namespace: ns, Name: "elafros-bot", Identity: identity, KeepOnStop: keep,
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
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
