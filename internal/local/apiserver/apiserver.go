// Package apiserver serves the elafros.dev API over HTTP in the
// Kubernetes REST dialect, so the seed's HTTP examples work verbatim with
// curl and client-go's REST client talks to it as to a cluster. Every
// write is decoded strictly (errors name line:column in the body),
// defaulted and validated with the api package's rules before it reaches
// the Store; nothing is written from a bad request. It translates; it
// holds no business rules.
package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/store"
)

// maxBody bounds a request body.
const maxBody = 4 << 20

// Server is the API's http.Handler.
type Server struct {
	store  store.Store
	logger *slog.Logger
	mux    *http.ServeMux
	info   map[string]string
	logs   LogSource
}

// LogSource gives a revision's output (the process runtime).
type LogSource interface {
	Logs(namespace, revision string) (io.ReadCloser, error)
}

// SetLogs serves revisions' output at .../revisions/{name}/log.
func (s *Server) SetLogs(src LogSource) { s.logs = src }

func (s *Server) revisionLog(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if _, err := s.store.Get(r.Context(), store.KindRevision, ns, name); err != nil {
		writeError(w, r, err)
		return
	}
	if s.logs == nil {
		writeError(w, r, apierrors.NewNotFound(v1alpha1.Resource("revisions/log"), name))
		return
	}
	rc, err := s.logs.Logs(ns, name)
	if err != nil {
		writeError(w, r, apierrors.NewNotFound(v1alpha1.Resource("revisions/log"), name))
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, rc)
}

// SetInfo adds a key to what /version reports (elafros serve publishes
// its router's port there, so the CLI prints URLs that work).
func (s *Server) SetInfo(key, value string) { s.info[key] = value }

// New returns an API server over store. extra handlers (such as /metrics)
// may be mounted on the returned server's Handle.
func New(store store.Store, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{store: store, logger: logger, mux: http.NewServeMux(), info: map[string]string{}}
	p := "/apis/" + v1alpha1.GroupName + "/" + v1alpha1.Version
	s.mux.HandleFunc("GET /version", s.version)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	s.mux.HandleFunc("GET /apis", s.groups)
	s.mux.HandleFunc("GET /openapi/v2", s.openAPIV2)
	s.mux.HandleFunc("GET /openapi/v3", s.openAPIV3Root)
	s.mux.HandleFunc("GET /openapi/v3/apis/"+v1alpha1.GroupName+"/"+v1alpha1.Version, s.openAPIV3Group)
	s.mux.HandleFunc("GET /apis/"+v1alpha1.GroupName, s.group)
	s.mux.HandleFunc("GET "+p, s.resourceList)
	s.mux.HandleFunc(p+"/{resource}", s.collection)
	s.mux.HandleFunc(p+"/namespaces/{ns}/{resource}", s.collection)
	s.mux.HandleFunc(p+"/namespaces/{ns}/{resource}/{name}", s.object)
	s.mux.HandleFunc(p+"/namespaces/{ns}/{resource}/{name}/status", s.status)
	s.mux.HandleFunc("GET "+p+"/namespaces/{ns}/revisions/{name}/log", s.revisionLog)
	return s
}

// Handle mounts an extra handler (e.g. /metrics).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func kindFor(w http.ResponseWriter, r *http.Request) (store.Kind, bool) {
	k, ok := v1alpha1.KindForPlural(r.PathValue("resource"))
	if !ok {
		writeError(w, r, apierrors.NewNotFound(v1alpha1.Resource(r.PathValue("resource")), ""))
	}
	return store.Kind(k.Kind), ok
}

func (s *Server) collection(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindFor(w, r)
	if !ok {
		return
	}
	ns := r.PathValue("ns")
	switch r.Method {
	case http.MethodGet:
		if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
			s.watch(w, r, kind, ns)
			return
		}
		s.list(w, r, kind, ns)
	case http.MethodPost:
		if ns == "" {
			writeError(w, r, apierrors.NewMethodNotSupported(store.Resource(kind), "POST without a namespace"))
			return
		}
		s.create(w, r, kind, ns)
	default:
		writeError(w, r, apierrors.NewMethodNotSupported(store.Resource(kind), r.Method))
	}
}

func (s *Server) object(w http.ResponseWriter, r *http.Request) { s.serveObject(w, r, false) }

func (s *Server) status(w http.ResponseWriter, r *http.Request) { s.serveObject(w, r, true) }

// serveObject serves one object, or its status subresource.
func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, status bool) {
	kind, ok := kindFor(w, r)
	if !ok {
		return
	}
	ns, name := r.PathValue("ns"), r.PathValue("name")
	switch {
	case r.Method == http.MethodGet:
		o, err := s.store.Get(r.Context(), kind, ns, name)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if !status && writeTable(w, r, kind, o.GetResourceVersion(), []store.Object{o}) {
			return
		}
		writeObject(w, r, http.StatusOK, o)
	case r.Method == http.MethodPut:
		s.update(w, r, kind, ns, name, status)
	case r.Method == http.MethodPatch:
		s.patch(w, r, kind, ns, name, status)
	case r.Method == http.MethodDelete && !status:
		if err := s.store.Delete(r.Context(), kind, ns, name); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusSuccess, Details: &metav1.StatusDetails{Name: name, Group: v1alpha1.GroupName, Kind: store.Resource(kind).Resource}})
	default:
		writeError(w, r, apierrors.NewMethodNotSupported(store.Resource(kind), r.Method))
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, kind store.Kind, ns string) {
	sel, err := selector(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	fsel, err := fieldSelector(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	all, err := s.store.List(r.Context(), kind, ns, sel)
	if err != nil {
		writeError(w, r, err)
		return
	}
	objs := all[:0:0]
	maxRV := 0
	for _, o := range all {
		// The list's resourceVersion is the newest of the collection, not
		// only of what the field selector keeps, so that a watch from it
		// starts after everything the client has seen.
		if n, _ := strconv.Atoi(o.GetResourceVersion()); n > maxRV {
			maxRV = n
		}
		if fsel.matches(o) {
			objs = append(objs, o)
		}
	}
	if writeTable(w, r, kind, strconv.Itoa(maxRV), objs) {
		return
	}
	items := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			writeError(w, r, err)
			return
		}
		items = append(items, b)
	}
	list := map[string]any{
		"apiVersion": v1alpha1.APIVersion,
		"kind":       string(kind) + "List",
		"metadata":   map[string]any{"resourceVersion": strconv.Itoa(maxRV)},
		"items":      items,
	}
	writeValue(w, r, http.StatusOK, list)
}

func selector(r *http.Request) (labels.Selector, error) {
	q := r.URL.Query().Get("labelSelector")
	if q == "" {
		return nil, nil
	}
	sel, err := labels.Parse(q)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("labelSelector %q: %v", q, err))
	}
	return sel, nil
}

// watchEvent is the wire form of a watch event.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watch streams events as client-go expects them: {"type","object"}
// JSON documents. Without a resourceVersion (or with "0") it first sends
// every current object as ADDED; with one, the objects changed since.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, kind store.Kind, ns string) {
	sel, err := selector(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	fsel, err := fieldSelector(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	tableV := tableVersion(r)
	includeObject := r.URL.Query().Get("includeObject")
	if err := checkIncludeObject(includeObject); err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	ctx := r.Context()
	if ts := q.Get("timeoutSeconds"); ts != "" {
		n, err := strconv.Atoi(ts)
		if err != nil || n < 0 {
			writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("timeoutSeconds %q: want a non-negative integer", ts)))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(n)*time.Second)
		defer cancel()
	}
	events, err := s.store.Watch(ctx)
	if err != nil {
		writeError(w, r, err)
		return
	}
	matches := func(o store.Object) bool {
		return store.KindOf(o) == kind && (ns == "" || o.GetNamespace() == ns) &&
			(sel == nil || sel.Matches(labels.Set(o.GetLabels()))) && fsel.matches(o)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(t string, o store.Object) bool {
		o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(store.KindOf(o))))
		var v any = o
		if tableV != "" {
			// kubectl get -w: each event carries a one-row Table.
			tbl, err := table(kind, tableV, includeObject, o.GetResourceVersion(), []store.Object{o})
			if err != nil {
				return false
			}
			v = tbl
		}
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if err := enc.Encode(watchEvent{Type: t, Object: b}); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	since, _ := strconv.Atoi(q.Get("resourceVersion"))
	current, err := s.store.List(ctx, kind, ns, sel)
	if err != nil {
		return
	}
	for _, o := range current {
		if !fsel.matches(o) {
			continue
		}
		n, _ := strconv.Atoi(o.GetResourceVersion())
		switch {
		case since == 0:
			if !send(string(store.Added), o) {
				return
			}
		case n > since:
			if !send(string(store.Modified), o) {
				return
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return // the client re-lists and watches again
			}
			if matches(e.Object) && !send(string(e.Type), e.Object) {
				return
			}
		}
	}
}

// decodeBody reads and strictly decodes a JSON or YAML body into a new
// object of kind; errors carry line:column in the body.
func decodeBody(r *http.Request, kind store.Kind) (store.Object, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, apierrors.NewBadRequest("reading the request body: " + err.Error())
	}
	if len(data) > maxBody {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the body is larger than %d bytes", maxBody))
	}
	o, err := store.NewObject(kind)
	if err != nil {
		return nil, err
	}
	if errs := manifest.DecodeInto("request body", data, o); len(errs) > 0 {
		return nil, badBody(errs)
	}
	gvk := o.GetObjectKind().GroupVersionKind()
	if gvk.Kind != "" && gvk.Kind != string(kind) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("kind: the body is a %s, this path takes a %s", gvk.Kind, kind))
	}
	if v := gvk.GroupVersion().String(); gvk.Kind != "" && v != v1alpha1.APIVersion {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("apiVersion: unsupported value %q; accepted: %s", v, v1alpha1.APIVersion))
	}
	o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(kind)))
	return o, nil
}

func badBody(errs manifest.Errors) error {
	msgs := make([]string, len(errs))
	causes := make([]metav1.StatusCause, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
		causes[i] = metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: e.Field, Message: fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)}
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest,
		Message: strings.Join(msgs, "\n"), Details: &metav1.StatusDetails{Causes: causes},
	}}
}

// admit defaults and validates an object about to be written, and applies
// the rules of who may write what.
func admit(o store.Object, kind store.Kind, ns, name string) error {
	if o.GetNamespace() == "" {
		o.SetNamespace(ns)
	}
	if o.GetNamespace() != ns {
		return apierrors.NewBadRequest(fmt.Sprintf("metadata.namespace %q does not match the namespace of the path %q", o.GetNamespace(), ns))
	}
	if name != "" && o.GetName() != name {
		return apierrors.NewBadRequest(fmt.Sprintf("metadata.name %q does not match the name of the path %q", o.GetName(), name))
	}
	if kind == store.KindRevision && !controlledByConfiguration(o) {
		return apierrors.NewForbidden(store.Resource(kind), o.GetName(),
			errors.New("revisions are created by configurations and are immutable: change the Configuration (or Service) instead"))
	}
	v, ok := o.(interface {
		SetDefaults()
		Validate() field.ErrorList
	})
	if !ok {
		return fmt.Errorf("%T cannot be validated", o)
	}
	v.SetDefaults()
	if errs := v.Validate(); len(errs) > 0 {
		causes := make([]metav1.StatusCause, len(errs))
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msg := v1alpha1.FieldErrorMessage(e)
			causes[i] = metav1.StatusCause{Type: metav1.CauseType(e.Type), Field: e.Field, Message: msg}
			msgs[i] = e.Field + ": " + msg
		}
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
			Message: fmt.Sprintf("%s %q is invalid: %s", kind, o.GetName(), strings.Join(msgs, "; ")),
			Details: &metav1.StatusDetails{Name: o.GetName(), Group: v1alpha1.GroupName, Kind: string(kind), Causes: causes},
		}}
	}
	return nil
}

func controlledByConfiguration(o store.Object) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == string(store.KindConfiguration) && ref.Controller != nil && *ref.Controller {
			return true
		}
	}
	return false
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, kind store.Kind, ns string) {
	o, err := decodeBody(r, kind)
	if err == nil {
		err = admit(o, kind, ns, "")
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	created, err := s.store.Create(r.Context(), o)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeObject(w, r, http.StatusCreated, created)
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, kind store.Kind, ns, name string, status bool) {
	o, err := decodeBody(r, kind)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var out store.Object
	if status {
		if o.GetNamespace() == "" {
			o.SetNamespace(ns)
		}
		if o.GetName() != name || o.GetNamespace() != ns {
			writeError(w, r, apierrors.NewBadRequest("metadata.name and metadata.namespace must match the path"))
			return
		}
		out, err = s.store.UpdateStatus(r.Context(), o)
	} else {
		if kind == store.KindRevision {
			if cur, gerr := s.store.Get(r.Context(), kind, ns, name); gerr == nil && !controlledByConfiguration(o) {
				o.SetOwnerReferences(cur.GetOwnerReferences()) // metadata edits keep the owner
			}
		}
		if err = admit(o, kind, ns, name); err == nil {
			out, err = s.store.Update(r.Context(), o)
		}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeObject(w, r, http.StatusOK, out)
}

// patch applies a merge, JSON or strategic-merge patch, then admits the
// result like any other write; the update carries the resourceVersion
// that was patched, so a concurrent write is never lost (it retries).
func (s *Server) patch(w http.ResponseWriter, r *http.Request, kind store.Kind, ns, name string, status bool) {
	pt := types.PatchType(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	switch pt {
	case types.MergePatchType, types.JSONPatchType, types.StrategicMergePatchType:
	case "application/yaml", "application/x-yaml", "text/yaml":
		pt = types.MergePatchType // the seed writes its PATCH bodies in YAML
	default:
		writeError(w, r, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
			Reason:  metav1.StatusReasonUnsupportedMediaType,
			Message: fmt.Sprintf("Content-Type %q is not a patch type; accepted: %s, %s, %s", pt, types.MergePatchType, types.JSONPatchType, types.StrategicMergePatchType)}})
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(data) > maxBody {
		writeError(w, r, apierrors.NewBadRequest("the patch body is unreadable or too large"))
		return
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.store.Get(r.Context(), kind, ns, name)
		if err != nil {
			writeError(w, r, err)
			return
		}
		patched, err := store.ApplyPatch(cur, pt, data)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if rv := patched.GetResourceVersion(); rv != cur.GetResourceVersion() && rv != "" {
			writeError(w, r, apierrors.NewConflict(store.Resource(kind), name, fmt.Errorf("the patch names resourceVersion %s, the object is at %s", rv, cur.GetResourceVersion())))
			return
		}
		patched.SetResourceVersion(cur.GetResourceVersion())
		var out store.Object
		if status {
			out, err = s.store.UpdateStatus(r.Context(), patched)
		} else {
			if err = admit(patched, kind, ns, name); err == nil {
				out, err = s.store.Update(r.Context(), patched)
			}
		}
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, http.StatusOK, out)
		return
	}
}

func writeObject(w http.ResponseWriter, r *http.Request, code int, o store.Object) {
	o.GetObjectKind().SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind(string(store.KindOf(o))))
	writeValue(w, r, code, o)
}

func wantsYAML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "yaml") && !strings.Contains(a, "json")
}

func writeValue(w http.ResponseWriter, r *http.Request, code int, v any) {
	if wantsYAML(r) {
		b, err := yaml.Marshal(v)
		if err == nil {
			w.Header().Set("Content-Type", "application/yaml")
			w.WriteHeader(code)
			_, _ = w.Write(b)
			return
		}
	}
	writeJSON(w, code, v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError renders err as a Kubernetes Status object.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		se = apierrors.NewInternalError(err)
	}
	st := se.Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	writeValue(w, r, int(st.Code), &st)
}

// fieldSel is a parsed fieldSelector; nil matches everything.
type fieldSel struct{ sel fields.Selector }

func (f fieldSel) matches(o store.Object) bool {
	return f.sel == nil || f.sel.Matches(fields.Set{"metadata.name": o.GetName(), "metadata.namespace": o.GetNamespace()})
}

// fieldSelector parses the query's fieldSelector. Custom resources on a
// cluster select by metadata.name and metadata.namespace only (kubectl
// delete waits on metadata.name=...); so does this server.
func fieldSelector(r *http.Request) (fieldSel, error) {
	q := r.URL.Query().Get("fieldSelector")
	if q == "" {
		return fieldSel{}, nil
	}
	sel, err := fields.ParseSelector(q)
	if err != nil {
		return fieldSel{}, apierrors.NewBadRequest(fmt.Sprintf("fieldSelector %q: %v", q, err))
	}
	for _, req := range sel.Requirements() {
		if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
			return fieldSel{}, apierrors.NewBadRequest(fmt.Sprintf("fieldSelector %q: field %q is not supported; accepted: metadata.name, metadata.namespace", q, req.Field))
		}
	}
	return fieldSel{sel: sel}, nil
}
