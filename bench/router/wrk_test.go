package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		file string
		want wrkResult
	}{
		{"wrk-ok.txt", wrkResult{Requests: 384, RPS: 376.67, P50: 3580 * time.Microsecond, P99: 40730 * time.Microsecond}},
		{"wrk-non2xx.txt", wrkResult{Requests: 971, RPS: 958.99, P50: 1440 * time.Microsecond, P99: 68080 * time.Microsecond, Non2xx: 971}},
		{"wrk-socket-errors.txt", wrkResult{Requests: 151234, RPS: 18903.51, P50: 812 * time.Microsecond, P99: 1050 * time.Millisecond, SocketErrs: 6}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWrk(string(b))
			if err != nil {
				t.Fatal(err)
			}
			// wrk prints two decimals; float parsing may be off in the last bit.
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b time.Duration) bool {
				return (a - b).Abs() < time.Microsecond
			})); d != "" {
				t.Errorf("parseWrk (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseWrkRefusesIncompleteReports(t *testing.T) {
	ok, err := os.ReadFile(filepath.Join("testdata", "wrk-ok.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, drop, wantErr string }{
		{"no --latency", "     99%   40.73ms\n", "--latency"},
		{"no Requests/sec", "Requests/sec:    376.67\n", "Requests/sec"},
		{"no request count", "  384 requests in 1.02s, 2.48MB read\n", "request count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(string(ok), tc.drop, "", 1)
			if in == string(ok) {
				t.Fatalf("test data lacks %q", tc.drop)
			}
			if _, err := parseWrk(in); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseWrk without %q: err %v, want one naming %q", tc.drop, err, tc.wantErr)
			}
		})
	}
	if _, err := parseWrk(strings.Replace(string(ok), "3.58ms", "3.58h", 1)); err == nil || !strings.Contains(err.Error(), "us, ms, s or m") {
		t.Errorf("a unit wrk does not print: err %v, want one listing the units", err)
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		wantErr    string
	}{
		{"plain", "15169 (cat) R 15166 15166 21062 0 -1 4194304 96 0 0 0 7 3 0 0 20 0 1 0 1219855", 100 * time.Millisecond, ""},
		{"name with spaces and parentheses", "42 (a (b) c) S 1 42 42 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0 1", 3 * time.Second, ""},
		{"truncated", "42 (x) S 1 2 3", 0, "want at least 13"},
		{"no name", "42 x S", 0, "no ')'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{1.2}, 1.2},
		{[]float64{1.3, 0.9, 1.1}, 1.1},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(tc.xs)
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
		if !slices.Equal(in, tc.xs) {
			t.Errorf("median reordered its argument: %v, was %v", tc.xs, in)
		}
	}
}

// TestRunOrder: each round runs every target once, targets 0 and 1 back
// to back, each of them first in alternate rounds, and the first target
// of a round changes from round to round.
func TestRunOrder(t *testing.T) {
	for n := 1; n <= 9; n++ {
		first := map[int]bool{}
		for round := range 6 {
			order := runOrder(n, round)
			sorted := slices.Sorted(slices.Values(order))
			for i, v := range sorted {
				if v != i {
					t.Fatalf("runOrder(%d, %d) = %v: not each target once", n, round, order)
				}
			}
			if n >= 2 {
				a, b := slices.Index(order, 0), slices.Index(order, 1)
				if b-a != 1 && a-b != 1 {
					t.Errorf("runOrder(%d, %d) = %v: targets 0 and 1 not back to back", n, round, order)
				}
				if (a < b) != (round%2 == 0) {
					t.Errorf("runOrder(%d, %d) = %v: target %d first, want them to take turns", n, round, order, order[min(a, b)])
				}
			}
			first[order[0]] = true
		}
		if n >= 3 && len(first) < 2 {
			t.Errorf("runOrder(%d, ·) always starts with %v", n, first)
		}
	}
}
