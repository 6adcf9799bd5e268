// Package registry is the local control plane's OCI registry: CNCF
// Distribution (github.com/distribution/distribution/v3) embedded as an
// http.Handler over its filesystem driver, so that manifests, tags and
// blobs pushed to elafros serve are on disk and survive a restart (the
// in-memory registry it replaces forgot every manifest and tag). Deletes
// are enabled: it serves the OCI distribution-spec's pull, push, content
// discovery and content management workflows, which its conformance test
// checks with the OCI suite. It stores; it holds no rules of elafros.
package registry
