package command

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Verb is what a command asks for.
type Verb string

// The verbs.
const (
	// SetPercent sends Percent of the traffic to the candidate (next).
	SetPercent Verb = "percent"
	Finish     Verb = "finish" // the candidate takes 100%
	Abort      Verb = "abort"  // back to the current revision, candidate at 0%
	Status     Verb = "status" // report, move nothing
	Pause      Verb = "pause"  // scheduled promotion stops
	Resume     Verb = "resume" // scheduled promotion starts again
	Help       Verb = "help"
)

// Command is one /rollout command.
type Command struct {
	Verb Verb
	// Service names the service when the repository has several; empty
	// means the only one.
	Service string
	// Percent is set for SetPercent, 0..100.
	Percent int
	// Line is the comment's line (1-based) the command is on.
	Line int
}

// String is the command written canonically; Parse reads it back as the
// same command.
func (c Command) String() string {
	var b strings.Builder
	b.WriteString(Keyword)
	if c.Service != "" {
		b.WriteString(" " + c.Service)
	}
	if c.Verb == SetPercent {
		b.WriteString(" " + strconv.Itoa(c.Percent))
	} else {
		b.WriteString(" " + string(c.Verb))
	}
	return b.String()
}

// Keyword starts a command.
const Keyword = "/rollout"

// Usage is the help text, in Markdown (the bot's reply to help and to a
// malformed command).
const Usage = "Usage (one command per comment, at the start of a line):\n\n" +
	"| command | what it does |\n" +
	"|---|---|\n" +
	"| `/rollout 50` or `/rollout 50%` | send 50% of the traffic to this pull request's revision (0–100) |\n" +
	"| `/rollout next percent 50` | the same, as the `elafros rollout` CLI says it |\n" +
	"| `/rollout <service> 50` | the same for one service, when the repository has several |\n" +
	"| `/rollout finish` | this revision takes 100% |\n" +
	"| `/rollout abort` | back to the current revision; this one goes to 0% |\n" +
	"| `/rollout status` | show the traffic, move nothing |\n" +
	"| `/rollout pause` / `/rollout resume` | stop / restart scheduled promotion |\n" +
	"| `/rollout help` | this table |\n\n" +
	"Any of them may name a service first: `/rollout <service> finish`."

// Error is a malformed command. Its text names the line and the problem,
// and ends with the usage.
type Error struct {
	Line   int
	Text   string // the command's line as written
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("line %d: `%s`: %s\n\n%s", e.Line, e.Text, e.Reason, Usage)
}

var verbs = map[string]Verb{
	"finish": Finish, "abort": Abort, "status": Status, "pause": Pause, "resume": Resume, "help": Help,
}

// A service name is a DNS label (api/v1alpha1's rule for names).
var dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Parse finds the /rollout command in a comment. It returns nil, nil when
// the comment holds none, and an *Error when it holds a malformed one or
// more than one.
func Parse(body string) (*Command, error) {
	var found *Command
	var firstLine int
	for _, l := range commandLines(body) {
		cmd, err := parseLine(l.text, l.n)
		if err != nil {
			return nil, err
		}
		if found != nil {
			return nil, &Error{Line: l.n, Text: strings.TrimSpace(l.text),
				Reason: fmt.Sprintf("a second command (the first is on line %d); write one command per comment", firstLine)}
		}
		found, firstLine = cmd, l.n
	}
	return found, nil
}

type line struct {
	n    int
	text string
}

// commandLines are the lines that start with the keyword and are neither
// quoted nor code.
func commandLines(body string) []line {
	var out []line
	var fence string // the open fence's run of ` or ~, "" outside one
	for i, raw := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		indent := len(raw) - len(strings.TrimLeft(raw, " "))
		rest := raw[indent:]
		if fence != "" {
			if indent <= 3 && strings.HasPrefix(rest, fence) && strings.Trim(rest, fence[:1]+" \t") == "" {
				fence = ""
			}
			continue
		}
		if indent <= 3 {
			if f := fenceOf(rest); f != "" {
				fence = f
				continue
			}
		}
		// Four spaces or a tab: an indented code block.
		if indent >= 4 || strings.HasPrefix(rest, "\t") {
			continue
		}
		if !strings.HasPrefix(rest, Keyword) {
			continue // quoted (">"), list items, prose
		}
		after := rest[len(Keyword):]
		if after != "" && !startsWithSpace(after) {
			continue // "/rollouts", "/rollout-bot": another word
		}
		out = append(out, line{n: i + 1, text: rest})
	}
	return out
}

func startsWithSpace(s string) bool {
	for _, r := range s {
		return r == ' ' || r == '\t' || r == '\u00a0' || r == '\u3000' || (r >= '\u2000' && r <= '\u200a')
	}
	return false
}

// fenceOf is the fence a line opens (``` or ~~~ or longer), or "".
func fenceOf(s string) string {
	for _, c := range []string{"`", "~"} {
		n := len(s) - len(strings.TrimLeft(s, c))
		if n >= 3 {
			// A backtick fence's info string may not hold a backtick.
			if c == "`" && strings.Contains(s[n:], "`") {
				return ""
			}
			return strings.Repeat(c, n)
		}
	}
	return ""
}

func parseLine(text string, n int) (*Command, error) {
	text = strings.TrimRightFunc(text, func(r rune) bool { return r == ' ' || r == '\t' })
	words := strings.Fields(text[len(Keyword):])
	bad := func(format string, args ...any) error {
		return &Error{Line: n, Text: strings.TrimSpace(text), Reason: fmt.Sprintf(format, args...)}
	}
	cmd := &Command{Line: n}
	if len(words) == 0 {
		cmd.Verb = Help
		return cmd, nil
	}
	// An optional service first: a word that is neither a verb, a
	// percentage nor the seed's "next".
	first := strings.ToLower(words[0])
	if _, isVerb := verbs[first]; !isVerb && first != "next" && !looksNumeric(first) {
		if !dnsLabel.MatchString(words[0]) {
			return nil, bad("%q is not a command or a service name (service names are lower-case DNS labels)", words[0])
		}
		cmd.Service = words[0]
		words = words[1:]
		if len(words) == 0 {
			return nil, bad("what should happen to %s? Add a percentage or finish, abort, status, pause, resume", cmd.Service)
		}
	}
	w := strings.ToLower(words[0])
	switch {
	case w == "next":
		if len(words) < 3 || strings.ToLower(words[1]) != "percent" {
			return nil, bad("the seed's form is `/rollout next percent N`")
		}
		p, err := percent(words[2])
		if err != nil {
			return nil, bad("%v", err)
		}
		cmd.Verb, cmd.Percent = SetPercent, p
		words = words[3:]
	case looksNumeric(w):
		p, err := percent(words[0])
		if err != nil {
			return nil, bad("%v", err)
		}
		cmd.Verb, cmd.Percent = SetPercent, p
		words = words[1:]
	default:
		v, ok := verbs[w]
		if !ok {
			return nil, bad("unknown command %q", words[0])
		}
		if v == Help && cmd.Service != "" {
			return nil, bad("help takes no service")
		}
		cmd.Verb = v
		words = words[1:]
	}
	if len(words) > 0 {
		return nil, bad("unexpected %q after the command; nothing may follow it on its line", strings.Join(words, " "))
	}
	return cmd, nil
}

// looksNumeric says a word is meant as a number (so "5O" or "-3" are
// reported as bad percentages rather than as service names).
func looksNumeric(w string) bool {
	if w == "" {
		return false
	}
	c := w[0]
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.'
}

func percent(w string) (int, error) {
	s := strings.TrimSuffix(w, "%")
	n, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("percentage %q: want a whole number from 0 to 100, e.g. 50 or 50%%", w)
	}
	if n < 0 || n > 100 {
		return 0, fmt.Errorf("percentage %d: must be between 0 and 100", n)
	}
	return n, nil
}
