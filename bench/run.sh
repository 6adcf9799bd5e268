#!/usr/bin/env bash
# Whole-system benchmarks. Installs what the peers need from Debian, then
# runs each harness in one go so the figures are comparable.
#   bash bench/run.sh            # elafros serve's router vs nginx (1 worker, auto) vs a second serve (COMPARE_ARGS) vs direct, under wrk, 3 rounds
#   PROFILE=/tmp/prof bash bench/run.sh router   # CPU/allocs/mutex/block profiles of the router under wrk
#   BASELINE=/path/to/older/elafros FLOOR=1 bash bench/run.sh router   # + an older serve, + Go servers that proxy nothing
#   SERVE_ARGS='--router-loops 2' bash bench/run.sh router    # elafros serve with other flags
#   COMPARE_ARGS='--router-loops 2' bash bench/run.sh router  # the second serve's flags (default --router-loops -1)
#   HOLD=1 bash bench/run.sh router   # set the targets up and keep them until ^C, printing pids and wrk lines (for perf, strace)
#   bash bench/run.sh build      # go builder vs ko: 3 interleaved runs of cold, warm, one-line change; edit → serving (up --watch)
#   bash bench/run.sh restart    # elafros serve: kill -9, restart, all of 1/10/50 services serving again
#   bash bench/run.sh bot        # the bot binary: /rollout at 50/s on one route, webhook -> router serving, RSS
#   DURATION=30s bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-router}" = router ] && ! { command -v nginx && command -v wrk; } >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; fi
fi
case "${1:-router}" in
  router)
    # wrk -t2 -c32 -d8s --latency per target and round, outside every
    # process measured; the router is a real `elafros serve`.
    go run ./bench/router -duration "${DURATION:-8s}" -conns "${CONNS:-32}" -rounds "${ROUNDS:-3}" ${PROFILE:+-profile "$PROFILE"} ${BASELINE:+-baseline "$BASELINE"} ${SERVE_ENV:+-serve-env "$SERVE_ENV"} ${SERVE_ARGS:+-serve-args "$SERVE_ARGS"} ${COMPARE_ARGS:+-compare-args "$COMPARE_ARGS"} ${FLOOR:+-floor} ${HOLD:+-hold} ;;
  build)
    # ko from the Go module proxy, cached in bench/.bin.
    [ -x bench/.bin/ko ] || GOBIN="$PWD/bench/.bin" go install github.com/google/ko@v0.19.1
    go run ./bench/build -ko bench/.bin/ko -runs "${RUNS:-3}" ;;
  restart)
    # The real elafros binary, 3 restarts per size; ms/restart is from
    # starting serve to every service answering 200 as before.
    go test -run '^$' -bench BenchmarkRestartToServing -benchtime "${RESTARTS:-3}x" ./internal/local/serve/ ;;
  bot)
    # The bot binary (its own process, for its RSS) against elafros serve
    # (store, reconciler, router) and a fake GitHub answering in 20 ms,
    # COMMANDS signed /rollout deliveries at 50 a second on one route.
    go test -run '^$' -bench BenchmarkWebhookToTraffic -benchtime "${COMMANDS:-500}x" ./internal/bot/ ;;
  *) echo "usage: bash bench/run.sh [router|build|restart|bot]" >&2; exit 2 ;;
esac
