package cli

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/local/serve"
)

func upOptions(t *testing.T) serve.Options {
	return serve.Options{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestUpHello is the newcomer's command: build examples/hello from the
// working tree, deploy it, and serve it.
func TestUpHello(t *testing.T) {
	dir, err := filepath.Abs("../../examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	o := upOptions(t)
	o.BuildSource = dir
	s, out, errOut := streams()
	srv, err := Up(t.Context(), dir, o, 5*time.Minute, s)
	if err != nil {
		t.Fatalf("up: %v\n%s\n%s", err, out, errOut)
	}
	defer srv.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !regexp.MustCompile(`^Deployed to http://hello\.default\.localhost:\d+$`).MatchString(last) {
		t.Fatalf("last line = %q\n%s", last, out)
	}
	for _, step := range []string{"✓ Building", "✓ Starting", "✓ Promoting", "hello-00001  100%"} {
		if !strings.Contains(out.String(), step) {
			t.Errorf("output lacks %q:\n%s", step, out)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr+"/", nil)
	req.Host = "hello.default.localhost"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "Hello world!\n" {
		t.Errorf("GET = %d %q", res.StatusCode, body)
	}
}

// TestUpCompileError: a build that does not compile stops with the
// compiler's file:line, and nothing is served. The directory is not a git
// repository, which up accepts (it records no commit).
func TestUpCompileError(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/broken\n\ngo 1.26\n")
	write("main.go", "package main\n\nfunc main() {\n\tprintln(\"hi\"\n}\n")
	write("elafros.yaml", "apiVersion: elafros.dev/v1alpha1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  build:\n    template:\n      name: go\n")
	// Not a git repository: a newcomer's directory still builds.
	o := upOptions(t)
	o.BuildSource = dir
	s, out, _ := streams()
	srv, err := Up(t.Context(), dir, o, 3*time.Minute, s)
	if srv != nil {
		srv.Close()
	}
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 1 {
		t.Fatalf("up = %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(out.String(), "✗ Building") || !strings.Contains(out.String(), "main.go:4:") {
		t.Errorf("output does not show the compiler's file:line:\n%s", out)
	}
	if strings.Contains(out.String(), "Deployed to") {
		t.Errorf("a failed build was deployed:\n%s", out)
	}
}
