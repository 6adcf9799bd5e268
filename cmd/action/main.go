// Command action is the elafros GitHub Action (see action.yml): it reads
// its inputs and the event as the runner provides them and runs the mode
// they call for (internal/action). It only wires and exits.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-githubactions"

	"github.com/elafros/elafros/internal/action"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := action.Run(ctx, githubactions.New(), action.Options{})
	stop()
	os.Exit(code)
}
