package kube

import (
	"context"
	"fmt"
	"github.com/elafros/elafros/internal/registryhost"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// dockerHub is the registry go-containerregistry names Docker Hub; mirrors
// may be keyed by it or by its short name.
const (
	dockerHub      = name.DefaultRegistry
	dockerHubShort = "docker.io"
)

// imageResolver pins image tags to digests, through registry mirrors.
type imageResolver struct {
	mirrors  map[string]string
	keychain authn.Keychain
	timeout  time.Duration
}

// pin returns image by digest. A reference that already carries a digest
// is returned unchanged; a tag is looked up (HEAD, then GET for registries
// that answer HEAD badly) on the mirror of its registry, if any, and the
// digest is appended to the repository as image spells it, so the
// workload pulls the original repository.
func (r *imageResolver) pin(ctx context.Context, image string) (string, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", err
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return image, nil // already a digest
	}
	target, err := r.lookupTag(tag)
	if err != nil {
		return "", err
	}
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain)}
	desc, err := remote.Head(target, opts...)
	if err != nil {
		full, gerr := remote.Get(target, opts...)
		if gerr != nil {
			return "", gerr
		}
		desc = &full.Descriptor
	}
	return repositoryOf(image) + "@" + desc.Digest.String(), nil
}

// lookupTag is where tag is fetched from: the same repository on its
// registry's mirror when one is configured, over plain HTTP on loopback.
func (r *imageResolver) lookupTag(tag name.Tag) (name.Tag, error) {
	host := tag.RegistryStr()
	if m, ok := r.mirrorOf(host); ok {
		host = m
	}
	repo, err := name.NewRepository(host + "/" + tag.RepositoryStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("mirror repository for %s: %w", tag, err)
	}
	if registryhost.Loopback(repo.RegistryStr()) {
		if repo, err = name.NewRepository(host+"/"+tag.RepositoryStr(), name.Insecure); err != nil {
			return name.Tag{}, err
		}
	}
	return repo.Tag(tag.TagStr()), nil
}

func (r *imageResolver) mirrorOf(registry string) (string, bool) {
	if m, ok := r.mirrors[registry]; ok {
		return m, true
	}
	if registry == dockerHub {
		m, ok := r.mirrors[dockerHubShort]
		return m, ok
	}
	return "", false
}

// repositoryOf strips the tag from an image reference as written
// ("gcr.io/p/app:v1" -> "gcr.io/p/app"; "localhost:5000/app" unchanged).
func repositoryOf(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}
