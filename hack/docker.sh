#!/usr/bin/env bash
# Makes sure a Docker daemon answers, for the tests of the docker builder
# and of the Action's container image: installs Debian's docker.io when
# dockerd is missing (as root), and starts dockerd in the background when
# none answers. Nothing can be pulled here, so the tests build FROM
# scratch or load base images they make themselves; the daemon needs no
# network of its own (no bridge, no iptables) and the vfs storage driver
# works inside containers and VMs alike.
#   bash hack/docker.sh          # idempotent; prints the server version
set -euo pipefail
docker_cli=docker
[ -x /usr/bin/docker ] && docker_cli=/usr/bin/docker
if $docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "docker: daemon $($docker_cli version --format '{{.Server.Version}}') answers"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker: no daemon answers and this is not root; the Docker tests will skip (and fail under CI=true)" >&2
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
log=${DOCKERD_LOG:-/tmp/elafros-dockerd.log}
nohup setsid dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs >"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if $docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    echo "docker: started daemon $($docker_cli version --format '{{.Server.Version}}') (log: $log)"
    exit 0
  fi
  sleep 1
done
echo "docker: dockerd did not answer within 60s; its log:" >&2
tail -30 "$log" >&2
exit 1
