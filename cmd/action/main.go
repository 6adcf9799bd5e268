// Command action is the elafros GitHub Action (see action.yml). It reads
// its inputs with go-githubactions and runs the matching mode. Today the
// mode is "validate": every manifest error becomes a workflow annotation
// on its file:line:column. Deploy, preview and promote modes land with the
// reconciler and build issues.
package main

import (
	"os"

	"github.com/sethvargo/go-githubactions"

	"github.com/elafros/elafros/internal/cli"
)

func main() {
	os.Exit(cli.RunAction(githubactions.New(), cli.StdStreams()))
}
