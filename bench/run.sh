#!/usr/bin/env bash
# Whole-system benchmarks. Installs what the peers need from Debian, then
# runs each harness in one go so the figures are comparable.
#   bash bench/run.sh            # router vs nginx vs direct, 10s per target
#   bash bench/run.sh build      # go builder vs ko: 3 interleaved runs of cold, warm, one-line change; edit → serving (up --watch)
#   bash bench/run.sh restart    # elafros serve: kill -9, restart, all of 1/10/50 services serving again
#   DURATION=30s bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-router}" = router ] && ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; fi
fi
case "${1:-router}" in
  router) go run ./bench/router -duration "${DURATION:-10s}" -conns "${CONNS:-32}" ;;
  build)
    # ko from the Go module proxy, cached in bench/.bin.
    [ -x bench/.bin/ko ] || GOBIN="$PWD/bench/.bin" go install github.com/google/ko@v0.19.1
    go run ./bench/build -ko bench/.bin/ko -runs "${RUNS:-3}" ;;
  restart)
    # The real elafros binary, 3 restarts per size; ms/restart is from
    # starting serve to every service answering 200 as before.
    go test -run '^$' -bench BenchmarkRestartToServing -benchtime "${RESTARTS:-3}x" ./internal/local/serve/ ;;
  *) echo "usage: bash bench/run.sh [router|build|restart]" >&2; exit 2 ;;
esac
