package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sethvargo/go-githubactions"
	"github.com/spf13/cobra"

	"github.com/elafros/elafros/internal/manifest"
)

// ValidateOptions are the flags of "elafros validate".
type ValidateOptions struct {
	IO     IOStreams
	Files  []string
	Format string // text or github
}

func newValidateCommand(s IOStreams, runF func(context.Context, *ValidateOptions) error) *cobra.Command {
	o := &ValidateOptions{IO: s}
	cmd := &cobra.Command{
		Use:   "validate [file...]",
		Short: "Check elafros.yaml strictly: every error with file:line:column and the fix",
		Long: `Validate loads each manifest (default: elafros.yaml), decodes it strictly into
the elafros.dev/v1alpha1 types, applies defaults and checks every rule. It
changes nothing. Errors name file:line:column, the field, and what would be
accepted. --format github prints them as GitHub workflow annotations.

Exit status: 0 when every file is valid, 1 when one is not, 2 on bad usage.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Files = args
			if o.Format != "text" && o.Format != "github" {
				return fmt.Errorf("--format: unsupported value %q; accepted: text, github", o.Format)
			}
			return orRun(runF, runValidate)(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Format, "format", "text", `output format: "text" or "github" (workflow annotations)`)
	return cmd
}

// runValidate validates the files of o and reports to o.IO.
func runValidate(_ context.Context, o *ValidateOptions) error {
	s := o.IO
	files := o.Files
	if len(files) == 0 {
		files = []string{manifest.DefaultFile}
	}
	failed := 0
	for _, f := range files {
		m, err := manifest.Load(f)
		var errs manifest.Errors
		switch {
		case errors.As(err, &errs):
			failed++
			report(o.Format, errs, s)
		case err != nil:
			failed++
			reportOne(o.Format, &manifest.Error{File: f, Line: 1, Column: 1, Message: err.Error()}, s)
		default:
			fmt.Fprintf(s.Out, "%s: valid: %s\n", f, summary(m))
		}
	}
	if failed > 0 {
		return &ExitError{Code: 1}
	}
	return nil
}

func report(format string, errs manifest.Errors, s IOStreams) {
	for _, e := range errs {
		reportOne(format, e, s)
	}
	noun := "errors"
	if len(errs) == 1 {
		noun = "error"
	}
	fmt.Fprintf(s.ErrOut, "%s: %d %s\n", errs[0].File, len(errs), noun)
}

func reportOne(format string, e *manifest.Error, s IOStreams) {
	if format == "github" {
		annotate(s.Out, e)
		return
	}
	fmt.Fprintln(s.ErrOut, e.Error())
}

// annotate prints a GitHub workflow annotation (read by the runner from
// stdout), escaped by go-githubactions.
func annotate(w io.Writer, e *manifest.Error) {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	githubactions.New(githubactions.WithWriter(w)).WithFieldsMap(map[string]string{
		"file": e.File,
		"line": strconv.Itoa(e.Line),
		"col":  strconv.Itoa(e.Column),
	}).Errorf("%s", msg)
}

func summary(m *manifest.Manifest) string {
	parts := make([]string, 0, len(m.Documents))
	for _, d := range m.Documents {
		o := d.Object
		parts = append(parts, fmt.Sprintf("%s %s/%s", o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName()))
	}
	return strings.Join(parts, ", ")
}
