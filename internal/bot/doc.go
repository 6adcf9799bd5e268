// Package bot is the webhook server behind the /rollout comments: it
// verifies GitHub's deliveries, records each accepted command durably
// before it answers, checks who asked and what they saw, moves traffic
// only through the deploy facade (which applies the rollout package's
// rules), and answers in the pull request.
//
// The decision of what a command does to a route's traffic is the pure
// function Plan, table-tested apart from GitHub and the store; the rest
// of the package is plumbing around it. GitHub is reached through the
// github package, the grammar is the command package's.
package bot
