// Command bot will be the elafros webhook bot: it moves canary traffic when
// someone with write access comments /rollout 50, /rollout finish or
// /rollout abort on a pull request, and answers in the PR. It is not built
// yet (it needs the reconciler and the rollout package); until then it
// refuses to start rather than pretend to serve.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "elafros bot: not built yet; it arrives with the webhook bot issue. Nothing was started.")
	os.Exit(2)
}
