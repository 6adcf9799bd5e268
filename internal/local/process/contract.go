// Package process is the local control plane's runtime: a Ready revision
// runs as a process unpacked from its image (pulled with
// go-containerregistry from a registry or an OCI layout, unpacked once per
// digest into a cache), with the image config's entrypoint and env plus
// the revision's env and PORT. Readiness is a probe of the port; a crash
// restarts with backoff; output is kept per revision. It implements
// reconcile.Runtime and router.Resolver. It holds no business rules.
package process
