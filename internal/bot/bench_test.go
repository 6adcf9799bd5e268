package bot_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
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
	"github.com/elafros/elafros/internal/bot"
	"github.com/elafros/elafros/internal/local/router"
)

// BenchmarkWebhookToTraffic is issue 13's figure: signed /rollout
// deliveries at 50 a second to the bot binary (a process of its own, so
// its memory is its own), with GitHub played at 20 ms a call, against
// elafros serve (its store, reconciler and router, in this process). The
// latency of each command runs from its POST to the route's status showing
// its split or a later command's (status is written after the router has
// swapped to the new split; commands the bot received out of the order
// they were sent in, when a POST is delayed, make this approximate); at
// the end, with the bot stopped, 100 requests through the router must
// show exactly the split of the last command the journal says it applied. b.N is the number of
// commands; p50/p99 of -1 mean that more than that share of the commands
// was not applied within 30 s of the last POST:
//
//	go test ./internal/bot -run '^$' -bench WebhookToTraffic -benchtime 500x
//	bash bench/run.sh bot
func BenchmarkWebhookToTraffic(b *testing.B) {
	e := start(b)
	e.stopBot() // the in-process bot of the tests; the binary replaces it
	e.reset()
	e.gh.SetLatency(20 * time.Millisecond)

	// BOT_BIN measures another build of the bot (an earlier commit's, for
	// a before/after on the same machine at the same time).
	bin := os.Getenv("BOT_BIN")
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "bot")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/elafros/elafros/cmd/bot").CombinedOutput(); err != nil {
			b.Fatalf("go build ./cmd/bot: %v\n%s", err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	journal := filepath.Join(b.TempDir(), "j.db")
	cmd := exec.Command(bin, "--addr", addr, "--server", e.srv.APIURL, "--journal", journal)
	cmd.Env = append(os.Environ(), "GITHUB_WEBHOOK_SECRET="+string(secret), "GITHUB_TOKEN="+e.gh.Token, "GITHUB_API_URL="+e.gh.URL)
	logPath := filepath.Join(b.TempDir(), "bot.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var stopped bool
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}
	}
	b.Cleanup(stop)
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

	// Watch the route: each change of next's percent, in spec (the write)
	// and in status (written by the reconciler only after the router
	// swapped to the new split: reconcile/route.go applies the traffic,
	// then updates status).
	wctx, stopWatch := context.WithCancel(b.Context())
	events, err := e.srv.Store.Watch(wctx)
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var seen, written []seenAt
	go func() {
		for ev := range events {
			rt, ok := ev.Object.(*v1alpha1.Route)
			if !ok || rt.Name != "hello" {
				continue
			}
			now := time.Now()
			mu.Lock()
			for _, x := range rt.Spec.Rollout.Traffic {
				if x.Name == "next" && x.RevisionName == e.pr[7] {
					written = append(written, seenAt{x.Percent, now})
				}
			}
			for _, x := range rt.Status.Traffic {
				if x.Name == "next" && x.RevisionName == e.pr[7] {
					seen = append(seen, seenAt{x.Percent, now})
				}
			}
			mu.Unlock()
		}
	}()

	// Percents 1..99 in turn, so that the percent seen names the command
	// (the same percent comes back 99 commands, about 2 s, later).
	n := b.N
	pct := func(i int) int { return 1 + i%99 }
	cpuStart := cpuTime(b, cmd.Process.Pid)
	sent := make([]time.Time, n)
	deliveries := map[string]int{} // delivery → command
	b.ResetTimer()
	tick := time.NewTicker(20 * time.Millisecond) // 50 a second
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		p, _ := e.commentPayload("created", 7, "writer", fmt.Sprintf("/rollout %d", pct(i)), time.Now())
		wg.Add(1)
		d := e.delivery()
		deliveries[d] = i
		sent[i] = time.Now()
		go func() {
			defer wg.Done()
			if code := e.post("issue_comment", d, secret, p); code != http.StatusAccepted {
				b.Errorf("command %d: the bot answered the delivery %d, want 202", i, code)
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	peak := memKB(b, cmd.Process.Pid, "VmHWM")
	// Until every command is answered (so applied) and the status shows
	// the spec's split, or 30 s (a bound, not a measure: on a loaded
	// machine the bot can end seconds behind).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		settled := len(seen) > 0 && len(written) > 0 && seen[len(seen)-1].pct == written[len(written)-1].pct
		mu.Unlock()
		if settled && answered(b, e.botURL) >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	stopWatch()
	cpu := cpuTime(b, cmd.Process.Pid) - cpuStart

	mu.Lock()
	lat, own := applied(seen, sent, pct)
	wlat, _ := applied(written, sent, pct)
	mu.Unlock()
	q := func(l []time.Duration, f float64) float64 {
		if len(l) < n {
			// Some commands were never applied within the wait: the
			// quantiles beyond what was measured are unknown.
			if int(f*float64(n-1)) >= len(l) {
				return -1
			}
		}
		return float64(l[int(f*float64(n-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(lat, 0.5), "p50-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(wlat, 0.5), "written-p50-ms")
	b.ReportMetric(q(wlat, 0.99), "written-p99-ms")
	b.ReportMetric(float64(n-len(lat)), "not-applied")
	b.ReportMetric(float64(own), "own-split-served")
	resp, err := http.Get(e.botURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var outcomes []string
	// Where the time goes: the mean of each phase (the bot's histogram's
	// sum over its count).
	phaseSum, phaseCount := map[string]float64{}, map[string]float64{}
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "elafros_bot_commands_total{outcome=\""); ok {
			name, count, _ := strings.Cut(v, "\"} ")
			f, _ := strconv.ParseFloat(count, 64)
			b.ReportMetric(f, name)
			outcomes = append(outcomes, name+" "+count)
		}
		for suffix, into := range map[string]map[string]float64{"_sum": phaseSum, "_count": phaseCount} {
			if v, ok := strings.CutPrefix(sc.Text(), "elafros_bot_command_phase_seconds"+suffix+"{phase=\""); ok {
				name, val, _ := strings.Cut(v, "\"} ")
				into[name], _ = strconv.ParseFloat(val, 64)
			}
		}
	}
	resp.Body.Close()
	var phases []string
	for _, ph := range []string{"queue", "read", "turn", "write"} {
		if phaseCount[ph] > 0 {
			mean := phaseSum[ph] / phaseCount[ph] * 1000
			b.ReportMetric(mean, ph+"-mean-ms")
			phases = append(phases, fmt.Sprintf("%s %.1f ms", ph, mean))
		}
	}
	b.Logf("mean time in each phase of a command: %s", strings.Join(phases, ", "))
	// The bot's own CPU time per command (user and system, until the last
	// split was served): what the machine's load changes least.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n), "bot-cpu-ms/cmd")
	b.ReportMetric(float64(rest)/1024, "rss-rest-MB")
	b.ReportMetric(float64(peak)/1024, "rss-peak-MB")
	b.Logf("p50 %.0f ms, p99 %.0f ms, %d not applied, bot CPU %.1f ms a command, RSS %.1f MB at rest, %.1f MB at peak; commands answered so far: %s",
		q(lat, 0.5), q(lat, 0.99), n-len(lat), float64(cpu.Microseconds())/1000/float64(n), float64(rest)/1024, float64(peak)/1024, strings.Join(outcomes, ", "))
	// Last (a failed benchmark prints the line above, not its metrics):
	// the router serves the last split: over any 100 requests its
	// smooth weighted round-robin picks each revision exactly its percent
	// of the time, so 100 requests in a row show the split exactly.
	// The bot applies commands in the order it received them, which on a
	// loaded machine is not always the order they were sent in (the
	// POSTs are concurrent): the last one is the journal's.
	stop()
	j, err := bot.OpenBoltJournal(journal)
	if err != nil {
		b.Fatal(err)
	}
	entries, err := j.Entries()
	_ = j.Close()
	if err != nil {
		b.Fatal(err)
	}
	lastCmd := -1
	for _, en := range entries {
		if i, ok := deliveries[en.Delivery]; ok && en.Outcome == "moved" {
			lastCmd = i
		}
	}
	if lastCmd != n-1 {
		b.Logf("the last command received was #%d, not the last sent (#%d)", lastCmd, n-1)
	}
	if lastCmd < 0 {
		b.Fatal("no command is done in the journal")
	}
	if got := routerShare(b, e, e.pr[7]); got != pct(lastCmd) {
		spec := 0
		for _, x := range e.traffic() {
			if x.Name == "next" && x.RevisionName == e.pr[7] {
				spec = x.Percent
			}
		}
		b.Errorf("the router serves %d%% to %s after the last command (the route's spec says %d%%), want %d%%", got, e.pr[7], spec, pct(lastCmd))
		if log, err := os.ReadFile(logPath); err == nil {
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			b.Logf("the bot's log, last lines:\n%s", strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	}
}

type seenAt struct {
	pct int
	at  time.Time
}

// applied is each command's latency, sorted: from its POST to the first
// time the route showed its split or that of a later command (commands on
// a route are applied in order, and those that come in together are
// written together, so a command can be overtaken by a later one in the
// same write: its effect is then that the later one's split is served).
// The splits seen are an in-order subsequence of the commands' (writes
// follow acceptance order), so each new split is the next command with
// its percent: no guessing by time, however far behind the bot runs. own
// counts the splits seen.
func applied(events []seenAt, sent []time.Time, pct func(int) int) (lat []time.Duration, own int) {
	covered, last := 0, -1 // commands [0, covered) are applied
	for _, ev := range events {
		if ev.pct == last {
			continue // the same split, seen again (a status update)
		}
		last = ev.pct
		j := -1
		for i := covered; i < len(sent) && i < covered+99; i++ {
			if pct(i) == ev.pct {
				j = i
				break
			}
		}
		if j < 0 || sent[j].IsZero() || !sent[j].Before(ev.at) {
			continue // not a command's split (the fixture's)
		}
		own++
		for ; covered <= j; covered++ {
			lat = append(lat, ev.at.Sub(sent[covered]))
		}
	}
	slices.Sort(lat)
	return lat, own
}

// routerShare sends 100 requests to the route through the router and
// returns how many rev answered.
func routerShare(b *testing.B, e *env, rev string) int {
	n := 0
	for range 100 {
		req, err := http.NewRequest("GET", "http://"+e.srv.HTTPAddr+"/", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Host = "hello." + ns + "." + e.srv.Domain
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get(router.RevisionHeader) == rev {
			n++
		}
	}
	return n
}

// cpuTime is a process's user and system CPU time (/proc/PID/stat).
func cpuTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis: state is the 3rd
	// field of stat, utime and stime the 14th and 15th.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// answered is how many commands the bot has carried out and answered
// (elafros_bot_commands_total, all outcomes).
func answered(b *testing.B, botURL string) int {
	resp, err := http.Get(botURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "elafros_bot_commands_total{"); ok {
			_, count, _ := strings.Cut(v, "} ")
			f, _ := strconv.ParseFloat(count, 64)
			sum += int(f)
		}
	}
	return sum
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
