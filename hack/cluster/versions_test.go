package cluster

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBuildScriptAgrees asks build.sh where it puts the binaries for the
// pinned versions, and compares that with what the Go side computes: the
// two read one file, and must name one directory.
func TestBuildScriptAgrees(t *testing.T) {
	for _, env := range [][]string{
		{"ELAFROS_CLUSTER_CACHE=" + t.TempDir()},
		{"ELAFROS_CLUSTER_CACHE=", "XDG_CACHE_HOME=" + t.TempDir()},
		{"ELAFROS_CLUSTER_CACHE=", "XDG_CACHE_HOME=", "HOME=" + t.TempDir()},
	} {
		t.Run(strings.Join(env, " "), func(t *testing.T) {
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			cmd := exec.Command("bash", "build.sh", "--print-dir")
			cmd.Env = os.Environ()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("build.sh --print-dir: %v\n%s", err, out)
			}
			if got, want := strings.TrimSpace(string(out)), BinDir(); got != want {
				t.Errorf("build.sh puts binaries in %s, the Go side looks in %s", got, want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	got := parse("# comment\n\nA=1\n  B=v2  \n")
	if len(got) != 2 || got["A"] != "1" || got["B"] != "v2" {
		t.Errorf("parse: %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("a line without = did not panic")
		}
	}()
	parse("JUSTAWORD\n")
}
