#!/usr/bin/env bash
# Whole-system benchmarks. Installs what the peers need from Debian, then
# runs each harness in one go so the figures are comparable.
#   bash bench/run.sh            # router vs nginx vs direct, 10s per target
#   DURATION=30s bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; fi
fi
go run ./bench/router -duration "${DURATION:-10s}" -conns "${CONNS:-32}"
