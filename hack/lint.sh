#!/usr/bin/env bash
# gofmt, go vet and golangci-lint (pinned in hack/tools/golangci-lint/go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change these files (run gofmt -w):" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# The CLI, the Action's and the bot's code build on macOS too (serve there
# says it needs Linux): keep them compiling, tests included.
CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 go vet ./...
go tool -modfile=hack/tools/golangci-lint/go.mod golangci-lint run ./...
# The example workflows, with actionlint (pinned in hack/tools/actionlint/go.mod).
go tool -modfile=hack/tools/actionlint/go.mod actionlint -shellcheck= -pyflakes= examples/workflows/*.yml
