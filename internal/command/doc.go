// Package command reads the /rollout commands people write in pull request
// comments: "/rollout 50", "/rollout 50%", "/rollout <service> 50", the
// seed's "/rollout next percent 50", "/rollout finish|abort|status|pause|
// resume|help". It is pure (no I/O, no GitHub, no traffic): the bot gives
// it a comment's body and gets a typed Command, nothing, or an Error whose
// text carries the usage, ready to be the reply.
//
// Only a command at the start of a line counts. Quoted replies, fenced and
// indented code blocks never trigger, so quoting or documenting a command
// cannot move traffic.
package command
