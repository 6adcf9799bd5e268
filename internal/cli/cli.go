package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// IOStreams are where a command reads and writes.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// StdStreams returns the process's standard streams.
func StdStreams() IOStreams { return IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr} }

// ExitError carries a process exit code out of a command whose failure has
// already been reported to the user.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// NewRootCommand builds the elafros command tree.
func NewRootCommand(s IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:           "elafros",
		Short:         "Push-to-deploy and pull-request canaries for the Elafros API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	t := &target{errOut: s.ErrOut}
	t.flags(root)
	root.AddCommand(newValidateCommand(s, nil))
	addClientCommands(root, s, t)
	root.AddCommand(newServeCommand(s, nil), newLogsCommand(s, t, nil), newUpCommand(s, nil), newInstallCommand(s, t, nil), newReconcileCommand(s, t, nil))
	return root
}

// Main runs the command line with args and returns the process exit code.
func Main(args []string, s IOStreams) int {
	root := NewRootCommand(s)
	root.SetArgs(args)
	err := root.Execute()
	var exit *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.Code
	default:
		fmt.Fprintf(s.ErrOut, "elafros: %v\n", err)
		return 2
	}
}
