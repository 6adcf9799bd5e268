package bot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/command"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/rollout"
)

// PreviewTarget is the route target that addresses pull request n's
// preview revision.
func PreviewTarget(n int) string { return "pr-" + strconv.Itoa(n) }

// Plan turns a traffic command for a pull request's revision into the
// operation the deploy facade applies to the route, or refuses with a
// reason written for the person who asked. revision is the PR's revision
// (its preview for an open PR, the one built from its merge commit for a
// merged one). The operation itself re-checks everything against the
// route it reads (readiness, invariants), so a route that changed in
// between is judged as it is then.
func Plan(cmd command.Command, pr int, revision string) (deploy.Op, error) {
	if revision == "" {
		return nil, &rollout.RefusedError{Reason: fmt.Sprintf("pull request #%d has no revision to move traffic to", pr)}
	}
	switch cmd.Verb {
	case command.SetPercent:
		return claim(pr, revision, func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
			return rollout.SetNext(t, cmd.Percent, ready)
		}), nil
	case command.Finish:
		return claim(pr, revision, rollout.Finish), nil
	case command.Abort:
		return func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
			ni := rollout.Find(t, rollout.Next)
			if ni < 0 || t[ni].RevisionName != revision {
				return nil, &rollout.RefusedError{Reason: fmt.Sprintf("revision %s of pull request #%d is not the canary (next), so there is nothing of it to abort", revision, pr)}
			}
			return rollout.Abort(t, ready)
		}, nil
	}
	return nil, fmt.Errorf("plan: %s does not move traffic", cmd.Verb)
}

// claim makes revision the canary (next) if it is not, then applies op.
// While another revision is the canary above 0%, it is refused, naming
// who holds it: one pull request's canary is not silently replaced by
// another's.
func claim(pr int, revision string, op deploy.Op) deploy.Op {
	return func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
		ni := rollout.Find(t, rollout.Next)
		if ni >= 0 && t[ni].RevisionName != revision && t[ni].Percent > 0 {
			return nil, &rollout.RefusedError{Reason: fmt.Sprintf(
				"%s holds the canary (revision %s at %d%%); it has to finish or abort before pull request #%d can take it",
				holder(t, t[ni].RevisionName), t[ni].RevisionName, t[ni].Percent, pr)}
		}
		if ci := rollout.Find(t, rollout.Current); ci >= 0 && t[ci].RevisionName == revision && (ni < 0 || t[ni].RevisionName != revision) {
			return nil, &rollout.RefusedError{Reason: fmt.Sprintf("revision %s of pull request #%d already serves as current", revision, pr)}
		}
		staged := t
		if ni < 0 || t[ni].RevisionName != revision {
			var err error
			if staged, err = rollout.Stage(t, rollout.Next, revision, nil); err != nil {
				return nil, err
			}
		}
		out, err := op(staged, ready)
		if err != nil {
			return nil, err
		}
		// Readiness is judged against the route as it was too: staging
		// may have moved a share back to current.
		return out, checkReady(t, out, ready)
	}
}

// checkReady refuses a result in which a revision that is not Ready gains
// traffic compared with before.
func checkReady(before, after rollout.Traffic, ready rollout.ReadyFunc) error {
	if ready == nil {
		return nil
	}
	was, now := rollout.ByRevision(before), rollout.ByRevision(after)
	for rev, p := range now {
		if p > was[rev] {
			if ok, why := ready(rev); !ok {
				return &rollout.RefusedError{Reason: fmt.Sprintf("revision %s cannot take traffic: %s", rev, why)}
			}
		}
	}
	return nil
}

// holder names who holds revision: the pull requests whose preview
// targets address it, or the revision itself.
func holder(t rollout.Traffic, revision string) string {
	var prs []string
	for _, x := range t {
		if x.RevisionName == revision && strings.HasPrefix(x.Name, "pr-") {
			prs = append(prs, "pull request #"+strings.TrimPrefix(x.Name, "pr-"))
		}
	}
	if len(prs) == 0 {
		return "another revision"
	}
	return strings.Join(prs, " and ")
}

// Table is the traffic before → after as a Markdown table, one row per
// revision, and a Mermaid pie of after (GitHub renders it).
func Table(before, after []v1alpha1.TrafficTarget) string {
	type row struct {
		rev         string
		names       []string
		was, is     int
		wasIn, isIn bool
	}
	var rows []*row
	get := func(rev string) *row {
		for _, r := range rows {
			if r.rev == rev {
				return r
			}
		}
		r := &row{rev: rev}
		rows = append(rows, r)
		return r
	}
	for _, x := range after {
		r := get(x.RevisionName)
		r.is += x.Percent
		r.isIn = true
		if x.Name != "" && !slices.Contains(r.names, x.Name) {
			r.names = append(r.names, x.Name)
		}
	}
	for _, x := range before {
		r := get(x.RevisionName)
		r.was += x.Percent
		r.wasIn = true
	}
	var b strings.Builder
	b.WriteString("| revision | targets | before | after |\n|---|---|---:|---:|\n")
	pct := func(in bool, p int) string {
		if !in {
			return "—"
		}
		return strconv.Itoa(p) + "%"
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.rev, strings.Join(r.names, ", "), pct(r.wasIn, r.was), pct(r.isIn, r.is))
	}
	b.WriteString("\n```mermaid\npie showData title Traffic after\n")
	for _, r := range rows {
		if r.is > 0 {
			fmt.Fprintf(&b, "    %q : %d\n", r.rev, r.is)
		}
	}
	b.WriteString("```\n")
	return b.String()
}
