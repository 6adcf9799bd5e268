package bot_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elafros/elafros/api/v1alpha1"
)

// BenchmarkWebhookToTraffic is issue 13's figure: signed /rollout
// deliveries at 50 a second to the bot binary (a process of its own, so
// its memory is its own), with GitHub played at 20 ms a call, against
// elafros serve; the latency of each command runs from the POST to the
// route's status showing its split (status is written after the router
// has swapped to the new table). b.N is the number of commands:
//
//	go test ./internal/bot -run '^$' -bench WebhookToTraffic -benchtime 500x
func BenchmarkWebhookToTraffic(b *testing.B) {
	e := start(b)
	e.stopBot() // the in-process bot of the tests; the binary replaces it
	e.reset()
	e.gh.SetLatency(20 * time.Millisecond)

	bin := filepath.Join(b.TempDir(), "bot")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/elafros/elafros/cmd/bot").CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/bot: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--addr", addr, "--server", e.srv.APIURL, "--journal", filepath.Join(b.TempDir(), "j.db"))
	cmd.Env = append(os.Environ(), "GITHUB_WEBHOOK_SECRET="+string(secret), "GITHUB_TOKEN="+e.gh.Token, "GITHUB_API_URL="+e.gh.URL)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	e.botURL = "http://" + addr
	e.waitFor("the bot binary to be ready", 30*time.Second, func() bool {
		resp, err := http.Get(e.botURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	time.Sleep(time.Second) // at rest: started, nothing to do
	rest := memKB(b, cmd.Process.Pid, "VmRSS")

	// Watch the route's status for each percent's first appearance.
	wctx, stopWatch := context.WithCancel(b.Context())
	events, err := e.srv.Store.Watch(wctx)
	if err != nil {
		b.Fatal(err)
	}
	type seenAt struct {
		pct int
		at  time.Time
	}
	var mu sync.Mutex
	var seen, written []seenAt
	go func() {
		for ev := range events {
			rt, ok := ev.Object.(*v1alpha1.Route)
			if !ok || rt.Name != "hello" {
				continue
			}
			for _, x := range rt.Spec.Rollout.Traffic {
				if x.Name == "next" && x.RevisionName == e.pr[7] {
					mu.Lock()
					written = append(written, seenAt{x.Percent, time.Now()})
					mu.Unlock()
				}
			}
			for _, x := range rt.Status.Traffic {
				if x.Name == "next" && x.RevisionName == e.pr[7] {
					mu.Lock()
					seen = append(seen, seenAt{x.Percent, time.Now()})
					mu.Unlock()
				}
			}
		}
	}()

	// Percents 1..99 in turn, so a command's split is its own while it
	// is in flight (the same percent comes back ~2 s later).
	n := b.N
	sent := make([]time.Time, n)
	b.ResetTimer()
	tick := time.NewTicker(20 * time.Millisecond) // 50 a second
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		p, _ := e.commentPayload("created", 7, "writer", fmt.Sprintf("/rollout %d", 1+i%99), time.Now())
		wg.Add(1)
		sent[i] = time.Now()
		go func() {
			defer wg.Done()
			e.post("issue_comment", e.delivery(), secret, p)
		}()
	}
	tick.Stop()
	wg.Wait()
	peak := memKB(b, cmd.Process.Pid, "VmHWM")
	time.Sleep(3 * time.Second) // let the last ones land
	b.StopTimer()
	stopWatch()

	latencies := func(events []seenAt) []time.Duration {
		var lat []time.Duration
		for i := range n {
			for _, s := range events {
				if s.pct == 1+i%99 && s.at.After(sent[i]) {
					if s.at.Sub(sent[i]) < 2*time.Second { // not the same percent's next turn
						lat = append(lat, s.at.Sub(sent[i]))
					}
					break
				}
			}
		}
		slices.Sort(lat)
		return lat
	}
	mu.Lock()
	lat, wlat := latencies(seen), latencies(written)
	mu.Unlock()
	if len(lat) == 0 {
		b.Fatal("no command's split was seen")
	}
	q := func(l []time.Duration, f float64) float64 {
		if len(l) == 0 {
			return 0
		}
		return float64(l[int(f*float64(len(l)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(lat, 0.5), "p50-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(wlat, 0.5), "written-p50-ms")
	b.ReportMetric(q(wlat, 0.99), "written-p99-ms")
	b.ReportMetric(float64(len(lat)), "seen")
	b.ReportMetric(float64(n-len(lat)), "superseded")
	resp, err := http.Get(e.botURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "elafros_bot_commands_total{outcome=\""); ok {
			name, count, _ := strings.Cut(v, "\"} ")
			f, _ := strconv.ParseFloat(count, 64)
			b.ReportMetric(f, name)
		}
	}
	resp.Body.Close()
	b.ReportMetric(float64(rest)/1024, "rss-rest-MB")
	b.ReportMetric(float64(peak)/1024, "rss-peak-MB")
}

// memKB reads a VmRSS/VmHWM line of /proc/PID/status.
func memKB(b *testing.B, pid int, key string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}
