// Package testutil holds the helpers every package's tests share: golden
// files with one -update flag, and Eventually for waiting on a condition
// with a deadline instead of sleeping. It is imported by tests only.
package testutil

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// Golden compares got with the file at path (rewritten with -update).
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}

// Eventually polls cond every tick until it returns true, and fails the
// test with what (and cond's last word) when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	EventuallyEvery(t, timeout, 20*time.Millisecond, what, cond)
}

// EventuallyEvery is Eventually polling every tick, for conditions that
// cost something to check (a kubectl process, an HTTP round trip).
func EventuallyEvery(t testing.TB, timeout, tick time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(tick)
	}
}
