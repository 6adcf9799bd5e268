package v1alpha1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestKindNamed(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"Service", "Service"}, {"services", "Service"}, {"service", "Service"}, {"esvc", "Service"},
		{"SERVICES", "Service"},
		{"configuration", "Configuration"}, {"cfg", "Configuration"}, {"config", "Configuration"},
		{"revisions", "Revision"}, {"rev", "Revision"}, {"revs", "Revision"},
		{"route", "Route"}, {"rt", "Route"},
		// svc is core Services' short name on a cluster, ksvc Knative's:
		// neither selects an elafros kind, so kubectl and elafros agree.
		{"svc", ""}, {"ksvc", ""}, {"pods", ""}, {"", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, ok := KindNamed(tc.name)
			if ok != (tc.want != "") || k.Kind != tc.want {
				t.Errorf("KindNamed(%q) = %q, %v; want %q", tc.name, k.Kind, ok, tc.want)
			}
		})
	}
}

func TestKindTable(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Kinds {
		for _, n := range k.Names() {
			if other, dup := seen[n]; dup {
				t.Errorf("name %q selects both %s and %s", n, other, k.Kind)
			}
			seen[n] = k.Kind
		}
		o := k.New()
		if got := o.GetObjectKind().GroupVersionKind(); got != k.GroupVersionKind() {
			t.Errorf("%s: New() has %v, want %v", k.Kind, got, k.GroupVersionKind())
		}
		// KindOf reads the Go type, not the (here cleared) TypeMeta.
		o.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
		if got, ok := KindOf(o); !ok || got.Kind != k.Kind {
			t.Errorf("KindOf(New()) = %q, %v; want %s", got.Kind, ok, k.Kind)
		}
		if p, ok := KindForPlural(k.Plural); !ok || p.Kind != k.Kind {
			t.Errorf("KindForPlural(%s) = %q", k.Plural, p.Kind)
		}
		if d := cmp.Diff(Resource(k.Plural), k.GroupResource()); d != "" {
			t.Errorf("%s GroupResource: %s", k.Kind, d)
		}
	}
	// Owners come before what they own (Service → Configuration → Revision).
	var order []string
	for _, k := range Kinds {
		order = append(order, k.Kind)
	}
	if d := cmp.Diff([]string{"Service", "Configuration", "Route", "Revision"}, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
}
