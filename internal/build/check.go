package build

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Check compiles, without linking, packaging or pushing, the Go package
// that a build of spec from dir (the build's source directory) would
// build, for the first of its platforms, with the builder's flags and the
// environment env (e.g. GOCACHE). It is the cheap question "does this
// source compile?" asked before anything is applied (elafros up --watch):
// the compiled packages land in the same Go build cache, so the build
// that follows only links. A compile error is a *StepError carrying the
// compiler's output (file:line: message). Link errors, and templates that
// are not built by go (docker, seed language templates), are left to the
// build itself: Check returns nil for those templates.
func Check(ctx context.Context, dir string, spec v1alpha1.BuildSpec, env []string, log io.Writer) error {
	tmpl, known := Builtin(spec.Template.Name)
	if !known || tmpl == TemplateDocker {
		return nil
	}
	pkg, _ := spec.Template.Argument(ArgPackage)
	if pkg == "" {
		pkg = "."
	}
	pkgDir := filepath.Join(dir, filepath.FromSlash(pkg))
	if rel, err := filepath.Rel(dir, pkgDir); err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s %q leaves the source directory", ArgPackage, pkg)
	}
	platSpec, ok := spec.Template.Argument(ArgPlatforms)
	if !ok || platSpec == "" {
		platSpec = DefaultPlatforms
	}
	plats, err := parsePlatforms(platSpec)
	if err != nil {
		return fmt.Errorf("%s: %w", ArgPlatforms, err)
	}
	s, cleanup, err := goSpecFor(ctx, tmpl, spec, pkgDir, plats[:1], env, log)
	if err != nil {
		return err
	}
	defer cleanup()
	// go list -export compiles the package and its dependencies exactly as
	// go build does (same flags, so the same cache entries) and stops
	// before the link, which is most of a warm build's time.
	args := []string{"list", "-trimpath", "-buildvcs=false", "-export", "-f", "{{.Export}}"}
	if s.overlay != "" {
		args = append(args, "-overlay="+s.overlay)
	}
	args = append(args, s.target)
	p := plats[0]
	out, err := runLogged(ctx, log, s.dir, goEnv(p, s.env), "go", args...)
	if err != nil {
		return &StepError{Step: "go build for " + p.String(), Err: err, Output: tail(compilerOutput(out), tailLines)}
	}
	return nil
}

// compilerOutput drops go list's own output (the export file's path) from
// a failed compile's output, leaving the compiler's lines.
func compilerOutput(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if filepath.IsAbs(l) && !strings.Contains(l, ": ") {
			continue // an export file: a package that did compile
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
