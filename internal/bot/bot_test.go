package bot_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/bot"
	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github"
	"github.com/elafros/elafros/internal/github/githubtest"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/store"
	"github.com/elafros/elafros/internal/testutil"
)

const (
	repoName = "Codertocat/Hello-World" // the recorded payloads' repository
	ns       = "default"
	head7    = "7777777777777777777777777777777777777777"
	head8    = "8888888888888888888888888888888888888888"
	head9    = "9999999999999999999999999999999999999999"
	merged10 = "1010101010101010101010101010101010101010"
)

var secret = []byte("webhook-secret")

// env is the whole thing: elafros serve (store, reconciler, processes,
// router), a fake GitHub checking every request against GitHub's
// description, and the bot serving its webhook on loopback.
type env struct {
	t       testing.TB
	srv     *serve.Server
	c       *deploy.Client
	st      store.Store
	gh      *githubtest.Server
	bot     *bot.Bot
	botURL  string
	journal *bot.BoltJournal
	// journalPath is the running bot's journal file.
	journalPath string
	cancel      context.CancelFunc
	done        chan struct{}
	image       string
	rev1        string // the first deploy
	rev2        string // built from PR 10's merge commit: the service's latest
	pr          map[int]string
	seq         atomic.Int64
	cur         atomic.Pointer[bot.Bot] // for observers made before the bot
}

func start(t testing.TB) *env {
	t.Helper()
	srv, err := serve.Start(context.Background(), serve.Options{
		DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	st, err := client.ForServer(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, c: deploy.New(st, ns, deploy.WithPollInterval(20*time.Millisecond)), st: st,
		gh: githubtest.NewServer(t), pr: map[int]string{}}
	e.image = processtest.BuildImage(t, srv.RegistryAddr, "bot/server", processtest.ServerDir())
	e.fixture()
	e.startBot(filepath.Join(t.TempDir(), "journal.db"), nil)
	return e
}

// fixture: service hello (manual strategy) with revision 1, and revision 2
// built from PR 10's merge commit (its latest); previews of PRs 7, 8
// (Ready) and 9 (its image is missing: never Ready) as pr-N targets. The
// base traffic serves the latest as current, so the reconciler has nothing
// new to stage while the tests move next.
func (e *env) fixture() {
	t, ctx := e.t, e.t.Context()
	svc := &v1alpha1.Service{ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns,
		Labels:      map[string]string{v1alpha1.RepositoryLabelKey: v1alpha1.RepositoryLabelValue(repoName)},
		Annotations: map[string]string{v1alpha1.RepositoryAnnotationKey: repoName}}}
	svc.Spec.RevisionTemplate.Spec.Container.Image = e.image
	svc.Spec.RevisionTemplate.Spec.Container.Env = []corev1.EnvVar{{Name: "MESSAGE", Value: "one"}}
	svc.Spec.Rollout.Strategy = v1alpha1.StrategyManual
	svc.Spec.Rollout.Approvers = []string{"approver", "Codertocat/release"}
	svc.SetDefaults()
	if _, err := e.st.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	e.rev1 = "hello-00001"
	e.waitReady(e.rev1)
	w, err := e.c.Deploy(ctx, deploy.Options{Service: "hello", Image: e.image, Env: []corev1.EnvVar{{Name: "MESSAGE", Value: "two"}}, GitCommit: merged10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Wait(ctx, "hello", w.Generation, nil); err != nil {
		t.Fatal(err)
	}
	e.rev2 = "hello-00002"
	for n, sha := range map[int]string{7: head7, 8: head8, 9: head9} {
		image := e.image
		if n == 9 {
			image = e.srv.RegistryAddr + "/bot/missing@sha256:" + strings.Repeat("0", 64)
		}
		cfg := &v1alpha1.Configuration{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hello-pr-%d", n), Namespace: ns}}
		cfg.Spec.RevisionTemplate.Spec.Container.Image = image
		cfg.Spec.RevisionTemplate.Annotations = map[string]string{v1alpha1.GitCommitAnnotationKey: sha}
		cfg.SetDefaults()
		if _, err := e.st.Create(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		e.pr[n] = fmt.Sprintf("hello-pr-%d-00001", n)
		if n != 9 {
			e.waitReady(e.pr[n])
		}
	}
	e.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 7, HeadSHA: head7, HeadRef: "seven", BaseRef: "main"})
	e.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 8, HeadSHA: head8, HeadRef: "eight", BaseRef: "main"})
	e.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 9, HeadSHA: head9, HeadRef: "nine", BaseRef: "main"})
	e.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 10, HeadSHA: "a0", State: "closed", Merged: true, MergeCommitSHA: merged10, BaseRef: "main"})
	e.gh.SetPermission(repoName, "writer", "write")
	e.reset()
}

func (e *env) waitReady(rev string) {
	e.t.Helper()
	e.waitFor("revision "+rev+" Ready", 90*time.Second, func() bool {
		o, err := e.st.Get(e.t.Context(), store.KindRevision, ns, rev)
		return err == nil && o.(*v1alpha1.Revision).Status.Conditions.IsTrue(v1alpha1.ConditionReady)
	})
}

func (e *env) waitFor(what string, d time.Duration, ok func() bool) {
	e.t.Helper()
	testutil.EventuallyEvery(e.t, d, 10*time.Millisecond, what, func() (bool, string) { return ok(), "still not" })
}

func tt(name, rev string, pct int) v1alpha1.TrafficTarget {
	return v1alpha1.TrafficTarget{Name: name, RevisionName: rev, Percent: pct}
}

// reset puts the route back to the fixture's traffic.
func (e *env) reset() {
	e.setTraffic([]v1alpha1.TrafficTarget{tt("current", e.rev2, 100), tt("next", e.rev2, 0),
		tt("pr-7", e.pr[7], 0), tt("pr-8", e.pr[8], 0), tt("pr-9", e.pr[9], 0)})
}

func (e *env) setTraffic(traffic []v1alpha1.TrafficTarget) {
	e.t.Helper()
	ctx := e.t.Context()
	for attempt := 0; ; attempt++ {
		o, err := e.st.Get(ctx, store.KindRoute, ns, "hello")
		if err != nil {
			e.t.Fatal(err)
		}
		rt := o.(*v1alpha1.Route).DeepCopy()
		rt.Spec.Rollout.Traffic = traffic
		_, err = e.st.Update(ctx, rt)
		if apierrors.IsConflict(err) && attempt < 20 {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		return
	}
}

// requireChecks sets the service's requireChecks policy (nil: none).
func (e *env) requireChecks(r *v1alpha1.RequiredChecks) {
	e.t.Helper()
	ctx := e.t.Context()
	for attempt := 0; ; attempt++ {
		o, err := e.st.Get(ctx, store.KindService, ns, "hello")
		if err != nil {
			e.t.Fatal(err)
		}
		svc := o.(*v1alpha1.Service).DeepCopy()
		svc.Spec.Rollout.RequireChecks = r
		_, err = e.st.Update(ctx, svc)
		if apierrors.IsConflict(err) && attempt < 20 {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		return
	}
}

func (e *env) traffic() []v1alpha1.TrafficTarget {
	e.t.Helper()
	o, err := e.st.Get(e.t.Context(), store.KindRoute, ns, "hello")
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.Route).Spec.Rollout.Traffic
}

// startBot runs a bot on the journal at path; app, when set, makes it a
// GitHub App: installation tokens, and recovery of failed deliveries.
func (e *env) startBot(path string, app *github.App) {
	t := e.t
	j, err := bot.OpenBoltJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := github.NewVerifier(0, secret)
	if err != nil {
		t.Fatal(err)
	}
	var b *bot.Bot
	gh, err := github.New(e.gh.Token, github.WithAPIURL(e.gh.URL),
		github.WithRetry(github.RetryPolicy{Backoff: 5 * time.Millisecond}),
		github.WithObserver(func(m string, s int, err error) { b.ObserveGitHub(m, s, err) }))
	if err != nil {
		t.Fatal(err)
	}
	o := bot.Options{Verifier: v, GitHub: func(int64) bot.GitHub { return gh }, Deploy: e.c, Journal: j, RecoverEvery: time.Hour}
	if app != nil {
		o.GitHub = func(id int64) bot.GitHub { return app.Installation(id) }
		o.Deliveries = app
	}
	b, err = bot.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.cur.Store(b)
	hs := httptest.NewServer(b.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e.bot, e.botURL, e.journal, e.cancel, e.done, e.journalPath = b, hs.URL, j, cancel, done, path
	go func() { defer close(done); _ = b.Run(ctx, 4) }()
	t.Cleanup(func() { e.stopBot(); hs.Close() })
}

func (e *env) stopBot() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	_ = e.journal.Close()
	e.cancel = nil
}

// commentPayload edits the recorded issue_comment delivery into a command
// on pull request pr by login, seeding the comment in the fake GitHub
// (reactions need it). It returns the payload and the comment id.
func (e *env) commentPayload(action string, pr int, login, body string, created time.Time) ([]byte, int64) {
	e.t.Helper()
	var p map[string]any
	if err := json.Unmarshal(githubtest.Payload(e.t, "issue_comment.created.with-installation.json"), &p); err != nil {
		e.t.Fatal(err)
	}
	id := e.gh.AddComment(repoName, pr, login, body)
	p["action"] = action
	issue := p["issue"].(map[string]any)
	issue["number"] = pr
	issue["pull_request"] = map[string]any{"url": fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", repoName, pr)}
	c := p["comment"].(map[string]any)
	c["id"], c["body"], c["created_at"] = id, body, created.UTC().Format(time.RFC3339)
	c["user"].(map[string]any)["login"] = login
	b, err := json.Marshal(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return b, id
}

// post signs body as GitHub does and posts it; it returns the status.
func (e *env) post(event, delivery string, key, body []byte) int {
	e.t.Helper()
	req, err := githubtest.NewWebhookRequest(e.botURL+"/webhook", event, delivery, key, body)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (e *env) delivery() string {
	return fmt.Sprintf("delivery-%d-%d", time.Now().UnixNano(), e.seq.Add(1))
}

// command posts a /rollout comment and waits for the bot's final reaction;
// it returns that reaction and the bot's reply.
func (e *env) command(pr int, login, body string) (string, string) {
	e.t.Helper()
	p, id := e.commentPayload("created", pr, login, body, time.Now())
	if code := e.post("issue_comment", e.delivery(), secret, p); code != http.StatusAccepted {
		e.t.Fatalf("delivery answered %d, want 202", code)
	}
	return e.answer(pr, id)
}

func (e *env) answer(pr int, id int64) (string, string) {
	e.t.Helper()
	var final string
	// A guard against a hang, not a measure: 110 commands at once under
	// -race on a loaded machine took over 30 s to be answered.
	e.waitFor(fmt.Sprintf("the bot's answer to comment %d", id), 120*time.Second, func() bool {
		c, _ := e.gh.Comment(id)
		for _, r := range c.Reactions {
			if r.Content == "rocket" || r.Content == "confused" {
				final = r.Content
				return true
			}
		}
		return false
	})
	cs := e.gh.Comments(repoName, pr)
	return final, cs[len(cs)-1].Body
}

func TestBot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts elafros serve and builds an image")
	}
	e := start(t)
	base := func() []v1alpha1.TrafficTarget {
		return []v1alpha1.TrafficTarget{tt("current", e.rev2, 100), tt("next", e.rev2, 0),
			tt("pr-7", e.pr[7], 0), tt("pr-8", e.pr[8], 0), tt("pr-9", e.pr[9], 0)}
	}
	with := func(changes ...v1alpha1.TrafficTarget) []v1alpha1.TrafficTarget {
		out := base()
		for _, c := range changes {
			for i := range out {
				if out[i].Name == c.Name {
					out[i] = c
				}
			}
		}
		return out
	}

	t.Run("signatures", func(t *testing.T) {
		p, id := e.commentPayload("created", 7, "writer", "/rollout 50", time.Now())
		for name, key := range map[string][]byte{"missing": nil, "wrong secret": []byte("guess")} {
			if code := e.post("issue_comment", e.delivery(), key, p); code != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, code)
			}
		}
		// A 401 is answered before anything is recorded or queued, so
		// there is nothing to wait for.
		if c, _ := e.gh.Comment(id); len(c.Reactions) != 0 {
			t.Errorf("reactions %v on a refused delivery", c.Reactions)
		}
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Errorf("traffic moved (-want +got):\n%s", diff)
		}
	})

	t.Run("ignored: quoted, code, edited, no command, bot", func(t *testing.T) {
		for _, tc := range []struct{ action, login, body string }{
			{"created", "writer", "> /rollout 50\n\nI agree with this"},
			{"created", "writer", "```\n/rollout 50\n```"},
			{"created", "writer", "    /rollout 50"},
			{"edited", "writer", "/rollout 50"},
			{"deleted", "writer", "/rollout 50"},
			{"created", "writer", "nice work"},
			{"created", "elafros[bot]", "/rollout 50"},
		} {
			p, id := e.commentPayload(tc.action, 7, tc.login, tc.body, time.Now())
			if code := e.post("issue_comment", e.delivery(), secret, p); code != http.StatusOK {
				t.Errorf("%s %q: %d, want 200", tc.action, tc.body, code)
			}
			if c, _ := e.gh.Comment(id); len(c.Reactions) != 0 {
				t.Errorf("%q got reactions", tc.body)
			}
		}
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Errorf("traffic moved (-want +got):\n%s", diff)
		}
		if code := e.post("ping", e.delivery(), secret, githubtest.Payload(t, "ping.json")); code != http.StatusOK {
			t.Errorf("ping: %d", code)
		}
	})

	t.Run("pause and resume scheduled promotion", func(t *testing.T) {
		before := e.traffic()
		e.gh.SetPermission(repoName, "u-pauser", "write")
		paused := func() (string, bool) {
			o, err := e.st.Get(t.Context(), store.KindService, ns, "hello")
			if err != nil {
				t.Fatal(err)
			}
			v, ok := o.GetAnnotations()[v1alpha1.RolloutPausedAnnotationKey]
			return v, ok
		}
		if got, reply := e.command(7, "u-pauser", "/rollout pause"); got != "rocket" || !strings.Contains(reply, "paused") {
			t.Fatalf("pause: %s %q", got, reply)
		}
		if by, ok := paused(); !ok || by != "u-pauser" {
			t.Errorf("after pause: annotation %q %v, want paused by u-pauser", by, ok)
		}
		if got, reply := e.command(7, "u-pauser", "/rollout resume"); got != "rocket" || !strings.Contains(reply, "resumed") {
			t.Fatalf("resume: %s %q", got, reply)
		}
		if _, ok := paused(); ok {
			t.Errorf("after resume the service is still paused")
		}
		if diff := cmp.Diff(before, e.traffic()); diff != "" {
			t.Errorf("pause/resume moved traffic (-before +after):\n%s", diff)
		}
	})

	t.Run("who may", func(t *testing.T) {
		for role, ok := range map[string]bool{"admin": true, "maintain": true, "write": true, "triage": false, "read": false} {
			e.gh.SetPermission(repoName, "u-"+role, role)
			got, reply := e.command(7, "u-"+role, "/rollout status")
			if (got == "rocket") != ok {
				t.Errorf("%s: %s %q", role, got, reply)
			}
			if !ok && !strings.Contains(reply, "write access") {
				t.Errorf("%s: refusal %q does not say what it takes", role, reply)
			}
		}
		e.gh.SetPermission(repoName, "approver", "read")
		e.gh.SetTeamMember("Codertocat/release", "teammate", "active")
		e.gh.SetTeamMember("Codertocat/release", "invited", "pending")
		for login, ok := range map[string]bool{"approver": true, "teammate": true, "invited": false, "stranger": false} {
			if got, reply := e.command(7, login, "/rollout status"); (got == "rocket") != ok {
				t.Errorf("%s: %s %q", login, got, reply)
			}
		}
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Errorf("traffic moved (-want +got):\n%s", diff)
		}
	})

	t.Run("50, another PR refused, finish", func(t *testing.T) {
		e.reset()
		// The Action's preview deployment of PR 7.
		ghc, err := github.New(e.gh.Token, github.WithAPIURL(e.gh.URL))
		if err != nil {
			t.Fatal(err)
		}
		depID, err := ghc.CreateDeployment(t.Context(), github.Repo{Owner: "Codertocat", Name: "Hello-World"},
			github.DeploymentRequest{Ref: head7, Environment: "pr-7", Transient: true})
		if err != nil {
			t.Fatal(err)
		}
		got, reply := e.command(7, "writer", "/rollout 50")
		if got != "rocket" {
			t.Fatalf("%s: %s", got, reply)
		}
		want := with(tt("current", e.rev2, 50), tt("next", e.pr[7], 50))
		if diff := cmp.Diff(want, e.traffic()); diff != "" {
			t.Errorf("after /rollout 50 (-want +got):\n%s", diff)
		}
		for _, s := range []string{"| `" + e.pr[7] + "` | next, pr-7 | 0% | 50% |", "```mermaid", "/rollout finish"} {
			if !strings.Contains(reply, s) {
				t.Errorf("reply lacks %q:\n%s", s, reply)
			}
		}
		var states []string
		for _, d := range e.gh.Deployments(repoName) {
			if d.ID == depID {
				for _, st := range d.Statuses {
					states = append(states, st.State+" "+st.EnvironmentURL+" "+st.Description)
				}
			}
		}
		wantStates := []string{"in_progress http://pr-7.hello.default.localhost hello: 50% of the traffic after `/rollout 50` by @writer"}
		if diff := cmp.Diff(wantStates, states); diff != "" {
			t.Errorf("deployment statuses (-want +got):\n%s", diff)
		}
		got, reply = e.command(8, "writer", "/rollout 30")
		if got != "confused" || !strings.Contains(reply, "pull request #7 holds the canary") {
			t.Errorf("another PR: %s %q", got, reply)
		}
		got, reply = e.command(7, "writer", "/rollout finish")
		if got != "rocket" {
			t.Fatalf("finish: %s %q", got, reply)
		}
		// The service's reconciler stages its latest revision as next
		// again right after (manual strategy), so only current is asserted.
		if got := e.traffic()[0]; got != tt("current", e.pr[7], 100) {
			t.Errorf("after finish, current is %+v", got)
		}
	})

	t.Run("abort", func(t *testing.T) {
		e.reset()
		if got, reply := e.command(7, "writer", "/rollout next percent 25"); got != "rocket" {
			t.Fatalf("%s %q", got, reply)
		}
		if got, reply := e.command(8, "writer", "/rollout abort"); got != "confused" || !strings.Contains(reply, "not the canary") {
			t.Errorf("abort of another PR's canary: %s %q", got, reply)
		}
		if got, reply := e.command(7, "writer", "/rollout abort"); got != "rocket" {
			t.Fatalf("%s %q", got, reply)
		}
		if diff := cmp.Diff(with(tt("next", e.pr[7], 0)), e.traffic()); diff != "" {
			t.Errorf("after abort (-want +got):\n%s", diff)
		}
	})

	t.Run("not Ready, malformed, unknown service", func(t *testing.T) {
		e.reset()
		if got, reply := e.command(9, "writer", "/rollout 10"); got != "confused" || !strings.Contains(reply, "cannot take traffic") {
			t.Errorf("non-Ready: %s %q", got, reply)
		}
		if got, reply := e.command(7, "writer", "/rollout 150"); got != "confused" || !strings.Contains(reply, "between 0 and 100") || !strings.Contains(reply, "Usage") {
			t.Errorf("malformed: %s %q", got, reply)
		}
		if got, reply := e.command(7, "writer", "/rollout api 10"); got != "confused" || !strings.Contains(reply, `no service "api"`) {
			t.Errorf("unknown service: %s %q", got, reply)
		}
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Errorf("traffic moved (-want +got):\n%s", diff)
		}
	})

	t.Run("a commit pushed after the comment", func(t *testing.T) {
		e.reset()
		// The PR's head moved on; its preview is still the old commit.
		e.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 7, HeadSHA: strings.Repeat("b", 40), BaseRef: "main"})
		got, reply := e.command(7, "writer", "/rollout 50")
		e.gh.SetPullRequest(repoName, githubtest.PullRequest{Number: 7, HeadSHA: head7, BaseRef: "main"})
		if got != "confused" || !strings.Contains(reply, "a commit was pushed") {
			t.Errorf("head moved: %s %q", got, reply)
		}
		// The preview was redeployed after the comment was written.
		p, id := e.commentPayload("created", 7, "writer", "/rollout 50", time.Now().Add(-time.Hour))
		if code := e.post("issue_comment", e.delivery(), secret, p); code != http.StatusAccepted {
			t.Fatalf("%d", code)
		}
		if got, reply := e.answer(7, id); got != "confused" || !strings.Contains(reply, "after your comment") {
			t.Errorf("redeployed after the comment: %s %q", got, reply)
		}
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Errorf("traffic moved (-want +got):\n%s", diff)
		}
	})

	t.Run("requireChecks", func(t *testing.T) {
		e.reset()
		defer e.requireChecks(nil)
		for _, step := range []struct {
			name    string
			require *v1alpha1.RequiredChecks
			set     func()
			pr      int
			cmd     string
			want    string // the final reaction
			says    []string
		}{
			{name: "true, nothing reported", require: &v1alpha1.RequiredChecks{All: true}, pr: 7, cmd: "/rollout 30",
				want: "confused", says: []string{"none has reported", "7777777"}},
			{name: "true, a check still running", pr: 7, cmd: "/rollout 30",
				set:  func() { e.gh.SetCheckRun(repoName, head7, githubtest.CheckRun{Name: "test", Status: "in_progress"}) },
				want: "confused", says: []string{"still running: `test`"}},
			{name: "true, a status failing", pr: 7, cmd: "/rollout 30",
				set: func() {
					e.gh.SetCheckRun(repoName, head7, githubtest.CheckRun{Name: "test", Status: "completed", Conclusion: "success"})
					e.gh.SetCommitStatus(repoName, head7, githubtest.CommitStatus{Context: "ci/lint", State: "failure"})
				},
				want: "confused", says: []string{"failing: `ci/lint`"}},
			{name: "names, one missing", require: &v1alpha1.RequiredChecks{Names: []string{"test", "deploy"}}, pr: 7, cmd: "/rollout 30",
				want: "confused", says: []string{"missing (no result): `deploy`"}},
			{name: "names, all passed (a failing one not named)", pr: 7, cmd: "/rollout 30",
				set: func() {
					e.gh.SetCommitStatus(repoName, head7, githubtest.CommitStatus{Context: "deploy", State: "success"})
				},
				want: "rocket", says: []string{"| `" + e.pr[7] + "` | next, pr-7 | 0% | 30% |"}},
			{name: "merged PR: the merge commit's checks", require: &v1alpha1.RequiredChecks{Names: []string{"test"}}, pr: 10, cmd: "/rollout 25",
				want: "confused", says: []string{"commit 1010101", "missing (no result): `test`"}},
			{name: "abort takes no checks", require: &v1alpha1.RequiredChecks{All: true}, pr: 7, cmd: "/rollout abort",
				want: "rocket", says: []string{"| `" + e.pr[7] + "` | next, pr-7 | 30% | 0% |"}},
		} {
			if step.require != nil {
				e.requireChecks(step.require)
			}
			if step.set != nil {
				step.set()
			}
			before := e.traffic()
			got, reply := e.command(step.pr, "writer", step.cmd)
			if got != step.want {
				t.Errorf("%s: %s %q, want %s", step.name, got, reply, step.want)
			}
			for _, s := range step.says {
				if !strings.Contains(reply, s) {
					t.Errorf("%s: the reply lacks %q:\n%s", step.name, s, reply)
				}
			}
			if step.want == "confused" {
				if diff := cmp.Diff(before, e.traffic()); diff != "" {
					t.Errorf("%s: refused, yet traffic moved (-before +after):\n%s", step.name, diff)
				}
			}
		}
		if diff := cmp.Diff(with(tt("next", e.pr[7], 0)), e.traffic()); diff != "" {
			t.Errorf("after the move and the abort (-want +got):\n%s", diff)
		}
	})

	t.Run("merged PR moves its merge commit's revision", func(t *testing.T) {
		// The deploy on push made revision 2 from the merge commit, and
		// the manual strategy staged it as next at 0%.
		merged := with(tt("current", e.rev1, 100), tt("next", e.rev2, 0))
		e.setTraffic(merged)
		if got, reply := e.command(10, "writer", "/rollout 25%"); got != "rocket" {
			t.Fatalf("%s %q", got, reply)
		}
		if diff := cmp.Diff(with(tt("current", e.rev1, 75), tt("next", e.rev2, 25)), e.traffic()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("redelivery is applied once", func(t *testing.T) {
		e.reset()
		p, id := e.commentPayload("created", 7, "writer", "/rollout 40", time.Now())
		d := e.delivery()
		if code := e.post("issue_comment", d, secret, p); code != http.StatusAccepted {
			t.Fatalf("%d", code)
		}
		e.answer(7, id)
		e.setTraffic(base()) // someone moved it back since
		if code := e.post("issue_comment", d, secret, p); code != http.StatusOK {
			t.Errorf("redelivery answered %d, want 200", code)
		}
		// The 200 comes from the journal's refusal to record it again,
		// before anything is queued: there is nothing to wait for.
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Errorf("the redelivery moved traffic again (-want +got):\n%s", diff)
		}
		replies := 0
		for _, c := range e.gh.Comments(repoName, 7) {
			if strings.Contains(c.Body, "/rollout 40") && c.User == "elafros-bot" {
				replies++
			}
		}
		if replies != 1 {
			t.Errorf("%d replies to one command, want 1", replies)
		}
	})

	t.Run("GitHub answers 502 then 200", func(t *testing.T) {
		e.reset()
		e.gh.FailNext(2, http.StatusBadGateway)
		if got, reply := e.command(7, "writer", "/rollout 20"); got != "rocket" {
			t.Fatalf("%s %q", got, reply)
		}
		if diff := cmp.Diff(with(tt("current", e.rev2, 80), tt("next", e.pr[7], 20)), e.traffic()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("100 concurrent conflicting commands", func(t *testing.T) {
		e.reset()
		// Every version of the route written meanwhile, spec and status.
		wctx, stopWatch := context.WithCancel(t.Context())
		events, err := e.srv.Store.Watch(wctx)
		if err != nil {
			t.Fatal(err)
		}
		var versions []*v1alpha1.Route
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for ev := range events {
				if rt, ok := ev.Object.(*v1alpha1.Route); ok && rt.Name == "hello" {
					versions = append(versions, rt)
				}
			}
		}()
		replies := func() int {
			n := 0
			for _, pr := range []int{7, 9} {
				for _, c := range e.gh.Comments(repoName, pr) {
					if c.User == "elafros-bot" {
						n++
					}
				}
			}
			return n
		}
		repliesBefore := replies()
		// 100 commands on PR 7, each a different percent, and 10 on PR
		// 9, whose revision is never Ready: all at once.
		type sent struct {
			pr, pct int
			id      int64
		}
		cmds := map[string]sent{} // by delivery
		for i := range 100 {
			cmds[e.delivery()] = sent{pr: 7, pct: (i * 37) % 101}
		}
		for i := range 10 {
			cmds[e.delivery()] = sent{pr: 9, pct: 10 + i}
		}
		var wg sync.WaitGroup
		for d, c := range cmds {
			p, id := e.commentPayload("created", c.pr, "writer", fmt.Sprintf("/rollout %d", c.pct), time.Now())
			c.id = id
			cmds[d] = c
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code := e.post("issue_comment", d, secret, p); code != http.StatusAccepted {
					t.Errorf("delivery %s answered %d", d, code)
				}
			}()
		}
		wg.Wait()
		for _, c := range cmds {
			want := "rocket"
			if c.pr == 9 {
				want = "confused"
			}
			if got, reply := e.answer(c.pr, c.id); got != want {
				t.Errorf("/rollout %d on #%d: %s %q, want %s", c.pct, c.pr, got, reply, want)
			}
		}
		// Stopped, the bot has finished every command in its journal.
		e.stopBot()
		j, err := bot.OpenBoltJournal(e.journalPath)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := j.Entries()
		_ = j.Close()
		if err != nil {
			t.Fatal(err)
		}
		e.startBot(e.journalPath, nil)
		final := e.traffic()
		stopWatch()
		<-watched

		if got := replies() - repliesBefore; got != len(cmds) {
			t.Errorf("%d replies to %d commands", got, len(cmds))
		}
		// The last command applied, in the journal's order (the order
		// in which the bot accepted them), is what the route says.
		var last sent
		outcomes := map[string]int{}
		for _, en := range entries {
			c, ok := cmds[en.Delivery]
			if !ok {
				continue
			}
			outcomes[en.Outcome]++
			if en.Outcome == "moved" {
				last = c
			}
		}
		if diff := cmp.Diff(map[string]int{"moved": 100, "refused": 10}, outcomes); diff != "" {
			t.Errorf("outcomes in the journal (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(with(tt("current", e.rev2, 100-last.pct), tt("next", e.pr[7], last.pct)), final); diff != "" {
			t.Errorf("the route is not in the state of the last command applied, /rollout %d (-want +got):\n%s", last.pct, diff)
		}
		// No version written breaks the traffic invariants: total 100,
		// none negative, nothing to a revision that is not Ready.
		if len(versions) == 0 {
			t.Fatal("no route version watched")
		}
		ready := map[string]bool{}
		for _, rev := range []string{e.rev1, e.rev2, e.pr[7], e.pr[8], e.pr[9]} {
			o, err := e.st.Get(t.Context(), store.KindRevision, ns, rev)
			if err != nil {
				t.Fatal(err)
			}
			ready[rev] = o.(*v1alpha1.Revision).Status.Conditions.IsTrue(v1alpha1.ConditionReady)
		}
		if ready[e.pr[9]] || !ready[e.pr[7]] {
			t.Fatalf("fixture: readiness %v", ready)
		}
		for i, rt := range versions {
			for what, traffic := range map[string][]v1alpha1.TrafficTarget{"spec": rt.Spec.Rollout.Traffic, "status": rt.Status.Traffic} {
				if what == "status" && len(traffic) == 0 {
					continue // not reconciled yet
				}
				check := v1alpha1.RouteSpec{Rollout: v1alpha1.RouteRollout{Traffic: traffic}}
				if errs := check.Validate(nil); len(errs) > 0 {
					t.Errorf("route version %d (%s, resourceVersion %s) breaks the invariants: %v", i, what, rt.ResourceVersion, errs)
				}
				for _, x := range traffic {
					if x.Percent > 0 && !ready[x.RevisionName] {
						t.Errorf("route version %d (%s) sends %d%% to %s, which is not Ready", i, what, x.Percent, x.RevisionName)
					}
				}
			}
		}
		if diff := cmp.Diff(versions[len(versions)-1].Spec.Rollout.Traffic, final); diff != "" {
			t.Errorf("the route is not its last written version (-last +now):\n%s", diff)
		}
		t.Logf("%d commands, %d route versions written, the last applied /rollout %d", len(cmds), len(versions), last.pct)
	})

	t.Run("closed PR loses its preview target", func(t *testing.T) {
		e.reset()
		var p map[string]any
		_ = json.Unmarshal(githubtest.Payload(t, "pull_request.closed.json"), &p)
		p["number"] = 8
		b, _ := json.Marshal(p)
		if code := e.post("pull_request", e.delivery(), secret, b); code != http.StatusAccepted {
			t.Fatalf("%d", code)
		}
		want := []v1alpha1.TrafficTarget{tt("current", e.rev2, 100), tt("next", e.rev2, 0), tt("pr-7", e.pr[7], 0), tt("pr-9", e.pr[9], 0)}
		e.waitFor("pr-8 to go", 30*time.Second, func() bool { return cmp.Equal(want, e.traffic()) })
	})

	t.Run("killed between ack and apply", func(t *testing.T) {
		e.reset()
		dir := t.TempDir()
		e.stopBot()
		// A bot that accepts but never gets to work: killed after the 202.
		j, err := bot.OpenBoltJournal(filepath.Join(dir, "j.db"))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := github.NewVerifier(0, secret)
		gh, _ := github.New(e.gh.Token, github.WithAPIURL(e.gh.URL))
		dead, err := bot.New(bot.Options{Verifier: v, GitHub: func(int64) bot.GitHub { return gh }, Deploy: e.c, Journal: j})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(dead.Handler())
		e.botURL = hs.URL
		p, id := e.commentPayload("created", 7, "writer", "/rollout 60", time.Now())
		if code := e.post("issue_comment", e.delivery(), secret, p); code != http.StatusAccepted {
			t.Fatalf("%d", code)
		}
		hs.Close()
		_ = j.Close()
		if diff := cmp.Diff(base(), e.traffic()); diff != "" {
			t.Fatalf("moved before it ran (-want +got):\n%s", diff)
		}
		// The next replica starts on the same journal and finishes it.
		e.startBot(filepath.Join(dir, "j.db"), nil)
		if got, reply := e.answer(7, id); got != "rocket" {
			t.Fatalf("%s %q", got, reply)
		}
		if diff := cmp.Diff(with(tt("current", e.rev2, 40), tt("next", e.pr[7], 60)), e.traffic()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("a delivery failed while the bot was down is recovered", func(t *testing.T) {
		e.reset()
		e.stopBot()
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		e.gh.SetApp(4242, &key.PublicKey, 1)
		app, err := github.NewApp(4242, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
			github.WithAPIURL(e.gh.URL), github.WithObserver(func(m string, s int, err error) {
				if b := e.cur.Load(); b != nil {
					b.ObserveGitHub(m, s, err)
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		p, id := e.commentPayload("created", 7, "writer", "/rollout 35", time.Now())
		guid := e.delivery()
		// GitHub could not connect: the delivery is in its log, failed.
		e.gh.AddDelivery(githubtest.Delivery{GUID: guid, Event: "issue_comment", Action: "created", StatusCode: 0, InstallationID: 1, Payload: p})
		e.gh.OnRedeliver(func(d githubtest.Delivery) int { return e.post(d.Event, d.GUID, secret, d.Payload) })
		e.startBot(filepath.Join(t.TempDir(), "j.db"), app)
		if got, reply := e.answer(7, id); got != "rocket" {
			t.Fatalf("%s %q", got, reply)
		}
		if diff := cmp.Diff(with(tt("current", e.rev2, 65), tt("next", e.pr[7], 35)), e.traffic()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		// Asked again later, GitHub's log shows it delivered: nothing more.
		if err := e.bot.Recover(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := len(e.gh.Redeliveries()); n != 1 {
			t.Errorf("%d redeliveries, want 1", n)
		}
		// As the App, the bot answered with an installation token.
		if len(e.gh.InstallationTokens()) == 0 {
			t.Error("no installation token was issued")
		}
		var rocket bool
		for _, r := range func() []githubtest.Reaction { c, _ := e.gh.Comment(id); return c.Reactions }() {
			rocket = rocket || r.Content == "rocket"
		}
		if !rocket {
			t.Error("no 🚀 on the recovered command")
		}
		tokens := map[string]bool{}
		for _, tok := range e.gh.InstallationTokens() {
			tokens[tok] = true
		}
		used := false
		for _, r := range e.gh.Requests() {
			if r.Operation == "issues/create-comment" && tokens[strings.TrimPrefix(r.Auth, "token ")] {
				used = true
			}
		}
		if !used {
			t.Error("the reply was not made with the installation token")
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// A command is counted once its answers are out, after the reply the
		// last subtest waited for: the count may lag that reply a moment.
		want := []string{`elafros_bot_deliveries_total{event="issue_comment",outcome="accepted"}`, `elafros_bot_commands_total{outcome="moved"}`,
			`elafros_bot_github_requests_total{method="POST",status="201"}`, "elafros_bot_command_duration_seconds_bucket"}
		testutil.EventuallyEvery(t, 30*time.Second, 20*time.Millisecond, "the command's metrics", func() (bool, string) {
			resp, err := http.Get(e.botURL + "/metrics")
			if err != nil {
				return false, err.Error()
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var lacks []string
			for _, s := range want {
				if !strings.Contains(string(b), s) {
					lacks = append(lacks, s)
				}
			}
			return len(lacks) == 0, fmt.Sprintf("/metrics lacks %s", strings.Join(lacks, ", "))
		})
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(e.botURL + path)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%s: %v %v", path, resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	})
}
