// Command bot is the elafros webhook bot: it moves canary traffic when
// someone with write access (or an approver) comments /rollout 50,
// /rollout finish or /rollout abort on a pull request, and answers in the
// PR. Everything is in internal/bot; this only wires the process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/elafros/elafros/internal/bot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bot.Main(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
