package manifest

import (
	"fmt"
	"os"

	"github.com/elafros/elafros/api/v1alpha1"
)

// DefaultFile is the manifest's conventional name.
const DefaultFile = "elafros.yaml"

// Manifest is a loaded, defaulted and validated elafros.yaml.
type Manifest struct {
	File      string
	Documents []*Document
}

// Services returns the manifest's Services in file order.
func (m *Manifest) Services() []*v1alpha1.Service { return objectsOf[*v1alpha1.Service](m) }

// Configurations returns the manifest's Configurations in file order.
func (m *Manifest) Configurations() []*v1alpha1.Configuration {
	return objectsOf[*v1alpha1.Configuration](m)
}

// Routes returns the manifest's Routes in file order.
func (m *Manifest) Routes() []*v1alpha1.Route { return objectsOf[*v1alpha1.Route](m) }

func objectsOf[T Object](m *Manifest) []T {
	var out []T
	for _, d := range m.Documents {
		if o, ok := d.Object.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// Load reads and parses the manifest at path. The error, when not nil, is
// an Errors (positions inside the file) or the read error.
func Load(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	m, errs := Parse(path, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

// Parse decodes, defaults and validates a manifest. It returns a manifest
// only when there are no errors, so nothing is applied from a file that is
// partly wrong.
func Parse(file string, data []byte) (*Manifest, Errors) {
	docs, errs := Decode(file, data)
	if len(docs) == 0 && len(errs) == 0 {
		return nil, Errors{{File: file, Line: 1, Column: 1,
			Message: "no elafros.dev objects found; a manifest holds at least one Service, Configuration or Route (apiVersion: " + v1alpha1.APIVersion + ")"}}
	}
	type key struct{ kind, ns, name string }
	seen := map[key]*Document{}
	owned := map[key]*Document{} // Configuration/Route names owned by a Service
	for _, d := range docs {
		kind := d.Object.GetObjectKind().GroupVersionKind().Kind
		if kind == "Revision" {
			l, c := d.KeyPosition("kind")
			errs = append(errs, &Error{File: file, Line: l, Column: c, Field: "kind",
				Message: "Revisions are created by Configurations and are immutable; write a Configuration or a Service instead"})
			continue
		}
		d.Object.SetDefaults()
		for _, fe := range d.Object.Validate() {
			errs = append(errs, d.errorAt(fe.Field, v1alpha1.FieldErrorMessage(fe)))
		}
		k := key{kind, d.Object.GetNamespace(), d.Object.GetName()}
		if k.name == "" {
			continue
		}
		if prev := seen[k]; prev != nil {
			errs = append(errs, d.errorAt("metadata.name", fmt.Sprintf(
				"duplicate %s %s/%s; the first is the document at line %d", kind, k.ns, k.name, prev.Line)))
			continue
		}
		seen[k] = d
		if kind == "Service" {
			owned[key{"Configuration", k.ns, k.name}] = d
			owned[key{"Route", k.ns, k.name}] = d
		}
	}
	for k, d := range seen {
		if svc := owned[k]; svc != nil {
			errs = append(errs, d.errorAt("metadata.name", fmt.Sprintf(
				"the Service %s (line %d) owns the %s of its name; rename this %s or drop it",
				k.name, svc.Line, k.kind, k.kind)))
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return &Manifest{File: file, Documents: docs}, nil
}
