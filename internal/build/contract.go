// Package build turns a commit into an image: provenance with go-git (the
// repository, commit, author and message; a dirty tree refused unless
// allowed), daemonless builders chosen by build.template.name (go,
// go-function; docker when a daemon answers), pushing with
// go-containerregistry and its keychains. Builder implements
// reconcile.Builder, so a Configuration with spec.build makes a build that
// its Revision waits for. It must not know GitHub.
package build
