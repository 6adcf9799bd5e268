package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elafros/elafros/internal/testutil"
)

// TestBadManifestsGolden loads each testdata/bad/*.yaml and compares the
// errors, one per line, with the .golden file beside it. Every error must
// carry file:line:column.
func TestBadManifestsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("only %d bad manifests; the issue asks for at least 15", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := "elafros.yaml"
			m, errs := Parse(name, data)
			if m != nil || len(errs) == 0 {
				t.Fatalf("a bad manifest loaded without errors")
			}
			for _, e := range errs {
				if e.File != name || e.Line < 1 || e.Column < 1 {
					t.Errorf("error without a position: %#v", e)
				}
			}
			got := errs.Error() + "\n"
			testutil.Golden(t, strings.TrimSuffix(f, ".yaml")+".golden", got)
		})
	}
}
