package build

import (
	"bytes"
	"context"
	_ "embed" // the generated main's template
	"encoding/json"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/elafros/elafros/api/v1alpha1"
)

//go:embed fnmain/main.go.tmpl
var fnMainTemplate string

// fnMainData fills the generated main: the function, and the names of the
// workload contract (api/v1alpha1's WorkloadEnv) it reads, so the
// runtimes and the generated main cannot spell them differently.
type fnMainData struct {
	Package, EntryPoint                             string
	EnvPort, EnvConcurrencyModel, EnvTimeoutSeconds string
	SingleThreaded                                  string
}

var fnMain = template.Must(template.New("main.go").Parse(fnMainTemplate))

// fnMainDir is the directory, inside the function's package directory,
// of the generated main. It exists only in the build's overlay; its name
// is fixed so that the same source gives the same binary.
const fnMainDir = "elafros_function_main"

// checkEntryPoint verifies that the package in dir (named pkg in
// messages) declares an exported func entry(http.ResponseWriter,
// *http.Request), parsing its non-test files for linux.
func checkEntryPoint(dir, pkg, entry string) error {
	if entry == "" {
		return fmt.Errorf("the go-function builder needs %s, the name of an exported func(http.ResponseWriter, *http.Request) in %s", "_ENTRY_POINT", pkg)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("function package %s: %w", pkg, err)
	}
	bctx := build.Default
	bctx.GOOS, bctx.GOARCH, bctx.CgoEnabled = "linux", "amd64", false
	fset := token.NewFileSet()
	var exported []string
	var pkgName string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		if ok, err := bctx.MatchFile(dir, n); err != nil || !ok {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("function package %s: %w", pkg, err)
		}
		pkgName = f.Name.Name
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !fd.Name.IsExported() {
				continue
			}
			if fd.Name.Name == entry {
				if !isHandlerFunc(f, fd.Type) {
					return fmt.Errorf("function package %s: %s is not a func(http.ResponseWriter, *http.Request)", pkg, entry)
				}
				if pkgName == "main" {
					return fmt.Errorf("function package %s is package main: the go-function builder wraps a library package (use the go builder for a main package)", pkg)
				}
				return nil
			}
			exported = append(exported, fd.Name.Name)
		}
	}
	if pkgName == "" {
		return fmt.Errorf("function package %s: no Go files in %s", pkg, dir)
	}
	sort.Strings(exported)
	found := "none"
	if len(exported) > 0 {
		found = strings.Join(exported, ", ")
	}
	return fmt.Errorf("function package %s has no exported func %s(http.ResponseWriter, *http.Request); its exported funcs: %s", pkg, entry, found)
}

// isHandlerFunc tells whether t is func(http.ResponseWriter, *http.Request)
// with http being net/http as f imports it.
func isHandlerFunc(f *ast.File, t *ast.FuncType) bool {
	httpName := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "net/http" {
			httpName = "http"
			if imp.Name != nil {
				httpName = imp.Name.Name
			}
		}
	}
	if httpName == "" || (t.Results != nil && len(t.Results.List) > 0) {
		return false
	}
	var params []ast.Expr
	for _, p := range t.Params.List {
		n := max(len(p.Names), 1)
		for range n {
			params = append(params, p.Type)
		}
	}
	if len(params) != 2 {
		return false
	}
	isSel := func(e ast.Expr, name string) bool {
		s, ok := e.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		x, ok := s.X.(*ast.Ident)
		return ok && x.Name == httpName && s.Sel.Name == name
	}
	star, ok := params[1].(*ast.StarExpr)
	return isSel(params[0], "ResponseWriter") && ok && isSel(star.X, "Request")
}

// functionOverlay writes, into tmp, the generated main serving
// importPath's entry and the -overlay file that places it in pkgDir;
// it returns the overlay file and the directory of the main package.
func functionOverlay(tmp, pkgDir, importPath, entry string) (overlay, mainDir string, err error) {
	var src bytes.Buffer
	if err := fnMain.Execute(&src, fnMainData{Package: importPath, EntryPoint: entry,
		EnvPort: v1alpha1.EnvPort, EnvConcurrencyModel: v1alpha1.EnvConcurrencyModel, EnvTimeoutSeconds: v1alpha1.EnvTimeoutSeconds,
		SingleThreaded: string(v1alpha1.ConcurrencySingleThreaded)}); err != nil {
		return "", "", err
	}
	gen := filepath.Join(tmp, "main.go")
	if err := os.WriteFile(gen, src.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	mainDir = filepath.Join(pkgDir, fnMainDir)
	if _, err := os.Stat(mainDir); err == nil {
		return "", "", fmt.Errorf("%s exists: the go-function builder generates its main there", mainDir)
	}
	data, err := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(mainDir, "main.go"): gen}})
	if err != nil {
		return "", "", err
	}
	overlay = filepath.Join(tmp, "overlay.json")
	return overlay, mainDir, os.WriteFile(overlay, data, 0o644)
}

// importPath is the import path of the package in dir, from go list.
func importPath(ctx context.Context, dir string, env []string) (string, error) {
	out, err := runLogged(ctx, nil, dir, goEnv(platform{"linux", "amd64"}, env), "go", "list", "-find", "-f", "{{.ImportPath}}", ".")
	if err != nil {
		return "", &StepError{Step: "go list of the function package", Err: err, Output: tail(out, tailLines)}
	}
	return strings.TrimSpace(out), nil
}
