// Command elafros is the command line: validate manifests (and, as the
// issues land, serve the embedded control plane, deploy, and roll out).
package main

import (
	"os"

	"github.com/elafros/elafros/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.StdStreams()))
}
