package github

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/internal/github/githubtest"
)

var repo = Repo{"octo", "app"}

func fakeClient(t *testing.T, s *githubtest.Server) *Client {
	t.Helper()
	c, err := New(s.Token, WithAPIURL(s.URL), WithRetry(RetryPolicy{Backoff: 10 * time.Millisecond, MaxWait: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeployment(t *testing.T) {
	s := githubtest.NewServer(t)
	c := fakeClient(t, s)
	ctx := t.Context()
	// The default branch is ahead: with GitHub's default auto_merge this
	// would be a 202 and no deployment; the client never asks for it.
	s.SetDefaultBranchAhead(repo.String(), true)
	s.SetCommitStatus(repo.String(), strings.Repeat("a", 40), githubtest.CommitStatus{Context: "ci", State: "pending"})
	id, err := c.CreateDeployment(ctx, repo, DeploymentRequest{Ref: strings.Repeat("a", 40), Environment: "pr-7", Transient: true, Payload: map[string]any{"service": "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []DeploymentStatus{
		{State: StateInProgress, LogURL: "https://github.com/octo/app/actions/runs/1"},
		{State: StateSuccess, EnvironmentURL: "http://pr-7.hello.default.example.com", LogURL: "https://github.com/octo/app/actions/runs/1", Description: strings.Repeat("x", 200)},
	} {
		if err := c.SetDeploymentStatus(ctx, repo, id, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetDeploymentStatus(ctx, repo, id, DeploymentStatus{State: "done"}); err == nil || !strings.Contains(err.Error(), "in_progress") {
		t.Errorf("state outside GitHub's enum: %v, want a refusal naming the accepted states", err)
	}
	deps := s.Deployments(repo.String())
	if len(deps) != 1 {
		t.Fatalf("%d deployments", len(deps))
	}
	d := deps[0]
	got := []any{d.ID, d.AutoMerge, d.RequiredContexts, d.Environment, len(d.Statuses), d.Statuses[0].State, d.Statuses[1].State, d.Statuses[1].EnvironmentURL, len([]rune(d.Statuses[1].Description))}
	want := []any{id, false, []string{}, "pr-7", 2, "in_progress", "success", "http://pr-7.hello.default.example.com", 140}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deployment (-want +got):\n%s", diff)
	}

	id2, err := c.CreateDeployment(ctx, repo, DeploymentRequest{Ref: strings.Repeat("a", 40), Environment: "pr-7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env, sha string
		want     int64
		found    bool
	}{
		{"pr-7", "", id2, true}, {"pr-7", strings.Repeat("a", 40), id2, true},
		{"pr-7", strings.Repeat("b", 40), 0, false}, {"production", "", 0, false},
	} {
		got, found, err := c.LatestDeployment(ctx, repo, tc.env, tc.sha)
		if err != nil || got != tc.want || found != tc.found {
			t.Errorf("LatestDeployment(%s, %s) = %d, %v, %v; want %d, %v", tc.env, tc.sha, got, found, err, tc.want, tc.found)
		}
	}

	s.Inject(githubtest.Fault{Operation: "repos/create-deployment", Status: http.StatusAccepted, Message: "Auto-merged main into topic on deployment."})
	if _, err := c.CreateDeployment(ctx, repo, DeploymentRequest{Ref: "topic"}); !errors.Is(err, ErrDeploymentNotCreated) || !strings.Contains(err.Error(), "Auto-merged") {
		t.Errorf("202: %v, want ErrDeploymentNotCreated with GitHub's message", err)
	}
	if _, err := c.CreateDeployment(ctx, repo, DeploymentRequest{}); err == nil || !strings.Contains(err.Error(), "ref") {
		t.Errorf("no ref: %v", err)
	}
}

func TestStickyComment(t *testing.T) {
	s := githubtest.NewServer(t)
	c := fakeClient(t, s)
	ctx := t.Context()
	// Enough other comments that the marked one is past the first page.
	for i := range 130 {
		s.AddComment(repo.String(), 5, "octocat", fmt.Sprintf("comment %d", i))
	}
	id1, err := c.UpsertComment(ctx, repo, 5, "preview/hello", "first")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := c.UpsertComment(ctx, repo, 5, "preview/hello", "second")
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Errorf("upsert made a new comment %d, want %d edited", id2, id1)
	}
	other, err := c.UpsertComment(ctx, repo, 5, "preview/other", "other")
	if err != nil || other == id1 {
		t.Fatalf("another key: %d %v", other, err)
	}
	// A duplicate left by a race collapses into the oldest.
	s.AddComment(repo.String(), 5, "elafros-bot", Marker("preview/hello")+"\nduplicate")
	if id, err := c.UpsertComment(ctx, repo, 5, "preview/hello", "third"); err != nil || id != id1 {
		t.Fatalf("upsert with a duplicate: %d %v", id, err)
	}
	marked := func() []string {
		var out []string
		for _, cm := range s.Comments(repo.String(), 5) {
			if strings.HasPrefix(cm.Body, "<!-- elafros:") {
				out = append(out, cm.Body)
			}
		}
		return out
	}
	want := []string{Marker("preview/hello") + "\nthird", Marker("preview/other") + "\nother"}
	if diff := cmp.Diff(want, marked()); diff != "" {
		t.Errorf("marked comments (-want +got):\n%s", diff)
	}
	if ok, err := c.DeleteComment(ctx, repo, 5, "preview/hello"); !ok || err != nil {
		t.Errorf("delete: %v %v", ok, err)
	}
	if ok, err := c.DeleteComment(ctx, repo, 5, "preview/hello"); ok || err != nil {
		t.Errorf("delete again: %v %v, want false, nil", ok, err)
	}
	if diff := cmp.Diff(want[1:], marked()); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
	if _, err := c.UpsertComment(ctx, repo, 5, "Bad Key", "x"); err == nil {
		t.Error("a key with spaces was accepted")
	}
	long := strings.Repeat("é", 70000)
	id, err := c.UpsertComment(ctx, repo, 5, "long", long)
	if err != nil {
		t.Fatal(err)
	}
	cm, _ := s.Comment(id)
	if n := len([]rune(cm.Body)); n != 65536 || !strings.HasSuffix(cm.Body, "at most 65536 characters)") {
		t.Errorf("long body: %d runes", n)
	}
}

func TestReactPermissionTeamPull(t *testing.T) {
	s := githubtest.NewServer(t)
	c := fakeClient(t, s)
	ctx := t.Context()
	cid := s.AddComment(repo.String(), 3, "octocat", "/rollout 50")
	if err := c.React(ctx, repo, cid, ReactionEyes); err != nil {
		t.Fatal(err)
	}
	if err := c.React(ctx, repo, cid, ReactionEyes); err != nil {
		t.Fatal(err)
	}
	if err := c.React(ctx, repo, cid, "thumbsup"); err == nil || !strings.Contains(err.Error(), "rocket") {
		t.Errorf("bad reaction: %v", err)
	}
	if cm, _ := s.Comment(cid); len(cm.Reactions) != 1 || cm.Reactions[0].Content != "eyes" {
		t.Errorf("reactions %+v", cm.Reactions)
	}

	for _, role := range []string{"admin", "maintain", "write", "triage", "read"} {
		s.SetPermission(repo.String(), "u-"+role, role)
	}
	for _, tc := range []struct {
		login string
		want  Permission
		write bool
	}{
		{"u-admin", PermAdmin, true}, {"u-maintain", PermMaintain, true}, {"u-write", PermWrite, true},
		{"u-triage", PermTriage, false}, {"u-read", PermRead, false}, {"stranger", PermNone, false},
	} {
		got, err := c.Permission(ctx, repo, tc.login)
		if err != nil || got != tc.want || got.CanWrite() != tc.write {
			t.Errorf("Permission(%s) = %s (write %v), %v; want %s (write %v)", tc.login, got, got.CanWrite(), err, tc.want, tc.write)
		}
	}

	s.SetTeamMember("octo/release", "alice", "active")
	s.SetTeamMember("octo/release", "bob", "pending")
	for login, want := range map[string]bool{"alice": true, "bob": false, "carol": false} {
		if got, err := c.IsTeamMember(ctx, "octo/release", login); err != nil || got != want {
			t.Errorf("IsTeamMember(%s) = %v, %v; want %v", login, got, err, want)
		}
	}
	if _, err := c.IsTeamMember(ctx, "release", "alice"); err == nil {
		t.Error("a team without org was accepted")
	}

	s.SetPullRequest(repo.String(), githubtest.PullRequest{Number: 9, HeadSHA: "h", HeadRef: "topic", HeadRepo: "fork/app",
		Merged: true, State: "closed", MergeCommitSHA: "m", BaseRef: "main", User: "alice"})
	pr, err := c.PullRequest(ctx, repo, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := &PullRequest{Number: 9, State: "closed", Merged: true, MergeCommitSHA: "m", HeadSHA: "h", HeadRef: "topic",
		HeadRepo: "fork/app", Fork: true, BaseRef: "main", Author: "alice", HTMLURL: "https://github.com/octo/app/pull/9"}
	if diff := cmp.Diff(want, pr); diff != "" {
		t.Errorf("pull request (-want +got):\n%s", diff)
	}
	if _, err := c.PullRequest(ctx, repo, 10); !IsNotFound(err) {
		t.Errorf("unknown PR: %v, want not found", err)
	}
}

func TestChecksGreen(t *testing.T) {
	s := githubtest.NewServer(t)
	c := fakeClient(t, s)
	r := repo.String()
	s.SetCheckRun(r, "ok", githubtest.CheckRun{Name: "test", Status: "completed", Conclusion: "success"})
	s.SetCommitStatus(r, "ok", githubtest.CommitStatus{Context: "ci/lint", State: "success"})
	s.SetCheckRun(r, "running", githubtest.CheckRun{Name: "test", Status: "in_progress"})
	s.SetCheckRun(r, "red", githubtest.CheckRun{Name: "test", Status: "completed", Conclusion: "success"})
	s.SetCommitStatus(r, "red", githubtest.CommitStatus{Context: "ci/lint", State: "failure"})
	s.SetCheckRun(r, "skip", githubtest.CheckRun{Name: "test", Status: "completed", Conclusion: "skipped"})
	for _, tc := range []struct {
		name, sha string
		required  []string
		want      Checks
	}{
		{"no results is not green", "none", nil, Checks{}},
		{"all passed", "ok", nil, Checks{Green: true, Passed: []string{"ci/lint", "test"}}},
		{"pending", "running", nil, Checks{Pending: []string{"test"}}},
		{"one failed", "red", nil, Checks{Passed: []string{"test"}, Failed: []string{"ci/lint"}}},
		{"required passed, others ignored", "red", []string{"test"}, Checks{Green: true, Passed: []string{"test"}}},
		{"required missing", "ok", []string{"test", "deploy"}, Checks{Passed: []string{"test"}, Missing: []string{"deploy"}}},
		{"skipped passes", "skip", nil, Checks{Green: true, Passed: []string{"test"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.ChecksGreen(t.Context(), repo, tc.sha, tc.required)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	ctx := t.Context()
	t.Run("502 then 201", func(t *testing.T) {
		s := githubtest.NewServer(t)
		c := fakeClient(t, s)
		s.FailNext(2, http.StatusBadGateway)
		if _, err := c.Reply(ctx, repo, 1, "hello"); err != nil {
			t.Fatal(err)
		}
		if n := len(s.Comments(repo.String(), 1)); n != 1 {
			t.Errorf("%d comments, want 1", n)
		}
		if n := len(s.Operations()); n != 3 {
			t.Errorf("%d tries, want 3", n)
		}
	})
	t.Run("5xx beyond the attempts", func(t *testing.T) {
		s := githubtest.NewServer(t)
		c, _ := New(s.Token, WithAPIURL(s.URL), WithRetry(RetryPolicy{Attempts: 3, Backoff: time.Millisecond}))
		s.FailNext(5, http.StatusServiceUnavailable)
		_, err := c.Reply(ctx, repo, 1, "hello")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 503 {
			t.Errorf("err %v, want a 503 APIError", err)
		}
		if n := len(s.Operations()); n != 3 {
			t.Errorf("%d tries, want 3", n)
		}
	})
	t.Run("secondary rate limit honours Retry-After", func(t *testing.T) {
		s := githubtest.NewServer(t)
		c := fakeClient(t, s)
		s.SecondaryRateLimitNext(time.Second)
		if err := c.React(ctx, repo, s.AddComment(repo.String(), 1, "a", "x"), ReactionRocket); err != nil {
			t.Fatal(err)
		}
		if n := len(s.Operations()); n != 2 {
			t.Errorf("%d tries, want 2", n)
		}
	})
	t.Run("primary rate limit resetting within the bound", func(t *testing.T) {
		s := githubtest.NewServer(t)
		c := fakeClient(t, s)
		s.PrimaryRateLimitNext(time.Now())
		if _, err := c.Permission(ctx, repo, "alice"); err != nil {
			t.Fatal(err)
		}
		if n := len(s.Operations()); n != 2 {
			t.Errorf("%d tries, want 2", n)
		}
	})
	t.Run("primary rate limit resetting past the bound is returned at once", func(t *testing.T) {
		s := githubtest.NewServer(t)
		c := fakeClient(t, s)
		s.PrimaryRateLimitNext(time.Now().Add(time.Hour))
		_, err := c.PullRequest(ctx, repo, 1)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 403 {
			t.Errorf("err %v, want a 403 APIError", err)
		}
		if n := len(s.Operations()); n != 1 {
			t.Errorf("%d tries, want 1", n)
		}
	})
	t.Run("context ends the wait", func(t *testing.T) {
		s := githubtest.NewServer(t)
		c, _ := New(s.Token, WithAPIURL(s.URL), WithRetry(RetryPolicy{MaxWait: time.Hour}))
		s.SecondaryRateLimitNext(time.Hour)
		cctx, cancel := context.WithCancelCause(ctx)
		go func() {
			for len(s.Operations()) == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel(errors.New("shutting down"))
		}()
		_, err := c.Reply(cctx, repo, 1, "x")
		// go-github reports the context's error, not its cause.
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	})
}

func TestRetryAfterArithmetic(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	type answer struct {
		status int
		header http.Header
	}
	mk := func(code int, h ...string) answer {
		a := answer{code, http.Header{}}
		for i := 0; i < len(h); i += 2 {
			a.header.Set(h[i], h[i+1])
		}
		return a
	}
	for _, tc := range []struct {
		name  string
		resp  answer
		wait  time.Duration
		retry bool
	}{
		{"Retry-After seconds", mk(403, "Retry-After", "7"), 7 * time.Second, true},
		{"Retry-After date", mk(429, "Retry-After", now.Add(3*time.Second).UTC().Format(http.TimeFormat)), 3 * time.Second, true},
		{"reset", mk(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1000010"), 11 * time.Second, true},
		{"reset in the past", mk(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "999990"), time.Second, true},
		{"403 without rate limit is a refusal", mk(403, "X-RateLimit-Remaining", "12"), 0, false},
		{"404", mk(404), 0, false},
		{"422", mk(422), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait, retry := retryAfter(tc.resp.status, tc.resp.header, time.Second, now)
			if wait != tc.wait || retry != tc.retry {
				t.Errorf("retryAfter = %v, %v; want %v, %v", wait, retry, tc.wait, tc.retry)
			}
		})
	}
	// 5xx waits are jittered within [backoff/2, backoff].
	for range 100 {
		if w, ok := retryAfter(502, nil, time.Second, now); !ok || w < time.Second/2 || w > time.Second {
			t.Fatalf("502 wait %v", w)
		}
	}
}

func appKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func TestApp(t *testing.T) {
	s := githubtest.NewServer(t)
	key, pemBytes := appKey(t)
	s.SetApp(77, &key.PublicKey, 1001)
	app, err := NewApp(77, pemBytes, WithAPIURL(s.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	inst := app.Installation(1001)
	if inst != app.Installation(1001) {
		t.Error("installation clients are not cached")
	}
	for range 2 {
		if _, err := inst.Reply(ctx, repo, 1, "as the app"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.InstallationTokens()); n != 1 {
		t.Errorf("%d installation tokens issued, want 1 (reused)", n)
	}

	since := time.Now().Add(-time.Hour)
	s.AddDelivery(githubtest.Delivery{GUID: "old", Event: "issue_comment", StatusCode: 500, DeliveredAt: since.Add(-time.Minute)})
	s.AddDelivery(githubtest.Delivery{GUID: "ok", Event: "issue_comment", StatusCode: 200})
	s.AddDelivery(githubtest.Delivery{GUID: "healed", Event: "issue_comment", StatusCode: 502})
	s.AddDelivery(githubtest.Delivery{GUID: "healed", Event: "issue_comment", StatusCode: 202, Redelivery: true})
	lost := s.AddDelivery(githubtest.Delivery{GUID: "lost", Event: "issue_comment", Action: "created", StatusCode: 0, InstallationID: 1001})
	for i := range 150 { // more than a page
		s.AddDelivery(githubtest.Delivery{GUID: fmt.Sprintf("fine-%d", i), Event: "ping", StatusCode: 200})
	}
	failed, err := app.FailedDeliveries(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	var guids []string
	for _, d := range failed {
		guids = append(guids, d.GUID)
	}
	if diff := cmp.Diff([]string{"lost"}, guids); diff != "" {
		t.Errorf("failed deliveries (-want +got):\n%s", diff)
	}
	if err := app.Redeliver(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{lost}, s.Redeliveries()); diff != "" {
		t.Errorf("redeliveries (-want +got):\n%s", diff)
	}
}

func TestConstructionRefusals(t *testing.T) {
	_, pemBytes := appKey(t)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"empty token", func() error { _, err := New(""); return err }(), "GITHUB_TOKEN"},
		{"bad API URL", func() error { _, err := New("t", WithAPIURL("api.github.com")); return err }(), "absolute http(s) URL"},
		{"app id", func() error { _, err := NewApp(0, pemBytes); return err }(), "GITHUB_APP_ID"},
		{"not PEM", func() error { _, err := NewApp(1, []byte("hello")); return err }(), "not PEM"},
		{"not RSA", func() error {
			_, err := NewApp(1, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2}}))
			return err
		}(), "not an RSA private key"},
		{"no secret", func() error { _, err := NewVerifier(0); return err }(), "GITHUB_WEBHOOK_SECRET"},
		{"empty secret", func() error { _, err := NewVerifier(0, []byte("")); return err }(), "GITHUB_WEBHOOK_SECRET"},
		{"three secrets", func() error { _, err := NewVerifier(0, []byte("a"), []byte("b"), []byte("c")); return err }(), "at most two"},
		{"repo", func() error { _, err := ParseRepo("octo"); return err }(), "owner/name"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, tc.err, tc.want)
		}
	}
}

func TestVerifier(t *testing.T) {
	oldS, newS := []byte("old-secret"), []byte("new-secret")
	v, err := NewVerifier(1024, newS, oldS)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"action":"created"}`)
	sign := func(secret, b []byte) string { return githubtest.Signature(secret, b) }
	for _, tc := range []struct {
		name      string
		body      []byte
		sig       string
		event     string
		wantErr   error
		wantCode  int
		wantDeliv bool
	}{
		{"new secret", body, sign(newS, body), "issue_comment", nil, 0, true},
		{"old secret while rotating", body, sign(oldS, body), "issue_comment", nil, 0, true},
		{"missing", body, "", "issue_comment", ErrNoSignature, 401, false},
		{"wrong secret", body, sign([]byte("guess"), body), "issue_comment", ErrBadSignature, 401, false},
		{"tampered body", []byte(`{"action":"deleted"}`), sign(newS, body), "issue_comment", ErrBadSignature, 401, false},
		{"sha1 only", body, "sha1=0123", "issue_comment", ErrBadSignature, 401, false},
		{"not hex", body, "sha256=zz", "issue_comment", ErrBadSignature, 401, false},
		{"too large", bytes.Repeat([]byte("x"), 1025), sign(newS, bytes.Repeat([]byte("x"), 1025)), "issue_comment", ErrBodyTooLarge, 413, false},
		{"no event", body, sign(newS, body), "", ErrNoEvent, 400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "/webhook", bytes.NewReader(tc.body))
			if tc.sig != "" {
				req.Header.Set("X-Hub-Signature-256", tc.sig)
			}
			if tc.event != "" {
				req.Header.Set("X-GitHub-Event", tc.event)
			}
			req.Header.Set("X-GitHub-Delivery", "d-1")
			wh, err := v.Verify(req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil && WebhookStatus(err) != tc.wantCode {
				t.Errorf("status %d, want %d", WebhookStatus(err), tc.wantCode)
			}
			if tc.wantDeliv && (wh == nil || wh.Delivery != "d-1" || !bytes.Equal(wh.Body, tc.body)) {
				t.Errorf("webhook %+v", wh)
			}
		})
	}
	// A streamed body (no Content-Length) over the cap is caught too.
	req, _ := http.NewRequest("POST", "/webhook", struct{ *bytes.Reader }{bytes.NewReader(make([]byte, 4096))})
	req.ContentLength = -1
	if _, err := v.Verify(req); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("streamed large body: %v", err)
	}
}
