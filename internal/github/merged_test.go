package github

import (
	"context"
	"strings"
	"testing"

	"github.com/elafros/elafros/internal/github/githubtest"
)

func TestMergedPullRequest(t *testing.T) {
	s := githubtest.NewServer(t)
	c := fakeClient(t, s)
	repo := Repo{Owner: "Codertocat", Name: "Hello-World"}
	sha := func(c byte) string { return strings.Repeat(string(c), 40) }
	s.SetPullRequest(repo.String(), seedPR(7, "closed", true, sha('a')))  // merged: a
	s.SetPullRequest(repo.String(), seedPR(8, "closed", false, sha('b'))) // closed unmerged (b is a test merge)
	s.SetPullRequest(repo.String(), seedPR(9, "open", false, sha('c')))   // open (c is a test merge)
	for i := 10; i < 75; i++ {                                            // more than a page of others
		s.SetPullRequest(repo.String(), seedPR(i, "closed", true, sha('0')[:38]+strings.Repeat("f", 2)))
	}
	s.SetPullRequest(repo.String(), seedPR(80, "closed", true, sha('d'))) // recent squash

	for _, tc := range []struct {
		name, sha, message string
		want               int
		wantOps            []string
	}{
		{"merge commit message", sha('a'), "Merge pull request #7 from Codertocat/patch-1\n\nFix", 7, []string{"pulls/get"}},
		{"squash message", sha('a'), "Fix the greeting (#7)", 7, []string{"pulls/get"}},
		{"a message naming another pull request is checked, then the list", sha('d'), "Merge pull request #7 from x/y", 80, []string{"pulls/get", "pulls/list"}},
		{"no hint: the recent closed list", sha('d'), "Fix", 80, []string{"pulls/list"}},
		{"a closed unmerged PR's test merge is no merge", sha('b'), "Merge pull request #8 from x/y", 0, []string{"pulls/get", "pulls/list"}},
		{"an open PR's test merge is no merge", sha('c'), "(#9)", 0, []string{"pulls/get", "pulls/list"}},
		{"a direct push", sha('e'), "Bump", 0, []string{"pulls/list"}},
		{"a hint to a missing PR", sha('d'), "(#404)", 80, []string{"pulls/get", "pulls/list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Operations())
			got, err := c.MergedPullRequest(context.Background(), repo, tc.sha, tc.message)
			if err != nil || got != tc.want {
				t.Fatalf("MergedPullRequest = %d, %v; want %d", got, err, tc.want)
			}
			if ops := s.Operations()[before:]; strings.Join(ops, ",") != strings.Join(tc.wantOps, ",") {
				t.Errorf("operations %v, want %v", ops, tc.wantOps)
			}
		})
	}
	if r := s.Refusals(); len(r) > 0 {
		t.Errorf("requests GitHub would refuse: %v", r)
	}
}

// seedPR is a pull request for the fake.
func seedPR(n int, state string, merged bool, mergeSHA string) githubtest.PullRequest {
	return githubtest.PullRequest{Number: n, State: state, Merged: merged, MergeCommitSHA: mergeSHA, HeadSHA: strings.Repeat("9", 40), HeadRef: "patch", BaseRef: "main", User: "Codertocat"}
}
