package githubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Deployment is a GitHub deployment as the fake holds it.
type Deployment struct {
	ID               int64
	Repo             string // owner/name
	Ref, SHA, Task   string
	Environment      string
	Description      string
	AutoMerge        bool
	RequiredContexts []string // nil: all contexts required (GitHub's default)
	Payload          json.RawMessage
	Creator          string
	CreatedAt        time.Time
	Statuses         []DeploymentStatus // oldest first
}

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	EnvironmentURL string
	LogURL         string
	Description    string
	Environment    string
}

// Comment is an issue (or pull request) comment.
type Comment struct {
	ID        int64
	Repo      string
	Issue     int
	User      string
	Body      string
	Reactions []Reaction
}

// Reaction is one reaction on an issue comment.
type Reaction struct {
	ID      int64
	User    string
	Content string
}

// PullRequest is the part of a pull request the project reads.
type PullRequest struct {
	Number         int
	State          string // open, closed
	Merged         bool
	MergeCommitSHA string
	HeadSHA        string
	HeadRef        string
	// HeadRepo is the head's owner/name; another repository is a fork.
	HeadRepo string
	BaseRef  string
	User     string
}

// CommitStatus is one status (the statuses API) on a commit.
type CommitStatus struct {
	Context string
	State   string // error, failure, pending, success
}

// CheckRun is one check run on a commit.
type CheckRun struct {
	Name       string
	Status     string // queued, in_progress, completed
	Conclusion string // success, failure, neutral, cancelled, skipped, timed_out, action_required
}

// Delivery is one delivery of the App's webhook.
type Delivery struct {
	ID             int64
	GUID           string
	Event, Action  string
	StatusCode     int // 0: GitHub could not connect
	Redelivery     bool
	InstallationID int64
	DeliveredAt    time.Time
	Payload        json.RawMessage
}

// --- seeding and assertions ---

// SetPermission gives login a role on repo: admin, maintain, write,
// triage or read (as the collaborator API's role_name).
func (s *Server) SetPermission(repo, login, role string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.permissions[repo] == nil {
		s.permissions[repo] = map[string]string{}
	}
	s.permissions[repo][login] = role
}

// SetTeamMember makes login a member of org/team in state (active, pending).
func (s *Server) SetTeamMember(orgTeam, login, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.teams[orgTeam] == nil {
		s.teams[orgTeam] = map[string]string{}
	}
	s.teams[orgTeam][login] = state
}

// SetPullRequest seeds or replaces a pull request of repo.
func (s *Server) SetPullRequest(repo string, pr PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pulls[repo] == nil {
		s.pulls[repo] = map[int]*PullRequest{}
	}
	if pr.State == "" {
		pr.State = "open"
	}
	if pr.HeadRepo == "" {
		pr.HeadRepo = repo
	}
	s.pulls[repo][pr.Number] = &pr
}

// SetCommitStatus adds or replaces a status context on a commit.
func (s *Server) SetCommitStatus(repo, sha string, st CommitStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statuses[repo] == nil {
		s.statuses[repo] = map[string][]CommitStatus{}
	}
	list := s.statuses[repo][sha]
	list = slices.DeleteFunc(list, func(c CommitStatus) bool { return c.Context == st.Context })
	s.statuses[repo][sha] = append(list, st)
}

// SetCheckRun adds or replaces a check run (by name) on a commit.
func (s *Server) SetCheckRun(repo, sha string, cr CheckRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checkRuns[repo] == nil {
		s.checkRuns[repo] = map[string][]CheckRun{}
	}
	list := s.checkRuns[repo][sha]
	list = slices.DeleteFunc(list, func(c CheckRun) bool { return c.Name == cr.Name })
	s.checkRuns[repo][sha] = append(list, cr)
}

// SetDefaultBranchAhead says the default branch of repo has commits the
// refs being deployed lack, so a deployment with auto_merge (GitHub's
// default) is answered 202: GitHub merged instead of deploying.
func (s *Server) SetDefaultBranchAhead(repo string, ahead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ahead[repo] = ahead
}

// AddComment seeds a comment and returns its id.
func (s *Server) AddComment(repo string, issue int, user, body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Comment{ID: s.id(), Repo: repo, Issue: issue, User: user, Body: body}
	s.comments = append(s.comments, c)
	return c.ID
}

// Comments are the comments on one issue, oldest first.
func (s *Server) Comments(repo string, issue int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Comment
	for _, c := range s.comments {
		if c.Repo == repo && c.Issue == issue {
			cc := *c
			cc.Reactions = slices.Clone(c.Reactions)
			out = append(out, cc)
		}
	}
	return out
}

// Comment returns one comment by id.
func (s *Server) Comment(id int64) (Comment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.comments {
		if c.ID == id {
			cc := *c
			cc.Reactions = slices.Clone(c.Reactions)
			return cc, true
		}
	}
	return Comment{}, false
}

// Deployments are repo's deployments, oldest first.
func (s *Server) Deployments(repo string) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Deployment
	for _, d := range s.deployments {
		if d.Repo == repo {
			dd := *d
			dd.Statuses = slices.Clone(d.Statuses)
			out = append(out, dd)
		}
	}
	return out
}

// AddDelivery records a delivery of the App's webhook (as GitHub's log of
// them) and returns its id.
func (s *Server) AddDelivery(d Delivery) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.ID = s.id()
	if d.DeliveredAt.IsZero() {
		d.DeliveredAt = s.now().UTC()
	}
	s.deliveries = append(s.deliveries, &d)
	return d.ID
}

// Redeliveries are the delivery ids for which a redelivery was asked.
func (s *Server) Redeliveries() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.redeliveries)
}

// OnRedeliver sets what a redelivery does: f delivers d (e.g. signs its
// payload and posts it to the bot) and returns the status code it got,
// which the new delivery records. It runs after the 202 is sent, as
// GitHub redelivers asynchronously.
func (s *Server) OnRedeliver(f func(d Delivery) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRedeliver = f
}

// --- the operations ---

type handler func(s *Server, w http.ResponseWriter, c *call)

var handlers = map[string]handler{
	"repos/create-deployment":                 (*Server).createDeployment,
	"repos/list-deployments":                  (*Server).listDeployments,
	"repos/get-deployment":                    (*Server).getDeployment,
	"repos/delete-deployment":                 (*Server).deleteDeployment,
	"repos/create-deployment-status":          (*Server).createDeploymentStatus,
	"repos/list-deployment-statuses":          (*Server).listDeploymentStatuses,
	"issues/list-comments":                    (*Server).listComments,
	"issues/create-comment":                   (*Server).createComment,
	"issues/get-comment":                      (*Server).getComment,
	"issues/update-comment":                   (*Server).updateComment,
	"issues/delete-comment":                   (*Server).deleteComment,
	"reactions/list-for-issue-comment":        (*Server).listReactions,
	"reactions/create-for-issue-comment":      (*Server).createReaction,
	"repos/get-collaborator-permission-level": (*Server).permission,
	"teams/get-membership-for-user-in-org":    (*Server).teamMembership,
	"pulls/get":                               (*Server).getPull,
	"pulls/list":                              (*Server).listPulls,
	"checks/list-for-ref":                     (*Server).listCheckRuns,
	"repos/get-combined-status-for-ref":       (*Server).combinedStatus,
	"apps/create-installation-access-token":   (*Server).installationToken,
	"apps/list-webhook-deliveries":            (*Server).listDeliveries,
	"apps/get-webhook-delivery":               (*Server).getDelivery,
	"apps/redeliver-webhook-delivery":         (*Server).redeliver,
	"apps/get-authenticated":                  (*Server).getApp,
}

func (s *Server) apiURL(c *call, path string) string {
	return "http://" + c.r.Host + path
}

func user(login string) map[string]any {
	if login == "" {
		login = "elafros-bot"
	}
	return map[string]any{"login": login, "id": len(login) * 1000, "type": "User",
		"url": "https://api.github.com/users/" + login, "html_url": "https://github.com/" + login}
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

func shaOf(ref string) string {
	if hexSHA.MatchString(ref) {
		return ref
	}
	sum := sha1.Sum([]byte(ref))
	return hex.EncodeToString(sum[:])
}

func (s *Server) deploymentJSON(c *call, d *Deployment) map[string]any {
	url := s.apiURL(c, fmt.Sprintf("/repos/%s/deployments/%d", d.Repo, d.ID))
	payload := any(map[string]any{})
	if len(d.Payload) > 0 {
		payload = d.Payload
	}
	return shaped("repos/get-deployment", "200", false, map[string]any{
		"id": d.ID, "node_id": fmt.Sprintf("DE_%d", d.ID), "url": url, "sha": d.SHA, "ref": d.Ref,
		"task": d.Task, "payload": payload, "environment": d.Environment, "original_environment": d.Environment,
		"description": d.Description, "creator": user(d.Creator),
		"created_at": d.CreatedAt.Format(time.RFC3339), "updated_at": d.CreatedAt.Format(time.RFC3339),
		"statuses_url": url + "/statuses", "repository_url": s.apiURL(c, "/repos/"+d.Repo),
		"transient_environment": false, "production_environment": d.Environment == "production",
	})
}

// combined is GitHub's combined state of a commit's statuses: pending
// when there are none.
func combined(list []CommitStatus) string {
	if len(list) == 0 {
		return "pending"
	}
	state := "success"
	for _, st := range list {
		switch st.State {
		case "error", "failure":
			return "failure"
		case "pending":
			state = "pending"
		}
	}
	return state
}

func (s *Server) createDeployment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	repo, ref := c.repo(), c.str("ref")
	autoMerge := c.boolOr("auto_merge", true)
	if autoMerge && s.ahead[repo] {
		writeJSON(w, http.StatusAccepted, map[string]any{"message": "Auto-merged main into " + ref + " on deployment."})
		return
	}
	d := &Deployment{ID: s.id(), Repo: repo, Ref: ref, SHA: shaOf(ref), Task: c.str("task"),
		Environment: c.str("environment"), Description: c.str("description"), AutoMerge: autoMerge,
		CreatedAt: s.now().UTC(), Creator: "elafros-bot"}
	if d.Task == "" {
		d.Task = "deploy"
	}
	if d.Environment == "" {
		d.Environment = "production"
	}
	if p, ok := c.body["payload"]; ok {
		d.Payload, _ = json.Marshal(p)
	}
	if rc, ok := c.body["required_contexts"].([]any); ok {
		d.RequiredContexts = []string{}
		for _, x := range rc {
			d.RequiredContexts = append(d.RequiredContexts, x.(string))
		}
	}
	// GitHub checks the commit's statuses before it creates a deployment:
	// all of them when required_contexts is left out.
	sts := s.statuses[repo][d.SHA]
	if d.RequiredContexts != nil {
		sts = slices.DeleteFunc(slices.Clone(sts), func(st CommitStatus) bool {
			return !slices.Contains(d.RequiredContexts, st.Context)
		})
	}
	if len(sts) > 0 && combined(sts) != "success" {
		ghError(w, http.StatusConflict, "Conflict: Commit status checks failed for "+ref+".")
		return
	}
	s.deployments = append(s.deployments, d)
	writeJSON(w, http.StatusCreated, s.deploymentJSON(c, d))
}

func (s *Server) findDeployment(c *call) *Deployment {
	id := c.int("deployment_id")
	for _, d := range s.deployments {
		if d.ID == id && d.Repo == c.repo() {
			return d
		}
	}
	return nil
}

func (s *Server) listDeployments(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := c.r.URL.Query()
	var out []map[string]any
	for i := len(s.deployments) - 1; i >= 0; i-- {
		d := s.deployments[i]
		if d.Repo != c.repo() ||
			(q.Get("sha") != "" && q.Get("sha") != d.SHA) || (q.Get("ref") != "" && q.Get("ref") != d.Ref) ||
			(q.Get("task") != "" && q.Get("task") != d.Task) ||
			(q.Get("environment") != "" && q.Get("environment") != d.Environment) {
			continue
		}
		out = append(out, s.deploymentJSON(c, d))
	}
	writeJSON(w, http.StatusOK, page(w, c.r, out))
}

func (s *Server) getDeployment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.findDeployment(c)
	if d == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, s.deploymentJSON(c, d))
}

func (s *Server) deleteDeployment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.findDeployment(c)
	if d == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	others := 0
	for _, o := range s.deployments {
		if o.Repo == d.Repo && o.Environment == d.Environment && o.ID != d.ID {
			others++
		}
	}
	active := len(d.Statuses) == 0 || d.Statuses[len(d.Statuses)-1].State != "inactive"
	if active && others > 0 {
		ghError(w, http.StatusUnprocessableEntity, "We cannot delete an active deployment unless it is the only deployment in a given environment.")
		return
	}
	s.deployments = slices.DeleteFunc(s.deployments, func(o *Deployment) bool { return o == d })
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) statusJSON(c *call, d *Deployment, st DeploymentStatus) map[string]any {
	url := s.apiURL(c, fmt.Sprintf("/repos/%s/deployments/%d/statuses/%d", d.Repo, d.ID, st.ID))
	now := s.now().UTC().Format(time.RFC3339)
	return shaped("repos/create-deployment-status", "201", false, map[string]any{
		"id": st.ID, "node_id": fmt.Sprintf("DES_%d", st.ID), "url": url, "state": st.State,
		"creator": user(""), "description": st.Description, "environment": st.Environment,
		"target_url": st.LogURL, "log_url": st.LogURL, "environment_url": st.EnvironmentURL,
		"created_at": now, "updated_at": now,
		"deployment_url": s.apiURL(c, fmt.Sprintf("/repos/%s/deployments/%d", d.Repo, d.ID)),
		"repository_url": s.apiURL(c, "/repos/"+d.Repo),
	})
}

func (s *Server) createDeploymentStatus(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.findDeployment(c)
	if d == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	st := DeploymentStatus{ID: s.id(), State: c.str("state"), EnvironmentURL: c.str("environment_url"),
		LogURL: c.str("log_url"), Description: c.str("description"), Environment: c.str("environment")}
	if st.LogURL == "" {
		st.LogURL = c.str("target_url")
	}
	if st.Environment == "" {
		st.Environment = d.Environment
	}
	d.Statuses = append(d.Statuses, st)
	// auto_inactive (default true): a success makes the environment's
	// earlier non-transient deployments inactive.
	if st.State == "success" && c.boolOr("auto_inactive", true) {
		for _, o := range s.deployments {
			if o != d && o.Repo == d.Repo && o.Environment == d.Environment && len(o.Statuses) > 0 &&
				o.Statuses[len(o.Statuses)-1].State == "success" {
				o.Statuses = append(o.Statuses, DeploymentStatus{ID: s.id(), State: "inactive", Environment: o.Environment})
			}
		}
	}
	writeJSON(w, http.StatusCreated, s.statusJSON(c, d, st))
}

func (s *Server) listDeploymentStatuses(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.findDeployment(c)
	if d == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	var out []map[string]any
	for i := len(d.Statuses) - 1; i >= 0; i-- {
		out = append(out, s.statusJSON(c, d, d.Statuses[i]))
	}
	writeJSON(w, http.StatusOK, page(w, c.r, out))
}

func (s *Server) commentJSON(c *call, cm *Comment) map[string]any {
	counts := map[string]any{"total_count": len(cm.Reactions),
		"url": s.apiURL(c, fmt.Sprintf("/repos/%s/issues/comments/%d/reactions", cm.Repo, cm.ID))}
	for _, k := range []string{"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"} {
		n := 0
		for _, r := range cm.Reactions {
			if r.Content == k {
				n++
			}
		}
		counts[k] = n
	}
	now := s.now().UTC().Format(time.RFC3339)
	return shaped("issues/get-comment", "200", false, map[string]any{
		"id": cm.ID, "node_id": fmt.Sprintf("IC_%d", cm.ID), "body": cm.Body, "user": user(cm.User),
		"url":        s.apiURL(c, fmt.Sprintf("/repos/%s/issues/comments/%d", cm.Repo, cm.ID)),
		"html_url":   fmt.Sprintf("https://github.com/%s/pull/%d#issuecomment-%d", cm.Repo, cm.Issue, cm.ID),
		"issue_url":  s.apiURL(c, fmt.Sprintf("/repos/%s/issues/%d", cm.Repo, cm.Issue)),
		"created_at": now, "updated_at": now, "author_association": "NONE", "reactions": counts,
	})
}

func (s *Server) findComment(c *call) *Comment {
	id := c.int("comment_id")
	for _, cm := range s.comments {
		if cm.ID == id && cm.Repo == c.repo() {
			return cm
		}
	}
	return nil
}

func (s *Server) listComments(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int(c.int("issue_number"))
	var out []map[string]any
	for _, cm := range s.comments {
		if cm.Repo == c.repo() && cm.Issue == n {
			out = append(out, s.commentJSON(c, cm))
		}
	}
	writeJSON(w, http.StatusOK, page(w, c.r, out))
}

func (s *Server) createComment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body := c.str("body")
	if len([]rune(body)) > 65536 {
		ghError(w, http.StatusUnprocessableEntity, "Validation Failed",
			map[string]any{"resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"})
		return
	}
	cm := &Comment{ID: s.id(), Repo: c.repo(), Issue: int(c.int("issue_number")), User: "elafros-bot", Body: body}
	s.comments = append(s.comments, cm)
	writeJSON(w, http.StatusCreated, s.commentJSON(c, cm))
}

func (s *Server) getComment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm := s.findComment(c)
	if cm == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, s.commentJSON(c, cm))
}

func (s *Server) updateComment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm := s.findComment(c)
	if cm == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	cm.Body = c.str("body")
	writeJSON(w, http.StatusOK, s.commentJSON(c, cm))
}

func (s *Server) deleteComment(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm := s.findComment(c)
	if cm == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.comments = slices.DeleteFunc(s.comments, func(o *Comment) bool { return o == cm })
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) reactionJSON(r Reaction) map[string]any {
	return shaped("reactions/create-for-issue-comment", "201", false, map[string]any{"id": r.ID,
		"node_id": fmt.Sprintf("REA_%d", r.ID), "user": user(r.User),
		"content": r.Content, "created_at": s.now().UTC().Format(time.RFC3339)})
}

func (s *Server) listReactions(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm := s.findComment(c)
	if cm == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	content := c.r.URL.Query().Get("content")
	var out []map[string]any
	for _, r := range cm.Reactions {
		if content == "" || r.Content == content {
			out = append(out, s.reactionJSON(r))
		}
	}
	writeJSON(w, http.StatusOK, page(w, c.r, out))
}

func (s *Server) createReaction(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm := s.findComment(c)
	if cm == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	content := c.str("content")
	// The same user's same reaction is answered 200 with the one that
	// exists: reactions are idempotent on GitHub.
	for _, r := range cm.Reactions {
		if r.Content == content && r.User == "elafros-bot" {
			writeJSON(w, http.StatusOK, s.reactionJSON(r))
			return
		}
	}
	r := Reaction{ID: s.id(), User: "elafros-bot", Content: content}
	cm.Reactions = append(cm.Reactions, r)
	writeJSON(w, http.StatusCreated, s.reactionJSON(r))
}

// legacyPermission is the collaborator API's "permission" for a role.
var legacyPermission = map[string]string{
	"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none",
}

func (s *Server) permission(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	login := c.params["username"]
	role, ok := s.permissions[c.repo()][login]
	if !ok {
		role = "none"
	}
	u := user(login)
	u["permissions"] = map[string]any{"admin": role == "admin", "maintain": role == "admin" || role == "maintain",
		"push": legacyPermission[role] == "write" || role == "admin", "triage": role != "read" && role != "none",
		"pull": role != "none"}
	u["role_name"] = role
	writeJSON(w, http.StatusOK, shaped("repos/get-collaborator-permission-level", "200", false,
		map[string]any{"permission": legacyPermission[role], "role_name": role, "user": u}))
}

func (s *Server) teamMembership(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, ok := s.teams[c.params["org"]+"/"+c.params["team_slug"]][c.params["username"]]
	if !ok {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, shaped("teams/get-membership-for-user-in-org", "200", false,
		map[string]any{"role": "member", "state": state, "url": s.apiURL(c, c.r.URL.Path)}))
}

func (s *Server) getPull(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.pulls[c.repo()][int(c.int("pull_number"))]
	if pr == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	body := s.pullJSON(c, pr)
	body["merged"] = pr.Merged
	writeJSON(w, http.StatusOK, shaped("pulls/get", "200", false, body))
}

// listPulls answers GET /repos/{owner}/{repo}/pulls: state open (the
// default), closed or all, newest first (the fake's numbers stand for
// the update order), paged.
func (s *Server) listPulls(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := c.r.URL.Query().Get("state")
	if state == "" {
		state = "open"
	}
	var numbers []int
	for n, pr := range s.pulls[c.repo()] {
		if state == "all" || pr.State == state {
			numbers = append(numbers, n)
		}
	}
	slices.Sort(numbers)
	slices.Reverse(numbers)
	items := []map[string]any{}
	for _, n := range numbers {
		items = append(items, shaped("pulls/list", "200", true, s.pullJSON(c, s.pulls[c.repo()][n])))
	}
	writeJSON(w, http.StatusOK, page(w, c.r, items))
}

// pullJSON is what GitHub says of a pull request in both the list and
// the single view.
func (s *Server) pullJSON(c *call, pr *PullRequest) map[string]any {
	repo := c.repo()
	repoJSON := func(full string) map[string]any {
		owner, name, _ := strings.Cut(full, "/")
		return map[string]any{"full_name": full, "name": name, "owner": user(owner), "fork": full != repo,
			"private": false, "html_url": "https://github.com/" + full}
	}
	var mergeSHA any
	if pr.MergeCommitSHA != "" {
		mergeSHA = pr.MergeCommitSHA
	}
	return map[string]any{
		// The fake keeps no reviewers, teams or labels (GitHub's own
		// example's requested team also lacks a required field).
		"requested_teams": []any{}, "requested_reviewers": []any{}, "labels": []any{},
		"id": int64(pr.Number) * 7919, "number": pr.Number, "state": pr.State,
		"merge_commit_sha": mergeSHA, "user": user(pr.User), "title": fmt.Sprintf("PR %d", pr.Number),
		"html_url": fmt.Sprintf("https://github.com/%s/pull/%d", repo, pr.Number),
		"url":      s.apiURL(c, fmt.Sprintf("/repos/%s/pulls/%d", repo, pr.Number)),
		"head":     map[string]any{"sha": pr.HeadSHA, "ref": pr.HeadRef, "label": pr.HeadRef, "repo": repoJSON(pr.HeadRepo), "user": user(pr.User)},
		"base":     map[string]any{"sha": shaOf(pr.BaseRef), "ref": pr.BaseRef, "label": pr.BaseRef, "repo": repoJSON(repo)},
	}
}

func (s *Server) listCheckRuns(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := c.params["ref"]
	runs := []map[string]any{}
	for i, cr := range s.checkRuns[c.repo()][ref] {
		var conclusion any
		if cr.Conclusion != "" {
			conclusion = cr.Conclusion
		}
		runs = append(runs, shaped("checks/get", "200", false, map[string]any{"id": i + 1, "name": cr.Name,
			"status": cr.Status, "conclusion": conclusion, "head_sha": ref}))
	}
	all := runs
	runs = page(w, c.r, runs)
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "check_runs": runs})
}

func (s *Server) combinedStatus(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := c.params["ref"]
	list := s.statuses[c.repo()][ref]
	ex := example("repos/get-combined-status-for-ref", "200", false)
	sts := []map[string]any{}
	for i, st := range list {
		item := map[string]any{}
		if l, ok := ex["statuses"].([]any); ok && len(l) > 0 {
			item = example("repos/get-combined-status-for-ref", "200", false)["statuses"].([]any)[0].(map[string]any)
		}
		sts = append(sts, merge(item, map[string]any{"id": i + 1, "context": st.Context, "state": st.State}))
	}
	writeJSON(w, http.StatusOK, merge(ex, map[string]any{"state": combined(list), "sha": ref,
		"total_count": len(list), "statuses": sts}))
}

func (s *Server) installationToken(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := fmt.Sprintf("ghs_githubtest%026d", s.id())
	exp := s.now().Add(time.Hour).UTC()
	s.tokens[tok] = exp
	writeJSON(w, http.StatusCreated, shaped("apps/create-installation-access-token", "201", false,
		map[string]any{"token": tok, "expires_at": exp.Format(time.RFC3339), "repository_selection": "all"}))
}

func (s *Server) getApp(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, shaped("apps/get-authenticated", "200", false, map[string]any{"id": s.appID,
		"slug": "elafros", "name": "elafros", "owner": user("elafros"), "events": []string{"issue_comment", "pull_request"}}))
}

func deliveryStatus(code int) string {
	switch {
	case code == 0:
		return "failed to connect to host"
	case code < 300:
		return "OK"
	default:
		return fmt.Sprintf("Invalid HTTP Response: %d", code)
	}
}

func (s *Server) deliveryJSON(d *Delivery) map[string]any {
	var inst any
	if d.InstallationID != 0 {
		inst = d.InstallationID
	}
	return shaped("apps/list-webhook-deliveries", "200", true, map[string]any{"id": d.ID, "guid": d.GUID, "delivered_at": d.DeliveredAt.Format(time.RFC3339),
		"redelivery": d.Redelivery, "duration": 0.05, "status": deliveryStatus(d.StatusCode),
		"status_code": d.StatusCode, "event": d.Event, "action": d.Action,
		"installation_id": inst, "repository_id": nil})
}

// listDeliveries pages newest first with GitHub's cursor pagination.
func (s *Server) listDeliveries(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := c.r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	start := 0
	if cur := q.Get("cursor"); cur != "" {
		start, _ = strconv.Atoi(cur)
	}
	var all []*Delivery
	for i := len(s.deliveries) - 1; i >= 0; i-- {
		d := s.deliveries[i]
		failed := d.StatusCode == 0 || d.StatusCode >= 400
		if (q.Get("status") == "failure" && !failed) || (q.Get("status") == "success" && failed) {
			continue
		}
		all = append(all, d)
	}
	out := []map[string]any{}
	for i := start; i < len(all) && i < start+per; i++ {
		out = append(out, s.deliveryJSON(all[i]))
	}
	if start+per < len(all) {
		u := *c.r.URL
		u.Scheme, u.Host = "http", c.r.Host
		qq := u.Query()
		qq.Set("cursor", strconv.Itoa(start+per))
		u.RawQuery = qq.Encode()
		w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", u.String()))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) findDelivery(c *call) *Delivery {
	id := c.int("delivery_id")
	for _, d := range s.deliveries {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *Server) getDelivery(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.findDelivery(c)
	if d == nil {
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	out := merge(example("apps/get-webhook-delivery", "200", false), s.deliveryJSON(d))
	var payload any = map[string]any{}
	if len(d.Payload) > 0 {
		payload = d.Payload
	}
	out["url"] = ""
	out["request"] = map[string]any{"headers": map[string]any{"X-GitHub-Event": d.Event, "X-GitHub-Delivery": d.GUID}, "payload": payload}
	out["response"] = map[string]any{"headers": map[string]any{}, "payload": ""}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) redeliver(w http.ResponseWriter, c *call) {
	s.mu.Lock()
	d := s.findDelivery(c)
	if d == nil {
		s.mu.Unlock()
		ghError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.redeliveries = append(s.redeliveries, d.ID)
	f, orig := s.onRedeliver, *d
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]any{})
	if f == nil {
		return
	}
	// GitHub redelivers after it has answered; the test's cleanup waits
	// for the redelivery to finish.
	s.async.Add(1)
	go func() {
		defer s.async.Done()
		code := f(orig)
		s.mu.Lock()
		defer s.mu.Unlock()
		nd := orig
		nd.ID, nd.Redelivery, nd.StatusCode, nd.DeliveredAt = s.id(), true, code, s.now().UTC()
		s.deliveries = append(s.deliveries, &nd)
	}()
}
