package action_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/cli"
	"github.com/elafros/elafros/internal/local/serve"
)

// BenchmarkStartup is the action's start-up: the binary run in validate
// mode on examples/hello's manifest, as a runner starts it.
func BenchmarkStartup(b *testing.B) {
	ws, err := filepath.Abs("../../examples/hello")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cmd := exec.Command(actionBin)
		cmd.Env = []string{"INPUT_MODE=validate", "GITHUB_WORKSPACE=" + ws, "GITHUB_EVENT_NAME=push"}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
	}
}

// BenchmarkDeployHello deploys a change of the hello app with the action
// binary (build from the commit, push, apply, wait until it serves 100%)
// to a running elafros serve, beside the peer: "elafros up" of the same
// app (control plane start, build, deploy) in the same run.
func BenchmarkDeployHello(b *testing.B) {
	b.Run("action", func(b *testing.B) {
		srv, err := serve.Start(context.Background(), serve.Options{DataDir: b.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
			NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		ws := b.TempDir()
		src, err := os.ReadFile("../../examples/hello/main.go")
		if err != nil {
			b.Fatal(err)
		}
		manifest, err := os.ReadFile("../../examples/hello/elafros.yaml") // both platforms, as up builds
		if err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			// A configuration change (the greeting) makes a new revision;
			// the code is the same, so the build is as warm as up's.
			sha := commitTB(b, ws, map[string]string{"go.mod": "module example.com/hello\n\ngo 1.26\n", "main.go": string(src),
				"elafros.yaml": strings.Replace(string(manifest), "value: world", fmt.Sprintf("value: world%d", i), 1)})
			b.StartTimer()
			cmd := exec.Command(actionBin)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GOFLAGS=-mod=mod",
				"GITHUB_EVENT_NAME=push", "GITHUB_WORKSPACE=" + ws, "GITHUB_SHA=" + sha, "GITHUB_REPOSITORY=" + repoName, "INPUT_SERVER=" + srv.APIURL}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
		}
	})
	b.Run("elafros-up", func(b *testing.B) {
		dir, err := filepath.Abs("../../examples/hello")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			o := serve.Options{DataDir: b.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
				NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BuildSource: dir}
			srv, err := cli.Up(context.Background(), dir, o, 5*time.Minute, cli.IOStreams{In: os.Stdin, Out: io.Discard, ErrOut: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			srv.Close()
		}
	})
}
