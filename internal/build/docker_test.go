package build

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/testutil"
)

// TestDockerBuilder builds Dockerfiles with a real Docker daemon (started
// by hack/docker.sh; FROM scratch, since nothing can be pulled here),
// pushes to a real registry and reads the image back by the digest the
// builder returned.
func TestDockerBuilder(t *testing.T) {
	cli := testutil.Docker(t)
	prev := dockerCommand
	dockerCommand = cli
	t.Cleanup(func() { dockerCommand = prev })

	reg := processtest.StartRegistry(t)
	r := newRepo(t)
	sha := r.commit("app", map[string]string{
		"Dockerfile":   "FROM scratch\nCOPY greeting.txt /srv/greeting.txt\nENV GREETING=hello\nENTRYPOINT [\"/app\"]\n",
		"greeting.txt": "Hello from a Dockerfile\n",
	})

	t.Run("builds, pushes and resolves by digest", func(t *testing.T) {
		b := newBuilder(t, Options{Registry: reg})
		state, err := b.Build(context.Background(), "default", "docker-app", gitSpec(r.url(), sha, TemplateDocker), "")
		if err != nil || !state.Done || state.Failed {
			t.Fatalf("Build = %+v, %v; want a finished build\nlog:\n%s", state, err, b.Log("default", "docker-app"))
		}
		ref, err := name.NewDigest(state.Image)
		if err != nil {
			t.Fatalf("image %q is not pinned by digest: %v", state.Image, err)
		}
		t.Cleanup(func() { _ = exec.Command(cli, "rmi", ref.Context().Tag("latest").String()).Run() })
		if !strings.HasPrefix(ref.Context().String(), reg+"/default/docker-app") {
			t.Errorf("image %s, want it under %s/default/docker-app", state.Image, reg)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(cfg.Config.Env, " "), "GREETING=hello") || strings.Join(cfg.Config.Entrypoint, " ") != "/app" {
			t.Errorf("config %+v, want the Dockerfile's ENV and ENTRYPOINT", cfg.Config)
		}
		if got := fileIn(t, img, "srv/greeting.txt"); got != "Hello from a Dockerfile\n" {
			t.Errorf("/srv/greeting.txt = %q, want the committed file", got)
		}
		if log := b.Log("default", "docker-app"); !strings.Contains(log, "$ "+cli) {
			t.Errorf("the build log does not show the docker commands:\n%s", log)
		}
	})

	t.Run("a failing Dockerfile fails the step with docker's words", func(t *testing.T) {
		bad := newRepo(t)
		badSHA := bad.commit("bad", map[string]string{"Dockerfile": "FROM scratch\nCOPY missing.txt /missing.txt\n"})
		b := newBuilder(t, Options{Registry: reg})
		state, err := b.Build(context.Background(), "default", "bad-app", gitSpec(bad.url(), badSHA, TemplateDocker), "")
		var be *BuildError
		if !errors.As(err, &be) || !state.Failed || state.Reason != ReasonBuildStepFailed {
			t.Fatalf("Build = %+v, %v; want BuildStepFailed", state, err)
		}
		if !strings.Contains(state.Message, "docker") || !strings.Contains(state.Message, "missing.txt") {
			t.Errorf("message %q, want the docker step and docker's complaint about missing.txt", state.Message)
		}
	})
}

// fileIn reads one file of img's flattened filesystem.
func fileIn(t testing.TB, img v1.Image, path string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no /%s in the image", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") == path {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}
