package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elafros/elafros/api/v1alpha1"
)

// TestCheck compiles sources as the builders would, without linking or
// pushing: a good package passes, a compile error is a *StepError with
// the compiler's file:line, and templates that go does not build are left
// to their build.
func TestCheck(t *testing.T) {
	t.Parallel()
	spec := func(tmpl string, args ...string) v1alpha1.BuildSpec {
		s := v1alpha1.BuildSpec{Template: v1alpha1.TemplateInstantiationSpec{Name: tmpl}}
		for i := 0; i+1 < len(args); i += 2 {
			s.Template.Arguments = append(s.Template.Arguments, v1alpha1.ArgumentSpec{Name: args[i], Value: args[i+1]})
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		spec  v1alpha1.BuildSpec
		// want is "" for no error, else text the error holds.
		want []string
	}{
		{"go compiles", map[string]string{"go.mod": appGoMod, "main.go": appMain}, spec(TemplateGo), nil},
		{"go syntax error", map[string]string{"go.mod": appGoMod, "main.go": "package main\n\nfunc main() {\n\tx := \n}\n"}, spec(TemplateGo),
			[]string{"go build for linux/amd64", "main.go:5:1: syntax error"}},
		{"go type error in _PACKAGE", map[string]string{"go.mod": appGoMod, "svc/main.go": "package main\n\nfunc main() {\n\tprintln(undefinedName)\n}\n"},
			spec("go_1_9", ArgPackage, "svc", ArgPlatforms, "linux/arm64"), []string{"go build for linux/arm64", "main.go:4:10: undefined: undefinedName"}},
		{"go-function compiles", map[string]string{"go.mod": appGoMod, "fn.go": fnSource}, spec(TemplateGoFunction, v1alpha1.ArgEntryPoint, "Hello"), nil},
		{"go-function without its entry point", map[string]string{"go.mod": appGoMod, "fn.go": fnSource}, spec(TemplateGoFunction, v1alpha1.ArgEntryPoint, "Missing"),
			[]string{"Missing"}},
		{"_PACKAGE leaves the source", map[string]string{"go.mod": appGoMod, "main.go": appMain}, spec(TemplateGo, ArgPackage, "../elsewhere"),
			[]string{`_PACKAGE "../elsewhere" leaves the source directory`}},
		{"bad _PLATFORMS", map[string]string{"go.mod": appGoMod, "main.go": appMain}, spec(TemplateGo, ArgPlatforms, "linux"),
			[]string{`_PLATFORMS: platform "linux": want os/arch`}},
		{"go without go.mod", map[string]string{"main.go": appMain}, spec(TemplateGo),
			[]string{"no go.mod in", "or any directory above it", "go mod init"}},
		{"go.mod above _PACKAGE", map[string]string{"go.mod": appGoMod, "svc/main.go": appMain}, spec(TemplateGo, ArgPackage, "svc"), nil},
		{"docker is left to its build", map[string]string{"Dockerfile": "FROM scratch\n", "main.go": "not go"}, spec(TemplateDocker), nil},
		{"a seed language template is left to its build", map[string]string{"index.js": "broken("}, spec("nodejs_8_9_4"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, body := range tc.files {
				p := filepath.Join(dir, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var log strings.Builder
			err := Check(context.Background(), dir, tc.spec, nil, &log)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil\n%s", err, log.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = nil, want an error holding %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %q, want it to hold %q", err, w)
				}
			}
			if strings.Contains(tc.want[0], "go build") {
				var step *StepError
				if !errors.As(err, &step) {
					t.Errorf("Check = %T, want a *StepError", err)
				}
				if strings.Contains(err.Error(), "/go-build/") {
					t.Errorf("Check's message holds go list's export paths:\n%s", err)
				}
			}
			// Nothing is linked or written into the source.
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(tc.files) && !strings.Contains(tc.name, "_PACKAGE") {
				t.Errorf("Check wrote into the source directory: %d entries, want %d", len(entries), len(tc.files))
			}
		})
	}
}
