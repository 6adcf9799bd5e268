// Package cluster holds the test cluster's version pins (versions.env, also
// sourced by build.sh) and the name of the cache directory build.sh fills,
// so that the Go side (internal/kube/kubetest, hack/cluster/up) and the
// script never disagree. The cluster itself is started by kubetest.
package cluster
