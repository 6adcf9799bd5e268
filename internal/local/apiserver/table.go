package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metatable "k8s.io/apimachinery/pkg/api/meta/table"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/jsonpath"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/store"
)

// The Table format (Accept: application/json;as=Table;g=meta.k8s.io;v=v1)
// is how kubectl get asks a server for rows to print. The columns are the
// CRDs' additionalPrinterColumns, computed as kube-apiserver computes them
// for custom resources (apiextensions-apiserver's tableconvertor): a Name
// column, then each column's JSONPath evaluated with client-go's jsonpath,
// a missing value as an empty cell, a string column showing the first
// match, a date column as an age ("5m").

// tableColumns are a kind's columns and their compiled JSONPaths.
type tableColumns struct {
	defs  []metav1.TableColumnDefinition
	paths []*jsonpath.JSONPath
}

var columns = sync.OnceValues(func() (map[string]*tableColumns, error) {
	defs, err := crds()
	if err != nil {
		return nil, err
	}
	out := map[string]*tableColumns{}
	for kind, c := range defs {
		tc := &tableColumns{defs: []metav1.TableColumnDefinition{
			{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
		}}
		for _, col := range servedVersion(c).AdditionalPrinterColumns {
			p := jsonpath.New(col.Name)
			if err := p.Parse(fmt.Sprintf("{%s}", col.JSONPath)); err != nil {
				return nil, fmt.Errorf("CRD %s: printer column %q: JSONPath %q: %w", c.Name, col.Name, col.JSONPath, err)
			}
			p.AllowMissingKeys(true)
			desc := col.Description
			if desc == "" {
				desc = "Custom resource definition column (in JSONPath format): " + col.JSONPath
			}
			tc.paths = append(tc.paths, p)
			tc.defs = append(tc.defs, metav1.TableColumnDefinition{Name: col.Name, Type: col.Type, Format: col.Format, Description: desc, Priority: col.Priority})
		}
		out[kind] = tc
	}
	return out, nil
})

// tableVersion returns the meta.k8s.io version of Table that the Accept
// header asks for first ("v1" or "v1beta1"), or "" when it prefers
// something else (plain JSON or YAML).
func tableVersion(r *http.Request) string {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if params["as"] == "" {
			return "" // a plain media type comes first
		}
		if mt == "application/json" && params["as"] == "Table" && params["g"] == "meta.k8s.io" &&
			(params["v"] == "v1" || params["v"] == "v1beta1") {
			return params["v"]
		}
	}
	return ""
}

// table renders objects of kind as a Table. includeObject is the query's
// includeObject: None, Object, or Metadata (the default), what each row
// carries besides its cells.
func table(kind store.Kind, version, includeObject, resourceVersion string, objs []store.Object) (*metav1.Table, error) {
	all, err := columns()
	if err != nil {
		return nil, err
	}
	tc := all[string(kind)]
	if tc == nil {
		return nil, fmt.Errorf("no columns for kind %s", kind)
	}
	t := &metav1.Table{
		TypeMeta:          metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/" + version},
		ListMeta:          metav1.ListMeta{ResourceVersion: resourceVersion},
		ColumnDefinitions: tc.defs,
		Rows:              make([]metav1.TableRow, 0, len(objs)),
	}
	var buf bytes.Buffer
	for _, o := range objs {
		content, err := unstructuredContent(o)
		if err != nil {
			return nil, err
		}
		cells := make([]any, 1, len(tc.defs))
		cells[0] = o.GetName()
		for i, p := range tc.paths {
			results, err := p.FindResults(content)
			if err != nil || len(results) == 0 || len(results[0]) == 0 {
				cells = append(cells, nil)
				continue
			}
			// As kube-apiserver does: the first match only.
			value := results[0][0].Interface()
			if tc.defs[i+1].Type == "string" {
				if err := p.PrintResults(&buf, []reflect.Value{reflect.ValueOf(value)}); err == nil {
					cells = append(cells, buf.String())
				} else {
					cells = append(cells, nil)
				}
				buf.Reset()
				continue
			}
			cells = append(cells, cell(tc.defs[i+1].Type, value))
		}
		row := metav1.TableRow{Cells: cells}
		switch includeObject {
		case string(metav1.IncludeNone):
		case string(metav1.IncludeObject):
			o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(store.KindOf(o))))
			row.Object = runtime.RawExtension{Object: o}
		default:
			m := &metav1.PartialObjectMetadata{
				TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/" + version},
			}
			if om, ok := o.(interface{ GetObjectMeta() metav1.Object }); ok {
				if x, ok := om.GetObjectMeta().(*metav1.ObjectMeta); ok {
					m.ObjectMeta = *x
				}
			}
			row.Object = runtime.RawExtension{Object: m}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// unstructuredContent is an object as JSON values, which the JSONPaths
// read (numbers as json.Number, as in a cluster's unstructured objects).
func unstructuredContent(o store.Object) (map[string]any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	err = dec.Decode(&m)
	return m, err
}

// cell converts a JSON value for a column of type typ, as
// apiextensions-apiserver's cellForJSONValue does.
func cell(typ string, value any) any {
	switch typ {
	case "integer":
		if n, ok := value.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				return i
			}
		}
	case "number":
		if n, ok := value.(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				return f
			}
		}
	case "boolean":
		if b, ok := value.(bool); ok {
			return b
		}
	case "date":
		if s, ok := value.(string); ok {
			var ts metav1.Time
			if err := ts.UnmarshalQueryParameter(s); err != nil {
				return "<invalid>"
			}
			return metatable.ConvertToHumanReadableDateType(ts)
		}
	}
	return nil
}

// writeTable answers a request for a Table, or returns false when the
// request did not ask for one.
func writeTable(w http.ResponseWriter, r *http.Request, kind store.Kind, resourceVersion string, objs []store.Object) bool {
	v := tableVersion(r)
	if v == "" {
		return false
	}
	inc := r.URL.Query().Get("includeObject")
	if err := checkIncludeObject(inc); err != nil {
		writeError(w, r, err)
		return true
	}
	t, err := table(kind, v, inc, resourceVersion, objs)
	if err != nil {
		writeError(w, r, err)
		return true
	}
	writeJSON(w, http.StatusOK, t)
	return true
}

func checkIncludeObject(v string) error {
	switch metav1.IncludeObjectPolicy(v) {
	case "", metav1.IncludeNone, metav1.IncludeMetadata, metav1.IncludeObject:
		return nil
	}
	return apierrors.NewBadRequest(fmt.Sprintf("includeObject %q: accepted values are None, Metadata and Object", v))
}
