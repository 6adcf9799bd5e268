// Package action is the elafros GitHub Action: it reads the inputs and the
// event as a runner provides them (go-githubactions), picks a mode from a
// table (validate, deploy, preview, promote, rollout), runs it over the
// deploy facade and the GitHub client, and reports through
// go-githubactions only: annotations, masked secrets, grouped logs,
// outputs (multi-line values with a random delimiter) and the job
// summary. It holds no traffic rules (those are in rollout and reconcile)
// and prints nothing outside go-githubactions.
package action
