#!/usr/bin/env bash
# Builds the test cluster's binaries from the Go module proxy (no prebuilt
# binary can be downloaded here) into a cache keyed by version, skipping what
# is already there: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl (for the printer-column and explain tests), kwok (+ its fast node and pod stages), and the Gateway API
# standard CRDs. Prints the cache directory on its last line.
#   bash hack/cluster/build.sh               # build what is missing
#   bash hack/cluster/build.sh --print-dir   # only print the cache directory
set -euo pipefail
# The versions (K8S_VERSION for k8s.io/kubernetes, STAGING_VERSION for its
# staging modules, ETCD_VERSION, KWOK_VERSION, GATEWAY_API_VERSION, RECIPE)
# are pinned once, in versions.env, which internal/kube/kubetest reads too.
# shellcheck source=versions.env
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/versions.env"
cache=${ELAFROS_CLUSTER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/elafros/cluster}
out="$cache/r$RECIPE-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-gwapi-$GATEWAY_API_VERSION"
if [ "${1:-}" = --print-dir ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export GOFLAGS=-mod=mod CGO_ENABLED=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "cluster: $*" >&2; }

if [ ! -x "$out/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init elafros-cluster/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go build -trimpath -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$out/etcd.tmp" "$out/etcd"
fi

need_k8s=0
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do [ -x "$out/$b" ] || need_k8s=1; done
if [ "$need_k8s" = 1 ]; then
  log "preparing k8s.io/kubernetes $K8S_VERSION with its staging modules at $STAGING_VERSION"
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init elafros-cluster/k8s >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # Every module kubernetes' own go.mod replaces with ./staging/... is
  # replaced here by the same module from the proxy at the staging version.
  staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  [ -n "$staging" ] || { log "no staging replaces found in $gomod"; exit 1; }
  for m in $staging; do go mod edit -replace "$m=$m@$STAGING_VERSION"; done
  log "$(echo "$staging" | wc -l) staging modules replaced"
  go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  # Stamp the version as kubernetes' own build does: the components derive
  # their compatibility (emulation) version from it.
  v=${K8S_VERSION#v}; major=${v%%.*}; rest=${v#*.}; minor=${rest%%.*}
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [ ! -x "$out/$b" ]; then
      log "building $b (minutes on 2 cores)"
      go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b" && mv "$out/$b.tmp" "$out/$b"
    fi
  done
fi

if [ ! -x "$out/kwok" ] || [ ! -f "$out/kwok-stages.yaml" ]; then
  log "building kwok $KWOK_VERSION"
  mkdir -p "$work/kwok" && cd "$work/kwok"
  go mod init elafros-cluster/kwok >/dev/null 2>&1
  go get "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null 2>&1
  go build -trimpath -o "$out/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok && mv "$out/kwok.tmp" "$out/kwok"
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  : > "$out/kwok-stages.yaml.tmp"
  for f in "$dir"/kustomize/stage/node/fast/*.yaml "$dir"/kustomize/stage/pod/fast/*.yaml; do
    case "$f" in */kustomization.yaml) continue ;; esac
    { echo "---"; cat "$f"; } >> "$out/kwok-stages.yaml.tmp"
  done
  mv "$out/kwok-stages.yaml.tmp" "$out/kwok-stages.yaml"
fi

if [ ! -d "$out/gateway-api-crds" ]; then
  log "copying Gateway API $GATEWAY_API_VERSION standard CRDs"
  mkdir -p "$work/gw" && cd "$work/gw" && go mod init elafros-cluster/gw >/dev/null 2>&1
  dir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$out/gateway-api-crds.tmp" && cp "$dir"/config/crd/standard/*.yaml "$out/gateway-api-crds.tmp/"
  chmod -R u+w "$out/gateway-api-crds.tmp" && mv "$out/gateway-api-crds.tmp" "$out/gateway-api-crds"
fi
log "ready"
echo "$out"
