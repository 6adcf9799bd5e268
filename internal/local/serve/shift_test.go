package serve_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// TestGradualShift: a route with elafros.dev/rollout-duration moves onto
// a new revision in steps, and what the router really serves (measured
// over 4,000 requests) follows status.traffic at each step. The
// reconciler's clock is moved by the test, so each step is exact; the
// processes, the router and the reconciler's requeueing are real. Each
// revision's status.logUrl is this API's log endpoint.
func TestGradualShift(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().Truncate(time.Second).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	srv, err := serve.Start(context.Background(), serve.Options{
		DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reconcile: reconcile.Options{Now: clock},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	st, err := client.ForServer(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	e := &env{t: t, srv: srv, c: deploy.New(st, "default"), st: st,
		image: processtest.BuildImage(t, srv.RegistryAddr, "e2e/server", processtest.ServerDir()),
		http:  &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	ctx := t.Context()

	r1 := e.configuration("shift", "one", nil)
	if _, err := st.Create(ctx, &v1alpha1.Route{
		ObjectMeta: metav1.ObjectMeta{Name: "shift", Namespace: "default", Annotations: map[string]string{v1alpha1.RolloutDurationAnnotationKey: "100s"}},
		Spec:       v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: []v1alpha1.TrafficTarget{{ConfigurationName: "shift", Percent: 100}}}},
	}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the first revision serving", 30*time.Second, func() bool { return e.routeTraffic("shift") == "["+r1+" 100]" })
	o, err := st.Get(ctx, store.KindRevision, "default", r1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.(*v1alpha1.Revision).Status.LogURL, srv.APIURL+"/apis/elafros.dev/v1alpha1/namespaces/default/revisions/"+r1+"/log"; got != want {
		t.Errorf("logUrl = %q, want %q", got, want)
	}

	r2 := e.configuration("shift", "two", nil)
	e.waitFor("the move to "+r2+" to begin", 30*time.Second, func() bool {
		o, err := st.Get(ctx, store.KindRoute, "default", "shift")
		return err == nil && len(o.(*v1alpha1.Route).Status.Rollouts) == 1
	})
	o, err = st.Get(ctx, store.KindRoute, "default", "shift")
	if err != nil {
		t.Fatal(err)
	}
	start := o.(*v1alpha1.Route).Status.Rollouts[0].StartTime.Time
	for _, step := range []struct {
		at   time.Duration
		want map[string]int
	}{
		{25 * time.Second, map[string]int{r1: 75, r2: 25}},
		{50 * time.Second, map[string]int{r1: 50, r2: 50}},
		{90 * time.Second, map[string]int{r1: 10, r2: 90}},
		{100 * time.Second, map[string]int{r2: 100}},
	} {
		now.Store(start.Add(step.at).UnixNano())
		want := ""
		for _, rev := range []string{r1, r2} {
			if p, ok := step.want[rev]; ok {
				want += " " + rev + " " + strconv.Itoa(p)
			}
		}
		want = "[" + strings.TrimSpace(want) + "]"
		// The reconciler sees the new time at its next requeue (within a
		// second or so of real time), then the router applies the split.
		e.waitFor("status "+want, 30*time.Second, func() bool { return e.routeTraffic("shift") == want })
		counts := map[string]int{}
		for range 4000 {
			code, body, err := e.get("shift.default.localhost", "/")
			if err != nil || code != 200 {
				t.Fatalf("GET: %d %q %v", code, body, err)
			}
			counts[strings.Fields(body)[0]]++
		}
		t.Logf("%s into the shift, status %s: measured %s=%d %s=%d of 4000", step.at, want, r1, counts[r1], r2, counts[r2])
		for rev, pct := range step.want {
			if d := counts[rev] - 40*pct; d < -80 || d > 80 {
				t.Errorf("%s into the shift: %s got %d of 4000, want %d±80 (%d%%±2%%)", step.at, rev, counts[rev], 40*pct, pct)
			}
		}
		if got := len(counts); got != len(step.want) {
			t.Errorf("%s into the shift: revisions answering %v, want only %v", step.at, counts, step.want)
		}
	}
	o, err = st.Get(ctx, store.KindRoute, "default", "shift")
	if err != nil {
		t.Fatal(err)
	}
	rt := o.(*v1alpha1.Route)
	done := [2]bool{rt.Status.Conditions.IsTrue(v1alpha1.ConditionRolloutComplete), rt.Status.Conditions.IsFalse(v1alpha1.ConditionRolloutInProgress)}
	if d := cmp.Diff([2]bool{true, true}, done); d != "" {
		t.Errorf("at the end, RolloutComplete True and RolloutInProgress False (-want +got):\n%s", d)
	}
}

// routeTraffic is a route's status.traffic as "[rev pct ...]".
func (e *env) routeTraffic(name string) string {
	o, err := e.st.Get(e.t.Context(), store.KindRoute, "default", name)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, x := range o.(*v1alpha1.Route).Status.Traffic {
		parts = append(parts, x.RevisionName+" "+strconv.Itoa(x.Percent))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
