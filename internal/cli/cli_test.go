package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/internal/testutil"
)

// testdataDir is absolute because some tests change directory.
var testdataDir = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "testdata")
}()

func streams() (IOStreams, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, &out, &errOut
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join(testdataDir, name), got)
}

const bad = `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - revisionName: def
      name: current
      percent: 90
    - revisionName: ghi
      name: next
      percent: 110
`

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateExamples(t *testing.T) {
	s, out, errOut := streams()
	code := Main([]string{"validate", "../../examples/hello/elafros.yaml", "../../examples/function/elafros.yaml"}, s)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	want := "../../examples/hello/elafros.yaml: valid: Service default/hello\n" +
		"../../examples/function/elafros.yaml: valid: Configuration default/my-function, Route default/my-function\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Error(d)
	}
}

func TestValidateText(t *testing.T) {
	t.Chdir(t.TempDir())
	writeFile(t, ".", "elafros.yaml", bad)
	s, out, errOut := streams()
	if code := Main([]string{"validate"}, s); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if out.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", out)
	}
	golden(t, "validate-text.golden", errOut.String())
}

func TestValidateGitHub(t *testing.T) {
	t.Chdir(t.TempDir())
	writeFile(t, ".", "elafros.yaml", bad)
	s, out, _ := streams()
	if code := Main([]string{"validate", "--format", "github", "elafros.yaml"}, s); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	golden(t, "validate-github.golden", out.String())
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(line, "::error col=") || !strings.Contains(line, ",file=elafros.yaml,line=") {
			t.Errorf("not a GitHub annotation with file, line and col: %q", line)
		}
	}
}

func TestValidateUsageErrors(t *testing.T) {
	s, _, errOut := streams()
	if code := Main([]string{"validate", "--format", "json"}, s); code != 2 || !strings.Contains(errOut.String(), `--format: unsupported value "json"; accepted: text, github`) {
		t.Errorf("bad --format: exit %d, stderr %q", code, errOut)
	}
	s, _, errOut = streams()
	if code := Main([]string{"validate", filepath.Join(t.TempDir(), "missing.yaml")}, s); code != 1 || !strings.Contains(errOut.String(), "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}
