package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrNoDocker is the error (matched with errors.Is) of the docker
// builder where no Docker daemon answers.
var ErrNoDocker = errors.New("the docker builder needs a Docker daemon")

// dockerCommand is the docker client run by the docker builder.
var dockerCommand = "docker"

// dockerBuild builds the Dockerfile of dir with the Docker daemon, pushes
// it to dest and returns it by digest. It uses buildx where the client
// has it (BuildKit, pushing straight from the builder), and the classic
// "docker build" then "docker push" where it does not (Debian's docker.io
// ships no buildx plugin).
func dockerBuild(ctx context.Context, dir, dest, host string, kc authn.Keychain, log io.Writer) (string, error) {
	env := os.Environ()
	if host != "" {
		env = append(env, "DOCKER_HOST="+host)
	}
	out, err := runLogged(ctx, log, dir, env, dockerCommand, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		why := strings.TrimSpace(tail(out, 3))
		if why == "" {
			why = err.Error()
		} else {
			why = err.Error() + ": " + why
		}
		return "", fmt.Errorf("%w; none answered (%s). Use the go or go-function builder, or run where docker works", ErrNoDocker, why)
	}
	ref, err := name.ParseReference(dest)
	if err != nil {
		return "", fmt.Errorf("destination image %q: %w", dest, err)
	}
	if _, err := runLogged(ctx, io.Discard, dir, env, dockerCommand, "buildx", "version"); err == nil {
		out, err = runLogged(ctx, log, dir, env, dockerCommand, "buildx", "build", "--push", "-t", ref.String(), ".")
		if err != nil {
			return "", &StepError{Step: "docker buildx build", Err: err, Output: tail(out, tailLines)}
		}
	} else {
		out, err = runLogged(ctx, log, dir, env, dockerCommand, "build", "-t", ref.String(), ".")
		if err != nil {
			return "", &StepError{Step: "docker build", Err: err, Output: tail(out, tailLines)}
		}
		out, err = runLogged(ctx, log, dir, env, dockerCommand, "push", ref.String())
		if err != nil {
			return "", &StepError{Step: "docker push", Err: err, Output: tail(out, tailLines)}
		}
	}
	desc, err := remote.Head(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return "", fmt.Errorf("resolving the pushed %s: %w", ref, err)
	}
	return ref.Context().Digest(desc.Digest.String()).String(), nil
}
