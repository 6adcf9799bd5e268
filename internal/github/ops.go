package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	gh "github.com/google/go-github/v60/github"
)

// --- deployments ---

// DeploymentRequest is a deployment to create. The client always sends
// auto_merge: false (a deployment must deploy what was built, never a merge
// GitHub made) and required_contexts: [] (the Action decides about checks
// itself; GitHub's default would refuse while any status is pending).
type DeploymentRequest struct {
	Ref         string // branch, tag or SHA
	Environment string // default production
	Description string
	Payload     map[string]any
	// Transient environments (previews) are inactive once they go.
	Transient  bool
	Production bool
}

// ErrDeploymentNotCreated is returned when GitHub answers 202 to a
// deployment: it merged the default branch into the ref instead of
// deploying (go-github reports the 202 as an AcceptedError).
var ErrDeploymentNotCreated = errors.New("GitHub did not create the deployment")

// CreateDeployment creates a deployment and returns its id.
func (c *Client) CreateDeployment(ctx context.Context, repo Repo, d DeploymentRequest) (int64, error) {
	if d.Ref == "" {
		return 0, errors.New("deployment: ref is empty; want the branch, tag or commit SHA deployed")
	}
	req := &gh.DeploymentRequest{
		Ref: gh.String(d.Ref), AutoMerge: gh.Bool(false), RequiredContexts: &[]string{},
		Environment: gh.String(cmpOr(d.Environment, "production")), Description: gh.String(d.Description),
		TransientEnvironment: gh.Bool(d.Transient), ProductionEnvironment: gh.Bool(d.Production),
	}
	if d.Payload != nil {
		req.Payload = d.Payload
	}
	dep, resp, err := c.gh.Repositories.CreateDeployment(ctx, repo.Owner, repo.Name, req)
	var acc *gh.AcceptedError
	if errors.As(err, &acc) {
		return 0, fmt.Errorf("%w for %s in %s: GitHub answered 202 (%s)", ErrDeploymentNotCreated, d.Ref, repo, strings.TrimSpace(string(acc.Raw)))
	}
	if err != nil {
		return 0, wrap("create deployment in "+repo.String(), resp, err)
	}
	return dep.GetID(), nil
}

// DeploymentState is a deployment status's state.
type DeploymentState string

// The states the project sets (GitHub also has error, queued, pending).
const (
	StateInProgress DeploymentState = "in_progress"
	StateSuccess    DeploymentState = "success"
	StateFailure    DeploymentState = "failure"
	StateInactive   DeploymentState = "inactive"
	StateError      DeploymentState = "error"
	StateQueued     DeploymentState = "queued"
	StatePending    DeploymentState = "pending"
)

var deploymentStates = []DeploymentState{StateInProgress, StateSuccess, StateFailure, StateInactive, StateError, StateQueued, StatePending}

// DeploymentStatus is a status to set on a deployment.
type DeploymentStatus struct {
	State          DeploymentState
	EnvironmentURL string // where it answers
	LogURL         string // the run's log
	Description    string // at most 140 characters; longer is cut
}

// SetDeploymentStatus adds a status to deployment id.
func (c *Client) SetDeploymentStatus(ctx context.Context, repo Repo, id int64, st DeploymentStatus) error {
	if !slices.Contains(deploymentStates, st.State) {
		return fmt.Errorf("deployment status: state %q; want one of %v", st.State, deploymentStates)
	}
	desc := st.Description
	if r := []rune(desc); len(r) > 140 {
		desc = string(r[:139]) + "…"
	}
	req := &gh.DeploymentStatusRequest{State: gh.String(string(st.State)), Description: gh.String(desc)}
	if st.EnvironmentURL != "" {
		req.EnvironmentURL = gh.String(st.EnvironmentURL)
	}
	if st.LogURL != "" {
		req.LogURL = gh.String(st.LogURL)
	}
	_, resp, err := c.gh.Repositories.CreateDeploymentStatus(ctx, repo.Owner, repo.Name, id, req)
	return wrap(fmt.Sprintf("set deployment %d status %s in %s", id, st.State, repo), resp, err)
}

// LatestDeployment returns the newest deployment of repo to environment
// (and of sha, when given); found is false when there is none.
func (c *Client) LatestDeployment(ctx context.Context, repo Repo, environment, sha string) (id int64, found bool, err error) {
	ds, resp, err := c.gh.Repositories.ListDeployments(ctx, repo.Owner, repo.Name,
		&gh.DeploymentsListOptions{Environment: environment, SHA: sha, ListOptions: gh.ListOptions{PerPage: 1}})
	if err != nil {
		return 0, false, wrap(fmt.Sprintf("list deployments of %s to %s", repo, environment), resp, err)
	}
	if len(ds) == 0 {
		return 0, false, nil
	}
	return ds[0].GetID(), true, nil
}

// --- sticky comments ---

var markerKey = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,99}$`)

// Marker is the hidden line that identifies a sticky comment by key.
func Marker(key string) string { return "<!-- elafros:" + key + " -->" }

// maxComment is GitHub's cap on a comment body.
const maxComment = 65536

// UpsertComment keeps ONE comment on issue (or pull request) number that
// carries key's marker: it edits the existing one, or creates it. It
// returns the comment's id.
func (c *Client) UpsertComment(ctx context.Context, repo Repo, number int, key, body string) (int64, error) {
	if !markerKey.MatchString(key) {
		return 0, fmt.Errorf("sticky comment key %q: want lower-case letters, digits, '.', '_', '/', '-'", key)
	}
	full := Marker(key) + "\n" + body
	if r := []rune(full); len(r) > maxComment {
		const cut = "\n\n… (cut: GitHub keeps at most 65536 characters)"
		full = string(r[:maxComment-len([]rune(cut))]) + cut
	}
	ids, err := c.findMarked(ctx, repo, number, key)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		cm, resp, err := c.gh.Issues.CreateComment(ctx, repo.Owner, repo.Name, number, &gh.IssueComment{Body: gh.String(full)})
		if err != nil {
			return 0, wrap(fmt.Sprintf("comment on %s#%d", repo, number), resp, err)
		}
		return cm.GetID(), nil
	}
	cm, resp, err := c.gh.Issues.EditComment(ctx, repo.Owner, repo.Name, ids[0], &gh.IssueComment{Body: gh.String(full)})
	if err != nil {
		return 0, wrap(fmt.Sprintf("edit comment %d on %s#%d", ids[0], repo, number), resp, err)
	}
	// Two writers racing on a first comment can leave two; keep the
	// oldest, so the comment stays sticky.
	for _, extra := range ids[1:] {
		if resp, err := c.gh.Issues.DeleteComment(ctx, repo.Owner, repo.Name, extra); err != nil && !IsNotFound(wrap("", resp, err)) {
			return cm.GetID(), wrap(fmt.Sprintf("delete duplicate comment %d", extra), resp, err)
		}
	}
	return cm.GetID(), nil
}

// DeleteComment removes the sticky comment for key, if there is one, and
// says whether it did.
func (c *Client) DeleteComment(ctx context.Context, repo Repo, number int, key string) (bool, error) {
	ids, err := c.findMarked(ctx, repo, number, key)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		if resp, err := c.gh.Issues.DeleteComment(ctx, repo.Owner, repo.Name, id); err != nil && !IsNotFound(wrap("", resp, err)) {
			return false, wrap(fmt.Sprintf("delete comment %d on %s#%d", id, repo, number), resp, err)
		}
	}
	return len(ids) > 0, nil
}

// Reply posts a new (not sticky) comment and returns its id.
func (c *Client) Reply(ctx context.Context, repo Repo, number int, body string) (int64, error) {
	cm, resp, err := c.gh.Issues.CreateComment(ctx, repo.Owner, repo.Name, number, &gh.IssueComment{Body: gh.String(body)})
	if err != nil {
		return 0, wrap(fmt.Sprintf("comment on %s#%d", repo, number), resp, err)
	}
	return cm.GetID(), nil
}

func (c *Client) findMarked(ctx context.Context, repo Repo, number int, key string) ([]int64, error) {
	marker := Marker(key)
	var ids []int64
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		cms, resp, err := c.gh.Issues.ListComments(ctx, repo.Owner, repo.Name, number, opts)
		if err != nil {
			return nil, wrap(fmt.Sprintf("list comments on %s#%d", repo, number), resp, err)
		}
		for _, cm := range cms {
			if strings.HasPrefix(cm.GetBody(), marker) {
				ids = append(ids, cm.GetID())
			}
		}
		if resp.NextPage == 0 {
			return ids, nil
		}
		opts.Page = resp.NextPage
	}
}

// --- reactions ---

// Reaction is one of the reactions GitHub offers.
type Reaction string

// The reactions GitHub offers on a comment.
const (
	ReactionPlusOne  Reaction = "+1"
	ReactionMinusOne Reaction = "-1"
	ReactionLaugh    Reaction = "laugh"
	ReactionConfused Reaction = "confused"
	ReactionHeart    Reaction = "heart"
	ReactionHooray   Reaction = "hooray"
	ReactionRocket   Reaction = "rocket"
	ReactionEyes     Reaction = "eyes"
)

var reactions = []Reaction{ReactionPlusOne, ReactionMinusOne, ReactionLaugh, ReactionConfused, ReactionHeart, ReactionHooray, ReactionRocket, ReactionEyes}

// React adds a reaction to an issue comment (GitHub keeps one of each per
// user, so repeating it is harmless).
func (c *Client) React(ctx context.Context, repo Repo, commentID int64, r Reaction) error {
	if !slices.Contains(reactions, r) {
		return fmt.Errorf("reaction %q: want one of %v", r, reactions)
	}
	_, resp, err := c.gh.Reactions.CreateIssueCommentReaction(ctx, repo.Owner, repo.Name, commentID, string(r))
	return wrap(fmt.Sprintf("react %s to comment %d in %s", r, commentID, repo), resp, err)
}

// --- who may ---

// Permission is a user's role on a repository.
type Permission string

// The repository roles, strongest first.
const (
	PermAdmin    Permission = "admin"
	PermMaintain Permission = "maintain"
	PermWrite    Permission = "write"
	PermTriage   Permission = "triage"
	PermRead     Permission = "read"
	PermNone     Permission = "none"
)

// CanWrite says the role may push (admin, maintain, write).
func (p Permission) CanWrite() bool { return p == PermAdmin || p == PermMaintain || p == PermWrite }

// Permission returns login's role on repo from the collaborator permission
// API: its role_name when it is one of GitHub's roles, else (a custom role)
// the base permission it carries. A user GitHub does not know has none.
// Never the webhook's author_association: a private org member shows as
// CONTRIBUTOR there.
func (c *Client) Permission(ctx context.Context, repo Repo, login string) (Permission, error) {
	u := fmt.Sprintf("repos/%s/%s/collaborators/%s/permission", repo.Owner, repo.Name, login)
	req, err := c.gh.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return PermNone, err
	}
	var out struct {
		Permission string `json:"permission"`
		RoleName   string `json:"role_name"`
	}
	resp, err := c.gh.Do(ctx, req, &out)
	if err != nil {
		err = wrap(fmt.Sprintf("permission of %s on %s", login, repo), resp, err)
		if IsNotFound(err) {
			return PermNone, nil
		}
		return PermNone, err
	}
	switch p := Permission(out.RoleName); p {
	case PermAdmin, PermMaintain, PermWrite, PermTriage, PermRead, PermNone:
		return p, nil
	}
	switch p := Permission(out.Permission); p {
	case PermAdmin, PermWrite, PermRead:
		return p, nil
	}
	return PermNone, nil
}

// IsTeamMember says login is an active member of team ("org/team-slug").
func (c *Client) IsTeamMember(ctx context.Context, team, login string) (bool, error) {
	org, slug, ok := strings.Cut(team, "/")
	if !ok || org == "" || slug == "" || strings.Contains(slug, "/") {
		return false, fmt.Errorf("team %q: want org/team-slug", team)
	}
	m, resp, err := c.gh.Teams.GetTeamMembershipBySlug(ctx, org, slug, login)
	if err != nil {
		err = wrap(fmt.Sprintf("membership of %s in %s", login, team), resp, err)
		if IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return m.GetState() == "active", nil
}

// --- pull requests and checks ---

// PullRequest is what the project reads of a pull request.
type PullRequest struct {
	Number         int
	State          string // open, closed
	Merged         bool
	MergeCommitSHA string
	HeadSHA        string
	HeadRef        string
	HeadRepo       string // owner/name
	Fork           bool   // the head is in another repository
	BaseRef        string
	Author         string
	HTMLURL        string
}

// PullRequest returns pull request number.
func (c *Client) PullRequest(ctx context.Context, repo Repo, number int) (*PullRequest, error) {
	pr, resp, err := c.gh.PullRequests.Get(ctx, repo.Owner, repo.Name, number)
	if err != nil {
		return nil, wrap(fmt.Sprintf("get pull request %s#%d", repo, number), resp, err)
	}
	return &PullRequest{
		Number: pr.GetNumber(), State: pr.GetState(), Merged: pr.GetMerged(), MergeCommitSHA: pr.GetMergeCommitSHA(),
		HeadSHA: pr.GetHead().GetSHA(), HeadRef: pr.GetHead().GetRef(), HeadRepo: pr.GetHead().GetRepo().GetFullName(),
		Fork:    pr.GetHead().GetRepo().GetFullName() != repo.String(),
		BaseRef: pr.GetBase().GetRef(), Author: pr.GetUser().GetLogin(), HTMLURL: pr.GetHTMLURL(),
	}, nil
}

// Checks is the verdict on a commit's checks.
type Checks struct {
	Green   bool
	Passed  []string
	Pending []string
	Failed  []string
	// Missing are required checks with no result at all.
	Missing []string
}

// ChecksGreen says whether a commit's checks (check runs and commit
// statuses) are green. With required names, each must have passed (a
// missing result is not green); without, every result present must have
// passed and there must be at least one.
func (c *Client) ChecksGreen(ctx context.Context, repo Repo, sha string, required []string) (Checks, error) {
	results := map[string]string{} // name → passed, pending, failed
	opts := &gh.ListCheckRunsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		runs, resp, err := c.gh.Checks.ListCheckRunsForRef(ctx, repo.Owner, repo.Name, sha, opts)
		if err != nil {
			return Checks{}, wrap(fmt.Sprintf("check runs of %s in %s", sha, repo), resp, err)
		}
		for _, r := range runs.CheckRuns {
			v := "pending"
			if r.GetStatus() == "completed" {
				switch r.GetConclusion() {
				case "success", "neutral", "skipped":
					v = "passed"
				default:
					v = "failed"
				}
			}
			results[r.GetName()] = worse(results[r.GetName()], v)
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	st, resp, err := c.gh.Repositories.GetCombinedStatus(ctx, repo.Owner, repo.Name, sha, &gh.ListOptions{PerPage: 100})
	if err != nil {
		return Checks{}, wrap(fmt.Sprintf("statuses of %s in %s", sha, repo), resp, err)
	}
	for _, s := range st.Statuses {
		v := map[string]string{"success": "passed", "pending": "pending"}[s.GetState()]
		if v == "" {
			v = "failed"
		}
		results[s.GetContext()] = worse(results[s.GetContext()], v)
	}
	var out Checks
	names := required
	if len(names) == 0 {
		for n := range results {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		switch results[n] {
		case "passed":
			out.Passed = append(out.Passed, n)
		case "pending":
			out.Pending = append(out.Pending, n)
		case "failed":
			out.Failed = append(out.Failed, n)
		default:
			out.Missing = append(out.Missing, n)
		}
	}
	out.Green = len(names) > 0 && len(out.Passed) == len(names)
	return out, nil
}

// worse keeps the worst of two results for one name (a re-run that passed
// is a separate result GitHub lists too; any failure is not green).
func worse(a, b string) string {
	rank := map[string]int{"": 0, "passed": 1, "pending": 2, "failed": 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// --- the App's webhook deliveries ---

// Delivery is one delivery of the App's webhook.
type Delivery struct {
	ID             int64
	GUID           string // X-GitHub-Delivery; a redelivery keeps it
	Event, Action  string
	StatusCode     int
	Redelivery     bool
	DeliveredAt    time.Time
	InstallationID int64
}

// Failed says the delivery did not get a 2xx.
func (d Delivery) Failed() bool { return d.StatusCode < 200 || d.StatusCode > 299 }

// FailedDeliveries lists the App's deliveries since the given time that
// failed and were not delivered since (a later delivery of the same GUID
// that succeeded), oldest first: GitHub never redelivers by itself, so
// these are the events the App missed.
func (a *App) FailedDeliveries(ctx context.Context, since time.Time) ([]Delivery, error) {
	latest := map[string]Delivery{}
	var order []string
	opts := &gh.ListCursorOptions{PerPage: 100}
	for {
		ds, resp, err := a.gh.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			return nil, wrap("list the App's webhook deliveries", resp, err)
		}
		older := false
		for _, d := range ds {
			dd := Delivery{ID: d.GetID(), GUID: d.GetGUID(), Event: d.GetEvent(), Action: d.GetAction(),
				StatusCode: d.GetStatusCode(), Redelivery: d.GetRedelivery(), DeliveredAt: d.GetDeliveredAt().Time,
				InstallationID: d.GetInstallationID()}
			if dd.DeliveredAt.Before(since) {
				older = true
				continue
			}
			// Newest first: the first seen of a GUID is its latest try.
			if _, seen := latest[dd.GUID]; !seen {
				latest[dd.GUID] = dd
				order = append(order, dd.GUID)
			}
		}
		if older || resp.Cursor == "" {
			break
		}
		opts.Cursor = resp.Cursor
	}
	var out []Delivery
	for i := len(order) - 1; i >= 0; i-- {
		if d := latest[order[i]]; d.Failed() {
			out = append(out, d)
		}
	}
	return out, nil
}

// Redeliver asks GitHub to deliver delivery id again (it keeps its GUID).
func (a *App) Redeliver(ctx context.Context, id int64) error {
	_, resp, err := a.gh.Apps.RedeliverHookDelivery(ctx, id)
	var acc *gh.AcceptedError
	if errors.As(err, &acc) {
		return nil // 202 is GitHub's answer: the redelivery is queued
	}
	return wrap(fmt.Sprintf("redeliver delivery %d", id), resp, err)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
