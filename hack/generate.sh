#!/usr/bin/env bash
# Regenerates deep-copy code and CRD YAML from api/v1alpha1 with the pinned
# controller-gen (hack/tools/controller-gen/go.mod). OUT_CRD and OUT_API let the staleness
# test generate into a temporary directory instead of the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
out_crd=${OUT_CRD:-config/crd/bases}
header=hack/boilerplate.go.txt
cg() { go tool -modfile=hack/tools/controller-gen/go.mod controller-gen "$@"; }
cg object:headerFile="$header" paths=./api/...
cg crd:crdVersions=v1,generateEmbeddedObjectMeta=true paths=./api/... output:crd:artifacts:config="$out_crd"
