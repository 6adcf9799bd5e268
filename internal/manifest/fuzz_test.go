package manifest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the manifest loader. It must never
// panic; every error must carry a position; a manifest it accepts must
// hold objects that validate.
//
//	go test ./internal/manifest -run '^$' -fuzz FuzzParse -fuzztime 60s
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	good, _ := filepath.Glob("../../examples/*/elafros.yaml")
	for _, p := range append(files, good...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, b := range []string{
		"a: &a [*a, *a]",
		"{apiVersion: elafros.dev/v1alpha1, kind: Route, metadata: {name: x}, spec: {rollout: {traffic: [{revisionName: r, percent: 100}]}}}",
		"---\n---\nkind: Service\n<<: {apiVersion: elafros.dev/v1alpha1}\n",
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, errs := Parse("f.yaml", data)
		if m == nil && len(errs) == 0 {
			t.Fatal("no manifest and no error")
		}
		for _, e := range errs {
			if e.Line < 1 || e.Column < 1 || e.Message == "" {
				t.Fatalf("error without position or message: %#v", e)
			}
		}
		if m != nil {
			for _, d := range m.Documents {
				if fe := d.Object.Validate(); len(fe) > 0 {
					t.Fatalf("accepted an invalid object: %v", fe)
				}
			}
		}
	})
}
