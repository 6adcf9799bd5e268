package store

import (
	"encoding/json"
	"fmt"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/internal/manifest"
)

// ApplyPatch returns a copy of obj with the patch applied. YAML patch
// bodies are accepted (the seed writes its PATCH bodies in YAML). The
// result is decoded strictly: a patch that adds an unknown field is
// rejected. Strategic merge uses the types' patch tags, so container env
// is merged by name and FOO survives a patch that only sets HELLO.
func ApplyPatch(obj Object, pt types.PatchType, data []byte) (Object, error) {
	kind := KindOf(obj)
	orig, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	patch, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the patch body is not valid JSON or YAML: %v", err))
	}
	var out []byte
	switch pt {
	case types.MergePatchType:
		out, err = jsonpatch.MergePatch(orig, patch)
	case types.JSONPatchType:
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(patch); err == nil {
			out, err = p.Apply(orig)
		}
	case types.StrategicMergePatchType:
		var empty Object
		if empty, err = NewObject(kind); err == nil {
			out, err = strategicpatch.StrategicMergePatch(orig, patch, empty)
		}
	default:
		return nil, apierrors.NewGenericServerResponse(415, "PATCH", Resource(kind), obj.GetName(), fmt.Sprintf("unsupported patch type %q; accepted: %s, %s, %s", pt, types.MergePatchType, types.JSONPatchType, types.StrategicMergePatchType), 0, false)
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("applying %s: %v", pt, err))
	}
	res, err := NewObject(kind)
	if err != nil {
		return nil, err
	}
	// encoding/json matches names case-insensitively (it would take the
	// seed's "Traffic:" for "traffic"); the manifest decoder is exact and
	// says what was meant.
	if errs := manifest.DecodeInto("patch", out, res); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Field + ": " + e.Message
		}
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the patched %s is invalid: %s", kind, strings.Join(msgs, "; ")))
	}
	return res, nil
}
