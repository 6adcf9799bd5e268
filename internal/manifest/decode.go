package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Object is an elafros.dev object as the manifest sees it.
type Object = v1alpha1.Object

// kindNames lists the accepted kinds (v1alpha1.Kinds), sorted.
func kindNames() []string {
	names := make([]string, 0, len(v1alpha1.Kinds))
	for _, k := range v1alpha1.Kinds {
		names = append(names, k.Kind)
	}
	sort.Strings(names)
	return names
}

// Document is one decoded object with the positions of its nodes.
type Document struct {
	Object Object
	// Index is the document's number in the file, from 0.
	Index int
	// Line and Column are where the document's root mapping starts.
	Line, Column int

	file string
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
}

// Position returns the line and column of the field at path (as
// field.Path renders it). A path that the document does not spell out
// (a missing required field) resolves to its nearest written ancestor.
func (d *Document) Position(path string) (line, col int) {
	for p := path; p != ""; p = parentPath(p) {
		if n := d.vals[p]; n != nil {
			return n.Line, n.Column
		}
	}
	return d.Line, d.Column
}

// KeyPosition returns the position of the key of the field at path, or of
// its nearest written ancestor.
func (d *Document) KeyPosition(path string) (line, col int) {
	if n := d.keys[path]; n != nil {
		return n.Line, n.Column
	}
	return d.Position(path)
}

// errorAt makes an Error at the node for path.
func (d *Document) errorAt(path, msg string) *Error {
	l, c := d.Position(path)
	return &Error{File: d.file, Line: l, Column: c, Field: path, Message: msg}
}

var pathTail = regexp.MustCompile(`(\.[^.\[\]]+|\[[^\[\]]*\])$`)

func parentPath(p string) string {
	loc := pathTail.FindStringIndex(p)
	if loc == nil || loc[0] == 0 {
		return ""
	}
	return p[:loc[0]]
}

// Limits that keep hostile input (alias bombs, deep nesting) cheap.
const (
	maxNodesPerDocument = 200_000
	maxDepth            = 100
	maxInputBytes       = 8 << 20
)

// Decode strictly decodes every document of data into elafros.dev
// objects. It neither defaults nor validates. Empty documents are skipped.
// A document with errors is not returned; the others are.
func Decode(file string, data []byte) ([]*Document, Errors) {
	if len(data) > maxInputBytes {
		return nil, Errors{{File: file, Line: 1, Column: 1, Message: fmt.Sprintf("manifest is %d bytes; at most %d are accepted", len(data), maxInputBytes)}}
	}
	var (
		docs []*Document
		errs Errors
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, syntaxError(file, err))
			break // the parser cannot resume after a syntax error
		}
		n := &root
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				continue
			}
			n = n.Content[0]
		}
		if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
			continue
		}
		doc, derrs := decodeDocument(file, i, n)
		errs = append(errs, derrs...)
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	errs.Sort()
	return docs, errs
}

// DecodeInto strictly decodes one YAML or JSON document into obj (a
// pointer to an elafros.dev type), with the same errors as Decode. It is
// what an API server uses for a request body of a known kind.
func DecodeInto(file string, data []byte, obj any) Errors {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Errors{syntaxError(file, err)}
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	w := newWalker(file)
	v, ok := w.value(n, reflect.TypeOf(obj).Elem(), "", 0)
	if !ok || len(w.errs) > 0 {
		w.errs.Sort()
		return w.errs
	}
	if err := roundTrip(v, obj); err != nil {
		return Errors{{File: file, Line: n.Line, Column: n.Column, Message: err.Error()}}
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)(?:: column (\d+))?: (.*)$`)

func syntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: file, Line: 1, Column: 1, Message: "invalid YAML: " + msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			e.Column, _ = strconv.Atoi(m[2])
		}
		e.Message = "invalid YAML: " + m[3]
	}
	if strings.Contains(msg, "did not find expected key") || strings.Contains(msg, "could not find expected ':'") {
		e.Message += " (check the indentation of this block: keys of one mapping must line up, and list items start with \"- \")"
	}
	return e
}

func decodeDocument(file string, index int, n *yaml.Node) (*Document, Errors) {
	doc := &Document{Index: index, Line: n.Line, Column: n.Column, file: file}
	w := newWalker(file)
	doc.vals, doc.keys = w.vals, w.keys
	if n.Kind != yaml.MappingNode {
		return nil, Errors{{File: file, Line: n.Line, Column: n.Column,
			Message: fmt.Sprintf("a document must be a mapping with apiVersion, kind, metadata and spec; got %s", describe(n))}}
	}
	apiVersion, kind := lookup(n, "apiVersion"), lookup(n, "kind")
	var errs Errors
	switch {
	case apiVersion == nil:
		errs = append(errs, &Error{File: file, Line: n.Line, Column: n.Column, Field: "apiVersion", Message: "required: apiVersion: " + v1alpha1.APIVersion})
	case apiVersion.Value != v1alpha1.APIVersion:
		msg := fmt.Sprintf("unsupported value %q; accepted: %s", apiVersion.Value, v1alpha1.APIVersion)
		if strings.HasPrefix(apiVersion.Value, "serving.knative.dev/") {
			msg += " (this is a Knative Serving manifest; elafros implements the Elafros API, whose shapes differ: revisionTemplate, spec.rollout.traffic)"
		}
		errs = append(errs, &Error{File: file, Line: apiVersion.Line, Column: apiVersion.Column, Field: "apiVersion", Message: msg})
	}
	var ctor func() Object
	if kind == nil {
		errs = append(errs, &Error{File: file, Line: n.Line, Column: n.Column, Field: "kind", Message: "required: one of " + strings.Join(kindNames(), ", ")})
	} else {
		if info, ok := v1alpha1.KindFor(kind.Value); ok {
			ctor = info.New
		} else {
			msg := fmt.Sprintf("unsupported kind %q; accepted: %s", kind.Value, strings.Join(kindNames(), ", "))
			if s := suggest(kind.Value, kindNames()); s != "" {
				msg = fmt.Sprintf("unsupported kind %q, did you mean %q? accepted: %s", kind.Value, s, strings.Join(kindNames(), ", "))
			}
			errs = append(errs, &Error{File: file, Line: kind.Line, Column: kind.Column, Field: "kind", Message: msg})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	obj := ctor()
	v, ok := w.value(n, reflect.TypeOf(obj).Elem(), "", 0)
	if !ok || len(w.errs) > 0 {
		return nil, w.errs
	}
	if err := roundTrip(v, obj); err != nil {
		return nil, Errors{{File: file, Line: n.Line, Column: n.Column, Message: err.Error()}}
	}
	doc.Object = obj
	return doc, nil
}

// roundTrip turns the checked, JSON-shaped value into the typed object.
func roundTrip(v any, obj any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding document: %w", err)
	}
	if err := json.Unmarshal(b, obj); err != nil {
		return fmt.Errorf("decoding document: %w", err)
	}
	return nil
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// walker checks a node tree against a Go type and builds the JSON-shaped
// value, recording positions by field path.
type walker struct {
	file  string
	errs  Errors
	vals  map[string]*yaml.Node
	keys  map[string]*yaml.Node
	nodes int
	over  bool
}

func newWalker(file string) *walker {
	return &walker{file: file, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
}

func (w *walker) errorf(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: n.Line, Column: n.Column, Field: path, Message: fmt.Sprintf(format, args...)})
}

var (
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(metav1.Duration{})
	timeType        = reflect.TypeOf(metav1.Time{})
	quantityType    = reflect.TypeOf(resource.Quantity{})
)

// value checks node n against type t at path and returns its JSON shape.
// ok is false when the node could not be converted.
func (w *walker) value(n *yaml.Node, t reflect.Type, path string, depth int) (v any, ok bool) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.errorf(n, path, "unknown alias")
			return nil, false
		}
		n = n.Alias
	}
	if !w.budget(n, path, depth) {
		return nil, false
	}
	if _, seen := w.vals[path]; !seen || path == "" {
		w.vals[path] = n
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return w.custom(n, t, path, depth)
	}
	switch t.Kind() {
	case reflect.Struct:
		return w.object(n, t, path, depth)
	case reflect.Map:
		return w.mapping(n, t, path, depth)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return w.scalarString(n, path, "a base64 string")
		}
		return w.sequence(n, t, path, depth)
	case reflect.String:
		return w.scalarString(n, path, "a string")
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			hint := ""
			switch strings.ToLower(n.Value) {
			case "on", "off", "yes", "no", "y", "n":
				hint = " (YAML 1.2 reads on/off/yes/no as strings: write true or false)"
			}
			w.errorf(n, path, "must be true or false, got %s%s", describe(n), hint)
			return nil, false
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			w.errorf(n, path, "must be true or false, got %s", describe(n))
			return nil, false
		}
		return b, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return w.integer(n, t, path)
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			w.errorf(n, path, "must be a number, got %s", describe(n))
			return nil, false
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			w.errorf(n, path, "must be a finite number, got %s", describe(n))
			return nil, false
		}
		return f, true
	case reflect.Interface:
		return w.generic(n, path, depth)
	default:
		w.errorf(n, path, "cannot be set from a manifest")
		return nil, false
	}
}

func (w *walker) budget(n *yaml.Node, path string, depth int) bool {
	if w.over {
		return false
	}
	w.nodes++
	if w.nodes > maxNodesPerDocument || depth > maxDepth {
		w.over = true
		w.errorf(n, path, "document is too large or too deeply nested (at most %d nodes after alias expansion, %d levels)", maxNodesPerDocument, maxDepth)
		return false
	}
	return true
}

// scalarString accepts any scalar as a string, using the text exactly as
// written: "value: 1.10" stays "1.10" (not the float 1.1), so quoting
// numbers is never needed to keep them.
func (w *walker) scalarString(n *yaml.Node, path, want string) (any, bool) {
	if n.Kind != yaml.ScalarNode {
		w.errorf(n, path, "must be %s, got %s", want, describe(n))
		return nil, false
	}
	return n.Value, true
}

func (w *walker) integer(n *yaml.Node, t reflect.Type, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			if _, err := strconv.Atoi(strings.TrimSpace(n.Value)); err == nil {
				hint = " (remove the quotes)"
			}
		}
		w.errorf(n, path, "must be an integer, got %s%s", describe(n), hint)
		return nil, false
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		w.errorf(n, path, "must be an integer that fits in %d bits, got %s", t.Bits(), n.Value)
		return nil, false
	}
	if !fits(i, t) {
		w.errorf(n, path, "must be an integer that fits in %s, got %s", t.Kind(), n.Value)
		return nil, false
	}
	return i, true
}

func fits(i int64, t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return i >= 0 && (t.Bits() == 64 || uint64(i) < 1<<uint(t.Bits()))
	default:
		if t.Bits() == 64 {
			return true
		}
		lim := int64(1) << uint(t.Bits()-1)
		return i >= -lim && i < lim
	}
}

// custom handles types with their own JSON decoding (durations, times,
// quantities, int-or-string): it converts generically, then lets the type
// judge the value.
func (w *walker) custom(n *yaml.Node, t reflect.Type, path string, depth int) (any, bool) {
	v, ok := w.generic(n, path, depth)
	if !ok {
		return nil, false
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, reflect.New(t).Interface())
	}
	if err != nil {
		switch t {
		case durationType:
			w.errorf(n, path, "must be a duration such as 30s, 10m or 1h30m, got %s", describe(n))
		case timeType:
			w.errorf(n, path, "must be an RFC 3339 time such as 2018-01-19T12:16:00Z, got %s", describe(n))
		case quantityType:
			w.errorf(n, path, "must be a quantity such as 500m, 128Mi or 2, got %s", describe(n))
		default:
			w.errorf(n, path, "invalid value %s: %v", describe(n), err)
		}
		return nil, false
	}
	return v, true
}

func (w *walker) object(n *yaml.Node, t reflect.Type, path string, depth int) (any, bool) {
	if n.Kind != yaml.MappingNode {
		w.errorf(n, path, "must be a mapping (key: value lines), got %s", describe(n))
		return nil, false
	}
	fields := fieldsOf(t)
	out := map[string]any{}
	ok := true
	for _, kv := range w.pairs(n, path) {
		k, v := kv[0], kv[1]
		name := k.Value
		child := joinPath(path, name)
		f, known := fields.byName[name]
		if !known {
			w.unknown(k, child, name, t, fields)
			ok = false
			continue
		}
		w.keys[child] = k
		cv, cok := w.value(v, f, child, depth+1)
		if !cok {
			ok = false
			continue
		}
		out[name] = cv
	}
	return out, ok
}

func (w *walker) unknown(k *yaml.Node, path, name string, t reflect.Type, fields *structFields) {
	if hint := movedHint(t, name); hint != "" {
		w.errorf(k, path, "%s", hint)
		return
	}
	if s := suggest(name, fields.names); s != "" {
		w.errorf(k, path, "unknown field, did you mean %q?", s)
		return
	}
	w.errorf(k, path, "unknown field; accepted fields here: %s", strings.Join(fields.names, ", "))
}

// pairs returns a mapping's key/value pairs, rejecting duplicate and
// non-scalar keys and expanding YAML merge keys (<<), where explicit keys
// win over merged ones.
func (w *walker) pairs(n *yaml.Node, path string) [][2]*yaml.Node {
	var explicit, merged [][2]*yaml.Node
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Tag == "!!merge" {
			merged = append(merged, w.mergeSources(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.errorf(k, path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			w.errorf(k, joinPath(path, k.Value), "duplicate key; already set at line %d", prev.Line)
			continue
		}
		seen[k.Value] = k
		explicit = append(explicit, [2]*yaml.Node{k, v})
	}
	for _, kv := range merged {
		if _, dup := seen[kv[0].Value]; !dup {
			seen[kv[0].Value] = kv[0]
			explicit = append(explicit, kv)
		}
	}
	return explicit
}

func (w *walker) mergeSources(v *yaml.Node, path string) [][2]*yaml.Node {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	var out [][2]*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		if !w.budget(v, path, 0) {
			return nil
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			out = append(out, [2]*yaml.Node{v.Content[i], v.Content[i+1]})
		}
	case yaml.SequenceNode:
		for _, s := range v.Content {
			out = append(out, w.mergeSources(s, path)...)
		}
	default:
		w.errorf(v, path, "a merge key (<<) must name a mapping, got %s", describe(v))
	}
	return out
}

func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string, depth int) (any, bool) {
	if n.Kind != yaml.MappingNode {
		w.errorf(n, path, "must be a mapping (key: value lines), got %s", describe(n))
		return nil, false
	}
	if t.Key().Kind() != reflect.String {
		w.errorf(n, path, "cannot be set from a manifest")
		return nil, false
	}
	out := map[string]any{}
	ok := true
	for _, kv := range w.pairs(n, path) {
		child := path + "[" + kv[0].Value + "]"
		w.keys[child] = kv[0]
		cv, cok := w.value(kv[1], t.Elem(), child, depth+1)
		if !cok {
			ok = false
			continue
		}
		out[kv[0].Value] = cv
	}
	return out, ok
}

func (w *walker) sequence(n *yaml.Node, t reflect.Type, path string, depth int) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		w.errorf(n, path, "must be a list (lines starting with \"- \"), got %s", describe(n))
		return nil, false
	}
	out := make([]any, 0, len(n.Content))
	ok := true
	for i, item := range n.Content {
		cv, cok := w.value(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		if !cok {
			ok = false
			continue
		}
		out = append(out, cv)
	}
	return out, ok
}

// generic converts a node with no Go type to guide it.
func (w *walker) generic(n *yaml.Node, path string, depth int) (any, bool) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if !w.budget(n, path, depth) {
		return nil, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err == nil {
				return b, true
			}
		case "!!int":
			var i int64
			if err := n.Decode(&i); err == nil {
				return i, true
			}
			var f float64
			if err := n.Decode(&f); err == nil {
				return f, true
			}
		case "!!float":
			var f float64
			if err := n.Decode(&f); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f, true
			}
			w.errorf(n, path, "must be a finite number, got %s", describe(n))
			return nil, false
		}
		return n.Value, true
	case yaml.MappingNode:
		out := map[string]any{}
		ok := true
		for _, kv := range w.pairs(n, path) {
			cv, cok := w.generic(kv[1], path+"["+kv[0].Value+"]", depth+1)
			ok = ok && cok
			out[kv[0].Value] = cv
		}
		return out, ok
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, item := range n.Content {
			cv, cok := w.generic(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			ok = ok && cok
			out = append(out, cv)
		}
		return out, ok
	}
	w.errorf(n, path, "unsupported YAML node")
	return nil, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// describe names a node's shape for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return strconv.Quote(n.Value)
		case "!!null":
			return "null"
		case "!!int", "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		}
		return n.Value
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// structFields are the JSON field names of a struct, with embedded
// (inlined) structs flattened as encoding/json flattens them.
type structFields struct {
	byName map[string]reflect.Type
	names  []string
}

var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	sf := &structFields{byName: map[string]reflect.Type{}}
	var add func(reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := sf.byName[name]; !dup {
				sf.byName[name] = f.Type
				sf.names = append(sf.names, name)
			}
		}
	}
	add(t)
	sort.Strings(sf.names)
	fieldCache.Store(t, sf)
	return sf
}
