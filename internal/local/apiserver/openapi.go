package apiserver

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/elafros/elafros/api/v1alpha1"
)

// The OpenAPI documents follow what kube-apiserver serves for the same
// CRDs (apiextensions-apiserver's openapi builder), so that kubectl treats
// elafros serve as a cluster:
//   - /openapi/v3 lists the group's document; kubectl apply finds there the
//     PATCH operation's fieldValidation parameter and leaves validation to
//     the server (which decodes strictly), and kubectl explain reads the
//     schemas and their descriptions;
//   - /openapi/v2 is the same in Swagger 2.0, as protobuf (what client-go
//     asks for) or JSON.
// The schemas are the CRDs' (config/crd), with metadata as ObjectMeta, as
// on a cluster.

const (
	objectMetaModel = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
	listMetaModel   = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
	statusModel     = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"

	// what kube-apiserver answers (the request asks for "...spec.v2@v1.0+protobuf")
	openAPIV2ProtoType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
)

// modelName is a kind's schema name, as the CRD builder spells it: the
// group reversed, the version, the kind ("dev.elafros.v1alpha1.Route").
func modelName(kind string) string {
	parts := strings.Split(v1alpha1.GroupName, ".")
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, ".") + "." + v1alpha1.Version + "." + kind
}

// openAPIDocs are the documents, built once from the embedded CRDs.
type openAPIDocs struct {
	v3     []byte // the group's OpenAPI 3.0 document
	v3Hash string
	v2JSON []byte
	v2     []byte // v2JSON as gnostic protobuf
}

var openAPI = sync.OnceValues(buildOpenAPI)

func buildOpenAPI() (*openAPIDocs, error) {
	defs, err := crds()
	if err != nil {
		return nil, err
	}
	v3, err := groupDocument(defs, false)
	if err != nil {
		return nil, err
	}
	v2, err := groupDocument(defs, true)
	if err != nil {
		return nil, err
	}
	d := &openAPIDocs{}
	if d.v3, err = json.Marshal(v3); err != nil {
		return nil, err
	}
	sum := sha512.Sum512(d.v3)
	d.v3Hash = fmt.Sprintf("%X", sum[:])
	if d.v2JSON, err = json.Marshal(v2); err != nil {
		return nil, err
	}
	// Parsing with gnostic, as kubectl does, also checks that the v2
	// document is valid Swagger 2.0.
	doc, err := openapi_v2.ParseDocument(d.v2JSON)
	if err != nil {
		return nil, fmt.Errorf("the OpenAPI v2 document does not parse: %w", err)
	}
	if d.v2, err = proto.Marshal(doc); err != nil {
		return nil, err
	}
	return d, nil
}

type obj = map[string]any

// groupDocument builds the OpenAPI v3 (or, with v2, Swagger 2.0) document
// of elafros.dev/v1alpha1.
func groupDocument(defs map[string]*apiextensionsv1.CustomResourceDefinition, v2 bool) (obj, error) {
	prefix := "#/components/schemas/"
	if v2 {
		prefix = "#/definitions/"
	}
	ref := func(model string) obj { return obj{"$ref": prefix + model} }
	// withDescription puts a description beside a reference: OpenAPI 3.0
	// ignores siblings of $ref, so kube-apiserver wraps it in allOf.
	withDescription := func(model, desc string) obj {
		if v2 {
			return obj{"$ref": prefix + model, "description": desc}
		}
		return obj{"allOf": []any{ref(model)}, "description": desc}
	}
	schemas := obj{}
	paths := obj{}
	for _, k := range v1alpha1.Kinds {
		s, err := crdSchema(defs[k.Kind])
		if err != nil {
			return nil, err
		}
		props, _ := s["properties"].(obj)
		if props == nil {
			props = obj{}
			s["properties"] = props
		}
		props["metadata"] = withDescription(objectMetaModel,
			"Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
		s["x-kubernetes-group-version-kind"] = []any{gvkExt(k.Kind)}
		schemas[modelName(k.Kind)] = s

		schemas[modelName(k.ListKind)] = obj{
			"description": k.ListKind + " is a list of " + k.Kind,
			"type":        "object",
			"required":    []any{"items"},
			"properties": obj{
				"apiVersion": props["apiVersion"],
				"kind":       props["kind"],
				"items": obj{
					"type":        "array",
					"description": "List of " + k.Plural + ". More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
					"items":       ref(modelName(k.Kind)),
				},
				"metadata": withDescription(listMetaModel,
					"Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
			},
			"x-kubernetes-group-version-kind": []any{gvkExt(k.ListKind)},
		}
		for p, item := range kindPaths(k, ref, v2) {
			paths[p] = item
		}
	}
	meta, err := metaSchemas(prefix, objectMetaModel, listMetaModel, statusModel)
	if err != nil {
		return nil, err
	}
	for name, s := range meta {
		schemas[name] = s
	}
	if v2 {
		for _, s := range schemas {
			toV2(s)
		}
		return obj{
			"swagger":     "2.0",
			"info":        obj{"title": "elafros serve", "version": Version},
			"paths":       paths,
			"definitions": schemas,
		}, nil
	}
	return obj{
		"openapi":    "3.0.0",
		"info":       obj{"title": "elafros serve", "version": Version},
		"paths":      paths,
		"components": obj{"schemas": schemas},
	}, nil
}

func gvkExt(kind string) obj {
	return obj{"group": v1alpha1.GroupName, "version": v1alpha1.Version, "kind": kind}
}

// The content types this server decodes, as a CRD's operations list them
// (a cluster refuses strategic merge patches on custom resources; this
// server takes them, but kubectl then plans as on a cluster).
var (
	bodyTypes  = []string{"application/json", "application/yaml"}
	patchTypes = []string{"application/json-patch+json", "application/merge-patch+json"}
	replyTypes = []string{"application/json", "application/yaml"}
)

func param(name, in, desc string, required bool) obj {
	p := obj{"name": name, "in": in, "description": desc}
	if required {
		p["required"] = true
	}
	return p
}

var (
	fieldValidationParam = param("fieldValidation", "query",
		"fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. elafros serve always rejects them (Strict).", false)
	fieldManagerParam = param("fieldManager", "query", "fieldManager is a name associated with the actor or entity that is making these changes.", false)
	dryRunParam       = param("dryRun", "query", "When present, indicates that modifications should not be persisted. Not supported by elafros serve.", false)
	listParams        = []obj{
		param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels. Defaults to everything.", false),
		param("resourceVersion", "query", "With watch, the resourceVersion after which changes are sent.", false),
		param("timeoutSeconds", "query", "Timeout for the list/watch call.", false),
		param("watch", "query", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.", false),
	}
)

// kindPaths returns the path items of one kind: its collection in a
// namespace and in all namespaces, an object, and its status.
func kindPaths(k v1alpha1.KindInfo, ref func(string) obj, v2 bool) obj {
	can := map[string]bool{}
	for _, v := range verbs(k) {
		can[v] = true
	}
	model, list := modelName(k.Kind), modelName(k.ListKind)
	op := func(action, id, desc string, reply string, code string, body []string, params ...obj) obj {
		o := obj{
			"operationId":                     id,
			"description":                     desc,
			"tags":                            []any{"elafrosDev_v1alpha1"},
			"x-kubernetes-action":             action,
			"x-kubernetes-group-version-kind": gvkExt(k.Kind),
		}
		ps := make([]any, 0, len(params)+1)
		if body != nil && v2 {
			ps = append(ps, obj{"name": "body", "in": "body", "required": true, "schema": bodySchema(action, ref(model))})
			o["consumes"] = body
		} else if body != nil {
			content := obj{}
			for _, t := range body {
				content[t] = obj{"schema": bodySchema(action, ref(model))}
			}
			o["requestBody"] = obj{"content": content, "required": true}
		}
		for _, p := range params {
			ps = append(ps, withParamType(p, v2))
		}
		if len(ps) > 0 {
			o["parameters"] = ps
		}
		if v2 {
			o["produces"] = replyTypes
			o["schemes"] = []any{"http"}
			o["responses"] = obj{code: obj{"description": "OK", "schema": ref(reply)}}
		} else {
			content := obj{}
			for _, t := range replyTypes {
				content[t] = obj{"schema": ref(reply)}
			}
			o["responses"] = obj{code: obj{"description": "OK", "content": content}}
		}
		return o
	}
	name := withParamType(param("name", "path", "name of the "+k.Kind, true), v2)
	ns := withParamType(param("namespace", "path", "object name and auth scope, such as for teams and projects", true), v2)
	writeParams := []obj{dryRunParam, fieldManagerParam, fieldValidationParam}

	root := "/apis/" + v1alpha1.GroupName + "/" + v1alpha1.Version
	collection := obj{"parameters": []any{ns}}
	if can["list"] {
		collection["get"] = op("list", "listElafrosDevV1alpha1Namespaced"+k.Kind, "list or watch objects of kind "+k.Kind, list, "200", nil, listParams...)
	}
	if can["create"] {
		collection["post"] = op("post", "createElafrosDevV1alpha1Namespaced"+k.Kind, "create a "+k.Kind, model, "201", bodyTypes, writeParams...)
	}
	object := obj{"parameters": []any{name, ns}}
	status := obj{"parameters": []any{name, ns}}
	object["get"] = op("get", "readElafrosDevV1alpha1Namespaced"+k.Kind, "read the specified "+k.Kind, model, "200", nil)
	status["get"] = op("get", "readElafrosDevV1alpha1Namespaced"+k.Kind+"Status", "read status of the specified "+k.Kind, model, "200", nil)
	if can["update"] {
		object["put"] = op("put", "replaceElafrosDevV1alpha1Namespaced"+k.Kind, "replace the specified "+k.Kind, model, "200", bodyTypes, writeParams...)
		status["put"] = op("put", "replaceElafrosDevV1alpha1Namespaced"+k.Kind+"Status", "replace status of the specified "+k.Kind, model, "200", bodyTypes, writeParams...)
	}
	if can["patch"] {
		object["patch"] = op("patch", "patchElafrosDevV1alpha1Namespaced"+k.Kind, "partially update the specified "+k.Kind, model, "200", patchTypes, writeParams...)
		status["patch"] = op("patch", "patchElafrosDevV1alpha1Namespaced"+k.Kind+"Status", "partially update status of the specified "+k.Kind, model, "200", patchTypes, writeParams...)
	}
	if can["delete"] {
		object["delete"] = op("delete", "deleteElafrosDevV1alpha1Namespaced"+k.Kind, "delete a "+k.Kind, statusModel, "200", nil, dryRunParam)
	}
	paths := obj{
		root + "/namespaces/{namespace}/" + k.Plural:                    collection,
		root + "/namespaces/{namespace}/" + k.Plural + "/{name}":        object,
		root + "/namespaces/{namespace}/" + k.Plural + "/{name}/status": status,
	}
	if can["list"] {
		paths[root+"/"+k.Plural] = obj{"get": op("list", "listElafrosDevV1alpha1"+k.Kind+"ForAllNamespaces", "list or watch objects of kind "+k.Kind, list, "200", nil, listParams...)}
	}
	return paths
}

// bodySchema is a request body's schema: a patch is an object of any
// shape; a create or replace is the kind itself.
func bodySchema(action string, kind obj) obj {
	if action == "patch" {
		return obj{"type": "object"}
	}
	return kind
}

// withParamType gives a parameter its type where each version puts it.
func withParamType(p obj, v2 bool) obj {
	c := obj{}
	for k, v := range p {
		c[k] = v
	}
	typ := "string"
	switch p["name"] {
	case "timeoutSeconds":
		typ = "integer"
	case "watch":
		typ = "boolean"
	}
	if v2 {
		c["type"] = typ
	} else {
		c["schema"] = obj{"type": typ}
	}
	return c
}

// metaSchemas returns the named apimachinery models and every model they
// refer to, from the definitions that kube-apiserver's CRD builder uses.
func metaSchemas(prefix string, seeds ...string) (map[string]obj, error) {
	all := generatedopenapi.GetOpenAPIDefinitions(func(path string) spec.Ref {
		return spec.MustCreateRef(prefix + common.EscapeJsonPointer(path))
	})
	out := map[string]obj{}
	todo := append([]string(nil), seeds...)
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if _, done := out[name]; done {
			continue
		}
		def, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("no OpenAPI definition of %s", name)
		}
		b, err := json.Marshal(def.Schema)
		if err != nil {
			return nil, err
		}
		var s obj
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		out[name] = s
		todo = append(todo, def.Dependencies...)
	}
	return out, nil
}

// toV2 removes from a schema, in place, what Swagger 2.0 lacks, as
// kube-apiserver does for its v2 document: anyOf, oneOf, not and nullable
// (an int-or-string stays described by x-kubernetes-int-or-string).
func toV2(s any) {
	switch x := s.(type) {
	case obj:
		for _, k := range []string{"anyOf", "oneOf", "not", "nullable"} {
			delete(x, k)
		}
		if x["x-kubernetes-int-or-string"] == true {
			delete(x, "type")
		}
		for _, v := range x {
			toV2(v)
		}
	case []any:
		for _, v := range x {
			toV2(v)
		}
	}
}

// crdSchema returns a CRD's v1alpha1 schema as a JSON object.
func crdSchema(c *apiextensionsv1.CustomResourceDefinition) (obj, error) {
	v := servedVersion(c)
	if v == nil || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("CRD %s has no %s schema", c.Name, v1alpha1.Version)
	}
	b, err := json.Marshal(v.Schema.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	var s obj
	err = json.Unmarshal(b, &s)
	return s, err
}

func (s *Server) openAPIV3Root(w http.ResponseWriter, r *http.Request) {
	d, err := openAPI()
	if err != nil {
		writeError(w, r, err)
		return
	}
	gv := "apis/" + v1alpha1.GroupName + "/" + v1alpha1.Version
	writeJSON(w, http.StatusOK, obj{"paths": obj{gv: obj{"serverRelativeURL": "/openapi/v3/" + gv + "?hash=" + d.v3Hash}}})
}

func (s *Server) openAPIV3Group(w http.ResponseWriter, r *http.Request) {
	d, err := openAPI()
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Etag", `"`+d.v3Hash+`"`)
	_, _ = w.Write(d.v3)
}

func (s *Server) openAPIV2(w http.ResponseWriter, r *http.Request) {
	d, err := openAPI()
	if err != nil {
		writeError(w, r, err)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "protobuf") {
		w.Header().Set("Content-Type", openAPIV2ProtoType)
		_, _ = w.Write(d.v2)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(d.v2JSON)
}
