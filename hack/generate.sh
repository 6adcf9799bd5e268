#!/usr/bin/env bash
# Regenerates deep-copy code and CRD YAML from api/v1alpha1 with the pinned
# controller-gen (hack/tools/controller-gen/go.mod). OUT_OBJ and OUT_CRD
# redirect the output (the staleness test generates into a temporary
# directory and compares, so it never rewrites the tree).
set -euo pipefail
cd "$(dirname "$0")/.."
out_obj=${OUT_OBJ:-}
out_crd=${OUT_CRD:-config/crd/bases}
cg() { go tool -modfile=hack/tools/controller-gen/go.mod controller-gen "$@"; }
obj_out=()
[ -n "$out_obj" ] && obj_out=("output:object:dir=$out_obj")
cg object:headerFile=hack/boilerplate.go.txt paths=./api/... "${obj_out[@]}"
cg crd:crdVersions=v1,generateEmbeddedObjectMeta=true paths=./api/... output:crd:artifacts:config="$out_crd"
# The container's name is optional in the Elafros API (user-container).
go run ./hack/crdfix "$out_crd"/*.yaml
