package deploy

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Format is how RenderTraffic writes.
type Format int

// The formats: aligned text for a terminal, GitHub Markdown (a table and
// a Mermaid pie, which GitHub renders) for job summaries and PR replies.
const (
	Text Format = iota
	Markdown
)

// TrafficView is what RenderTraffic shows: a route's traffic, and, when a
// move is being reported, what it was before.
type TrafficView struct {
	// Title names the route (the pie's title).
	Title string
	// Before is nil when no move is reported (then one Traffic column).
	Before []v1alpha1.TrafficTarget
	After  []v1alpha1.TrafficTarget
	// URL returns the address of a named target ("" for none); nil: no
	// URL column.
	URL func(target string) string
}

type trafficRow struct {
	name, revision string
	before, after  *int
}

func rows(v TrafficView) []*trafficRow {
	var out []*trafficRow
	find := func(t v1alpha1.TrafficTarget) *trafficRow {
		rev := t.RevisionName
		if rev == "" {
			rev = "latest of " + t.ConfigurationName
		}
		for _, r := range out {
			if r.name == t.Name && r.revision == rev {
				return r
			}
		}
		r := &trafficRow{name: t.Name, revision: rev}
		out = append(out, r)
		return r
	}
	add := func(p **int, n int) {
		if *p == nil {
			*p = new(int)
		}
		**p += n
	}
	for _, t := range v.After {
		add(&find(t).after, t.Percent)
	}
	for _, t := range v.Before {
		add(&find(t).before, t.Percent)
	}
	return out
}

func pct(p *int) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%d%%", *p)
}

// RenderTraffic writes v as a table in format f.
func RenderTraffic(w io.Writer, f Format, v TrafficView) error {
	rs := rows(v)
	moved := v.Before != nil
	if f == Text {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		head := []string{"Name", "Revision"}
		if moved {
			head = append(head, "Before", "After")
		} else {
			head = append(head, "Traffic")
		}
		if v.URL != nil {
			head = append(head, "URL")
		}
		fmt.Fprintln(tw, strings.Join(head, "\t"))
		for _, r := range rs {
			cols := []string{r.name, r.revision}
			if moved {
				cols = append(cols, pct(r.before))
			}
			cols = append(cols, pct(r.after))
			if v.URL != nil {
				cols = append(cols, url(v, r.name))
			}
			fmt.Fprintln(tw, strings.Join(cols, "\t"))
		}
		return tw.Flush()
	}
	var b strings.Builder
	head := "| Target | Revision |"
	rule := "|---|---|"
	if moved {
		head += " Before | After |"
		rule += "---:|---:|"
	} else {
		head += " Traffic |"
		rule += "---:|"
	}
	if v.URL != nil {
		head += " URL |"
		rule += "---|"
	}
	b.WriteString(head + "\n" + rule + "\n")
	for _, r := range rs {
		name := r.name
		if name == "" {
			name = "—"
		}
		fmt.Fprintf(&b, "| %s | `%s` |", md(name), md(r.revision))
		if moved {
			fmt.Fprintf(&b, " %s |", pct(r.before))
		}
		fmt.Fprintf(&b, " %s |", pct(r.after))
		if v.URL != nil {
			if u := url(v, r.name); u != "" {
				fmt.Fprintf(&b, " <%s> |", u)
			} else {
				b.WriteString("  |")
			}
		}
		b.WriteString("\n")
	}
	var slices []string
	for _, r := range rs {
		if r.after != nil && *r.after > 0 {
			label := r.revision
			if r.name != "" {
				label = r.name + " " + r.revision
			}
			slices = append(slices, fmt.Sprintf("    %q : %d", strings.ReplaceAll(label, `"`, "'"), *r.after))
		}
	}
	if len(slices) > 0 {
		title := strings.ReplaceAll(v.Title, "\n", " ")
		fmt.Fprintf(&b, "\n```mermaid\npie showData title %s\n%s\n```\n", title, strings.Join(slices, "\n"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func url(v TrafficView, name string) string {
	if v.URL == nil || name == "" {
		return ""
	}
	return v.URL(name)
}

// md escapes what would break a Markdown table cell.
func md(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) }

// TargetURL is the address of a route's named target, following the
// default host template: <target>.<route domain>.
func TargetURL(scheme, domain, port, target string) string {
	if domain == "" {
		return ""
	}
	host := domain
	if target != "" {
		host = target + "." + domain
	}
	if port != "" && port != "80" {
		host += ":" + port
	}
	return scheme + "://" + host
}

// Split writes traffic on one line: "current=hello-00001:95% next=hello-00002:5%".
func Split(t []v1alpha1.TrafficTarget) string { return v1alpha1.FormatTraffic(t) }
