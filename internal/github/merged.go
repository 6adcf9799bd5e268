package github

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	gh "github.com/google/go-github/v60/github"
)

// mergeMessage finds the pull request number in the first line of a
// merge commit's message as GitHub writes it: "Merge pull request #42
// from owner/branch" (merge commits) or "Title (#42)" (squash merges).
var mergeMessage = regexp.MustCompile(`^Merge pull request #(\d+) |\(#(\d+)\)\s*$`)

// MergedPullRequest finds the pull request that sha (a commit on the
// default branch) merged, or 0 when none did (a direct push). It trusts
// the commit message only as a hint: the pull request it names must
// have sha as its merge commit. Without a hint it looks through the most
// recently updated closed pull requests (one page: a merge deployed now
// was closed moments ago).
func (c *Client) MergedPullRequest(ctx context.Context, repo Repo, sha, message string) (int, error) {
	first, _, _ := strings.Cut(message, "\n")
	if m := mergeMessage.FindStringSubmatch(strings.TrimSpace(first)); m != nil {
		n, _ := strconv.Atoi(m[1] + m[2])
		pr, err := c.PullRequest(ctx, repo, n)
		switch {
		case err == nil && pr.Merged && pr.MergeCommitSHA == sha:
			return n, nil
		case err != nil && !IsNotFound(err):
			return 0, err
		}
	}
	prs, resp, err := c.gh.PullRequests.List(ctx, repo.Owner, repo.Name, &gh.PullRequestListOptions{
		State: "closed", Sort: "updated", Direction: "desc", ListOptions: gh.ListOptions{PerPage: 50}})
	if err != nil {
		return 0, wrap(fmt.Sprintf("list closed pull requests of %s", repo), resp, err)
	}
	for _, pr := range prs {
		if pr.GetMergeCommitSHA() == sha {
			return pr.GetNumber(), nil
		}
	}
	return 0, nil
}
