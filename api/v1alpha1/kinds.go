package v1alpha1

import (
	"reflect"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Object is any elafros.dev object: Kubernetes metadata, a type, and this
// package's defaults and validation.
//
// +kubebuilder:object:generate=false
type Object interface {
	metav1.Object
	runtime.Object
	SetDefaults()
	Validate() field.ErrorList
}

// KindInfo is what every layer needs to know about one kind: its names as
// the API, discovery, the CRD and the command line spell them, and how to
// make an empty one. Kinds is the only place these facts are written; the
// CRDs' short names and categories come from markers on the types, and a
// test (internal/local/apiserver/kinds_test.go) fails when they disagree
// with this table. It is not an API type (no deep copy).
//
// +kubebuilder:object:generate=false
type KindInfo struct {
	// Kind is the type's name, as in "kind: Service".
	Kind string
	// Plural is the resource in URLs ("services"); Singular is its singular
	// form, which kubectl accepts too ("service").
	Plural, Singular string
	// ShortNames are the abbreviations kubectl and elafros accept ("esvc":
	// "svc" is core Services' on a cluster, "ksvc" Knative's).
	ShortNames []string
	// Categories group kinds for "kubectl get elafros".
	Categories []string
	// ListKind is the kind of a list of these ("ServiceList").
	ListKind string
	// Namespaced is true for every elafros kind.
	Namespaced bool
	// New returns an empty object of this kind with its TypeMeta set.
	New func() Object

	goType reflect.Type // of New's result, for KindOf
}

// GroupVersionKind is the kind's elafros.dev/v1alpha1 GroupVersionKind.
func (k KindInfo) GroupVersionKind() schema.GroupVersionKind {
	return SchemeGroupVersion.WithKind(k.Kind)
}

// GroupResource is the kind's plural resource in elafros.dev, as errors
// name it ("routes.elafros.dev").
func (k KindInfo) GroupResource() schema.GroupResource { return Resource(k.Plural) }

// Names returns every name that selects this kind, lower case: the
// plural, the singular (the kind in lower case) and the short names.
func (k KindInfo) Names() []string {
	return append([]string{k.Plural, k.Singular}, k.ShortNames...)
}

func newKind(kind, plural string, shortNames []string, empty func() Object) KindInfo {
	info := KindInfo{
		Kind: kind, Plural: plural, Singular: strings.ToLower(kind), ShortNames: shortNames,
		Categories: []string{"elafros"}, ListKind: kind + "List", Namespaced: true,
	}
	info.New = func() Object {
		o := empty()
		o.GetObjectKind().SetGroupVersionKind(SchemeGroupVersion.WithKind(kind))
		return o
	}
	info.goType = reflect.TypeOf(empty())
	return info
}

// Kinds lists the four kinds in dependency order: what is owned comes after
// its owner (a Service owns a Configuration and a Route; a Configuration
// its Revisions).
var Kinds = []KindInfo{
	newKind("Service", "services", []string{"esvc"}, func() Object { return &Service{} }),
	newKind("Configuration", "configurations", []string{"config", "cfg"}, func() Object { return &Configuration{} }),
	newKind("Route", "routes", []string{"rt"}, func() Object { return &Route{} }),
	newKind("Revision", "revisions", []string{"rev", "revs"}, func() Object { return &Revision{} }),
}

// KindNamed returns the kind that name selects: its kind, plural, singular
// or a short name, in any case ("Route", "routes", "route", "rt").
func KindNamed(name string) (KindInfo, bool) {
	name = strings.ToLower(name)
	for _, k := range Kinds {
		for _, n := range k.Names() {
			if n == name {
				return k, true
			}
		}
	}
	return KindInfo{}, false
}

// KindFor returns the kind named exactly kind ("Route").
func KindFor(kind string) (KindInfo, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

// KindForPlural returns the kind whose resource is plural ("routes").
func KindForPlural(plural string) (KindInfo, bool) {
	for _, k := range Kinds {
		if k.Plural == plural {
			return k, true
		}
	}
	return KindInfo{}, false
}

// KindOf returns the kind of an elafros.dev object, from its Go type (so
// an object whose TypeMeta is empty, as after a typed decode, still has
// one), or else from its TypeMeta.
func KindOf(o runtime.Object) (KindInfo, bool) {
	t := reflect.TypeOf(o)
	for _, k := range Kinds {
		if k.goType == t {
			return k, true
		}
	}
	return KindFor(o.GetObjectKind().GroupVersionKind().Kind)
}
