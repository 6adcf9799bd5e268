package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run measured.
type wrkResult struct {
	Requests   int64
	RPS        float64
	P50, P99   time.Duration
	Non2xx     int64
	SocketErrs int64
	// CPUPerRequest is filled in by the caller: the target's CPU time
	// over the run divided by Requests.
	CPUPerRequest time.Duration
	// RevCPUPerRequest is filled in by the caller too: the CPU time of
	// the revision processes that answered through the target, per
	// request (zero for a target that is a revision itself).
	RevCPUPerRequest time.Duration
}

// runWrk loads url for d with threads and conns, every request carrying
// host as its Host, and parses wrk's --latency report.
func runWrk(ctx context.Context, bin, url, host string, threads, conns int, d time.Duration) (wrkResult, string, error) {
	args := []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	args = append(args, url)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, out)
	}
	r, err := parseWrk(string(out))
	return r, string(out), err
}

// parseWrk reads wrk's report: "Requests/sec:", the "Latency
// Distribution" lines of --latency (50% and 99%), "N requests in",
// "Non-2xx or 3xx responses:" and "Socket errors:".
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, have50, have99, haveN bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk report: %q: %w", line, err)
			}
			r.RPS, haveRPS = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			v, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk report: %q: %w", line, err)
			}
			if f[0] == "50%" {
				r.P50, have50 = v, true
			} else {
				r.P99, have99 = v, true
			}
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk report: %q: %w", line, err)
			}
			r.Requests, haveN = v, true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			v, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk report: %q: %w", line, err)
			}
			r.Non2xx = v
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return r, fmt.Errorf("wrk report: %q: want \"kind N\" pairs", line)
				}
				v, err := strconv.ParseInt(kv[1], 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk report: %q: %w", line, err)
				}
				r.SocketErrs += v
			}
		}
	}
	if !haveRPS || !have50 || !have99 || !haveN {
		return r, fmt.Errorf("wrk report lacks Requests/sec, the 50%%/99%% latency lines (--latency) or the request count:\n%s", out)
	}
	return r, nil
}

// parseWrkDuration reads wrk's units: "812.00us", "1.23ms", "2.00s",
// "1.00m".
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, err)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("duration %q: want a number followed by us, ms, s or m", s)
}
