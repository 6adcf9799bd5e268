# The few verbs people type. The README's two commands call into these.
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: build test lint generate fuzz check

build:
	$(GO) build -o bin/ ./cmd/...

# Every test, with the race detector (needs cgo: gcc).
test:
	$(GO) test -race -count=1 ./...

# gofmt, go vet and the pinned golangci-lint.
lint:
	bash hack/lint.sh

# Deep-copy and CRD YAML from api/v1alpha1 (TestGeneratedFilesAreFresh fails when stale).
generate:
	bash hack/generate.sh

fuzz:
	$(GO) test ./internal/manifest -run '^$$' -fuzz FuzzParse -fuzztime 60s

check: lint test
