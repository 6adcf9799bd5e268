package testutil

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Docker returns the docker client to run when a Docker daemon answers.
// Where none does, the test skips on a workstation and fails under CI
// (CI=true), which starts one with hack/docker.sh: a test that needs the
// daemon must never pass there by not running.
func Docker(t testing.TB) string {
	t.Helper()
	cli := "docker"
	// Debian's docker.io client matches its daemon; a newer client
	// earlier on PATH works too, but prefer the pair.
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		cli = "/usr/bin/docker"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err == nil {
		return cli
	}
	why := strings.TrimSpace(string(out))
	if why == "" {
		why = err.Error()
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no Docker daemon answers (%s); CI must start one: bash hack/docker.sh", why)
	}
	t.Skipf("no Docker daemon answers (%s); start one with: sudo bash hack/docker.sh", why)
	return ""
}
