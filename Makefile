# The few verbs people type. The README's two commands call into these.
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: build test lint generate fuzz check cluster cluster-up cluster-down docker

build:
	$(GO) build -o bin/ ./cmd/...

# Every test, with the race detector (needs cgo: gcc). The Kubernetes tests
# need the test cluster's binaries: "make cluster" builds them once. The
# docker builder's and the Action image's tests need a Docker daemon:
# "make docker" installs and starts one (as root; a no-op when one answers).
test: cluster docker
	$(GO) test -race -count=1 -timeout 45m ./...

# The test cluster (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, Gateway API CRDs), built from the Go module proxy
# and cached; about 12 minutes on 2 cores the first time, instant after.
cluster:
	bash hack/cluster/build.sh

docker:
	bash hack/docker.sh

# The same cluster for a person, in the background: prints the KUBECONFIG
# to export. Versions: hack/cluster/versions.env.
cluster-up: cluster
	$(GO) run ./hack/cluster/up up

cluster-down:
	$(GO) run ./hack/cluster/up down

# gofmt, go vet and the pinned golangci-lint.
lint:
	bash hack/lint.sh

# Deep-copy and CRD YAML from api/v1alpha1 (TestGeneratedFilesAreFresh fails when stale).
generate:
	bash hack/generate.sh

fuzz:
	$(GO) test ./internal/manifest -run '^$$' -fuzz FuzzParse -fuzztime 60s

check: lint test
