package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Distribution v3.1.2 stores manifests with a subject but implements
// neither the referrers API nor the OCI-Subject header of the
// distribution-spec 1.1; this file adds both over the same storage, so
// that clients find an image's signatures and attestations without
// falling back to the referrers tag schema.

const (
	mediaTypeIndex = "application/vnd.oci.image.index.v1+json"
	// maxManifest is Distribution's own limit on a manifest's size.
	maxManifest = 4 << 20
)

var (
	referrersPath = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
	manifestPath  = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

// descriptor is the part of an OCI descriptor a referrers list carries.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifestHead is what the referrers API reads from a stored manifest.
type manifestHead struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *descriptor       `json:"config"`
	Subject      *descriptor       `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// serveReferrers answers GET /v2/<name>/referrers/<digest>: an image
// index of the repository's manifests whose subject is digest, filtered
// by ?artifactType= when given. An unknown repository or subject has an
// empty list, as the spec requires.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, name, ref string) {
	subject, err := digest.Parse(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("referrers: %q is not a digest: %v", ref, err))
		return
	}
	named, err := reference.WithName(name)
	if err != nil {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("referrers: repository %q: %v", name, err))
		return
	}
	filter := req.URL.Query().Get("artifactType")
	list, err := r.referrers(req.Context(), named, subject, filter)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	body, err := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, mediaTypeIndex, list})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", mediaTypeIndex)
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// referrers reads every manifest of the repository (a local registry
// holds few; a scan needs no index to keep consistent with deletes).
func (r *Registry) referrers(ctx context.Context, name reference.Named, subject digest.Digest, artifactType string) ([]descriptor, error) {
	list := []descriptor{}
	repo, err := r.ns.Repository(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("referrers: repository %s: %w", name, err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return nil, fmt.Errorf("referrers: %w", err)
	}
	enum, ok := ms.(distribution.ManifestEnumerator)
	if !ok {
		return nil, errors.New("referrers: the manifest store cannot be enumerated")
	}
	err = enum.Enumerate(ctx, func(d digest.Digest) error {
		// Through the manifest store: a manifest is linked to its
		// repository as a manifest revision, not as a blob.
		stored, err := ms.Get(ctx, d)
		var unknown distribution.ErrManifestUnknownRevision
		if errors.As(err, &unknown) || errors.Is(err, distribution.ErrBlobUnknown) {
			return nil // deleted while listing
		}
		if err != nil {
			return err
		}
		_, payload, err := stored.Payload()
		if err != nil {
			return err
		}
		var m manifestHead
		if json.Unmarshal(payload, &m) != nil || m.Subject == nil || m.Subject.Digest != subject {
			return nil
		}
		at := m.ArtifactType
		if at == "" && m.Config != nil {
			at = m.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			return nil
		}
		list = append(list, descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(payload)), ArtifactType: at, Annotations: m.Annotations})
		return nil
	})
	var unknown distribution.ErrRepositoryUnknown
	if errors.As(err, &unknown) || isPathNotFound(err) {
		return list, nil
	}
	if err != nil {
		return nil, fmt.Errorf("referrers: listing %s: %w", name, err)
	}
	return list, nil
}

func isPathNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// putManifest passes a manifest push to Distribution and, when the
// manifest has a subject and was stored, answers with OCI-Subject (the
// spec's signal that the registry indexed it for the referrers API).
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifest+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "reading the manifest: "+err.Error())
		return
	}
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	var m manifestHead
	if json.Unmarshal(body, &m) != nil || m.Subject == nil || m.Subject.Digest == "" {
		r.app.ServeHTTP(w, req)
		return
	}
	r.app.ServeHTTP(&subjectWriter{ResponseWriter: w, subject: m.Subject.Digest.String()}, req)
}

type subjectWriter struct {
	http.ResponseWriter
	subject string
}

func (s *subjectWriter) WriteHeader(code int) {
	if code == http.StatusCreated {
		s.Header().Set("OCI-Subject", s.subject)
	}
	s.ResponseWriter.WriteHeader(code)
}

// writeError answers in the distribution-spec's error format.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
