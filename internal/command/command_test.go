package command

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	pct := func(p int) *Command { return &Command{Verb: SetPercent, Percent: p, Line: 1} }
	svc := func(s string, c *Command) *Command { c.Service = s; return c }
	verb := func(v Verb) *Command { return &Command{Verb: v, Line: 1} }
	at := func(line int, c *Command) *Command { c.Line = line; return c }
	tests := []struct {
		name, body string
		want       *Command
	}{
		{"percent", "/rollout 50", pct(50)},
		{"percent sign", "/rollout 50%", pct(50)},
		{"zero", "/rollout 0", pct(0)},
		{"hundred", "/rollout 100%", pct(100)},
		{"seed form", "/rollout next percent 50", pct(50)},
		{"seed form, capitals", "/rollout Next Percent 25%", pct(25)},
		{"service", "/rollout api 50", svc("api", pct(50))},
		{"service, seed form", "/rollout api next percent 5", svc("api", pct(5))},
		{"finish", "/rollout finish", verb(Finish)},
		{"FINISH", "/rollout FINISH", verb(Finish)},
		{"abort", "/rollout abort", verb(Abort)},
		{"status", "/rollout status", verb(Status)},
		{"pause", "/rollout pause", verb(Pause)},
		{"resume", "/rollout resume", verb(Resume)},
		{"help", "/rollout help", verb(Help)},
		{"bare keyword is help", "/rollout", verb(Help)},
		{"service finish", "/rollout web-frontend finish", svc("web-frontend", verb(Finish))},
		{"service status", "/rollout api status", svc("api", verb(Status))},
		{"extra spaces", "/rollout    50   ", pct(50)},
		{"tab", "/rollout\t50", pct(50)},
		{"non-breaking space", "/rollout\u00a050", pct(50)},
		{"CRLF", "/rollout 50\r\n", pct(50)},
		{"after prose", "Looks good!\n\n/rollout 25", at(3, pct(25))},
		{"before prose", "/rollout finish\nthanks", verb(Finish)},
		{"up to three spaces of indent", "   /rollout 50", pct(50)},
		{"after a closed fence", "```\n/rollout 10\n```\n/rollout 20", at(4, pct(20))},
		{"after a quote", "> /rollout 10\n\n/rollout 30", at(3, pct(30))},

		{"empty", "", nil},
		{"prose", "please roll this out", nil},
		{"mid-line", "please /rollout 50", nil},
		{"inline code", "type `/rollout 50` to go on", nil},
		{"inline code at line start", "`/rollout 50`", nil},
		{"quoted", "> /rollout 50", nil},
		{"quoted with indent", "  > /rollout 50", nil},
		{"nested quote", ">> /rollout 50", nil},
		{"fenced", "```\n/rollout 50\n```", nil},
		{"fenced with info", "```sh\n/rollout 50\n```", nil},
		{"tilde fence", "~~~\n/rollout 50\n~~~", nil},
		{"long fence closed by longer", "````\n```\n/rollout 50\n`````", nil},
		{"unclosed fence", "```\n/rollout 50", nil},
		{"indented code", "    /rollout 50", nil},
		{"tab code", "\t/rollout 50", nil},
		{"list item", "- /rollout 50", nil},
		{"other word", "/rollouts 50", nil},
		{"hyphenated word", "/rollout-bot 50", nil},
		{"other command", "/deploy 50", nil},
		{"capital keyword", "/Rollout 50", nil},
		{"html comment marker", "<!-- elafros:rollout -->\n/rollout", at(2, verb(Help))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.body)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.body, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.body, diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, body string
		line       int
		reason     string
	}{
		{"over 100", "/rollout 150", 1, "between 0 and 100"},
		{"negative", "/rollout -5", 1, "between 0 and 100"},
		{"fraction", "/rollout 50.5", 1, "whole number"},
		{"leading zero", "/rollout 050", 1, "whole number"},
		{"plus", "/rollout +50", 1, "whole number"},
		{"letter O", "/rollout 5O", 1, "whole number"},
		{"double percent", "/rollout 50%%", 1, "whole number"},
		{"trailing words", "/rollout 50 please", 1, `unexpected "please"`},
		{"finish now", "/rollout finish now", 1, `unexpected "now"`},
		{"unknown verb", "/rollout api promote", 1, `unknown command "promote"`},
		{"service only", "/rollout api", 1, "what should happen to api"},
		{"bad service", "/rollout My_Service 50", 1, "not a command or a service name"},
		{"seed form without percent", "/rollout next 50", 1, "next percent N"},
		{"seed form without number", "/rollout next percent", 1, "next percent N"},
		{"help with service", "/rollout api help", 1, "help takes no service"},
		{"two commands", "/rollout 50\n/rollout finish", 2, "second command (the first is on line 1)"},
		{"error on a later line", "hi\n\n/rollout 500", 3, "between 0 and 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.body)
			if got != nil {
				t.Errorf("Parse(%q) = %+v, want no command", tc.body, got)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse(%q): %v, want *Error", tc.body, err)
			}
			if ce.Line != tc.line || !strings.Contains(ce.Reason, tc.reason) {
				t.Errorf("error line %d %q, want line %d containing %q", ce.Line, ce.Reason, tc.line, tc.reason)
			}
			if !strings.Contains(err.Error(), Usage) {
				t.Errorf("error text lacks the usage: %s", err)
			}
		})
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, c := range []Command{
		{Verb: SetPercent, Percent: 5, Line: 1}, {Verb: SetPercent, Service: "api", Percent: 100, Line: 1},
		{Verb: Finish, Line: 1}, {Verb: Abort, Service: "web", Line: 1}, {Verb: Help, Line: 1},
	} {
		got, err := Parse(c.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.String(), err)
		}
		if diff := cmp.Diff(&c, got); diff != "" {
			t.Errorf("round trip of %q (-want +got):\n%s", c.String(), diff)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/rollout 50", "/rollout api next percent 5", "> /rollout 1", "```\n/rollout 2\n```",
		"    /rollout 3", "/rollout finish\n/rollout abort", "/rollout 50%", "hi /rollout", "~~~~\n/rollout 9\n~~~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		c, err := Parse(body)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || c != nil {
				t.Fatalf("Parse(%q) = %v, %v: errors are *Error and come without a command", body, c, err)
			}
			return
		}
		if c == nil {
			return
		}
		if c.Verb == SetPercent && (c.Percent < 0 || c.Percent > 100) {
			t.Fatalf("Parse(%q): percent %d", body, c.Percent)
		}
		// What was found reads back the same from its canonical form.
		back, err := Parse(c.String())
		if err != nil || back.Verb != c.Verb || back.Percent != c.Percent || back.Service != c.Service {
			t.Fatalf("Parse(%q) = %+v; its String %q reads back as %+v, %v", body, c, c.String(), back, err)
		}
		// Quoting every line of a comment never leaves a command.
		quoted := "> " + strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\n> ")
		if q, _ := Parse(quoted); q != nil {
			t.Fatalf("quoted %q yields %+v", quoted, q)
		}
	})
}
