package cli

import (
	"errors"
	"fmt"

	"github.com/sethvargo/go-githubactions"

	"github.com/elafros/elafros/internal/manifest"
)

// ActionModes are the modes the action accepts today.
var ActionModes = []string{"validate"}

// RunAction runs the GitHub Action with inputs read through a, and returns
// the exit code. Annotations go to s.Out, where the runner reads them; a
// line is added to the job summary when the runner provides one.
func RunAction(a *githubactions.Action, s IOStreams) int {
	file := a.GetInput("manifest")
	if file == "" {
		file = manifest.DefaultFile
	}
	mode := a.GetInput("mode")
	if mode == "" {
		mode = "validate"
	}
	if mode != "validate" {
		a.Errorf("input mode: unsupported value %q; accepted: %v", mode, ActionModes)
		return 2
	}
	err := RunValidate(&ValidateOptions{Files: []string{file}, Format: "github"}, s)
	var exit *ExitError
	switch {
	case err == nil:
		jobSummary(a, fmt.Sprintf("`%s` is valid.", file))
		return 0
	case errors.As(err, &exit):
		jobSummary(a, fmt.Sprintf("`%s` has errors; they are annotated on the file.", file))
		return exit.Code
	default:
		a.Errorf("%v", err)
		return 2
	}
}

func jobSummary(a *githubactions.Action, line string) {
	if a.Getenv("GITHUB_STEP_SUMMARY") == "" {
		return
	}
	a.AddStepSummary("### elafros\n\n" + line)
}
