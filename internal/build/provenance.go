package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/elafros/elafros/api/v1alpha1"
)

// Provenance is where a build's source comes from: a repository at a
// commit, and the directory within it that is built.
type Provenance struct {
	// Repository is the origin URL of the repository, or file://<root>
	// when it has no origin.
	Repository string
	// Commit is HEAD's full SHA.
	Commit string
	// Author is HEAD's author as "name <email>".
	Author string
	// Message is HEAD's commit message.
	Message string
	// Context is the built directory relative to the repository root,
	// slash-separated ("." at the root).
	Context string
	// Dirty is true when the working tree had uncommitted changes that
	// were allowed: the image is then not exactly Commit.
	Dirty bool
	// Root is the absolute directory of the repository's working tree.
	Root string
	// Dir is the absolute directory that is built (Root joined with
	// Context).
	Dir string
}

// ImageSource is the provenance as a revision records it.
func (p *Provenance) ImageSource() *v1alpha1.ImageSource {
	return &v1alpha1.ImageSource{Repository: p.Repository, Commit: p.Commit, Context: p.Context}
}

// revisionLabel is the image's org.opencontainers.image.revision: the
// commit, with git describe's "-dirty" suffix when uncommitted changes were
// built (elafros up, up --watch), so that an image never claims to be a
// commit it is not. ImageSource.Commit stays the bare SHA: it names the
// commit the tree started from, and tools compare it with commit SHAs.
func (p *Provenance) revisionLabel() string {
	if p.Dirty && p.Commit != "" {
		return p.Commit + "-dirty"
	}
	return p.Commit
}

// maxDirtyPaths bounds how many changed paths a dirty-tree error lists.
const maxDirtyPaths = 5

// Open finds the git repository containing dir and describes its HEAD.
// A working tree with modified or untracked files (those .gitignore
// ignores aside) is refused unless allowDirty, in which case the
// Provenance is marked Dirty.
func Open(dir string, allowDirty bool) (*Provenance, error) {
	p, settle, err := openLazy(dir, allowDirty)
	if err != nil {
		return nil, err
	}
	if err := settle(); err != nil {
		return nil, err
	}
	return p, nil
}

// openLazy is Open with the working tree's status left for later: the
// repository, HEAD and directories are read at once (a few milliseconds),
// while git status reads and hashes every file of the tree (100 to 200 ms
// for this repository), which a build can spend compiling instead.
// settle computes the status: it marks p Dirty, or returns the error of a
// dirty tree that is not allowed. p.Dirty must not be read before settle
// returns.
func openLazy(dir string, allowDirty bool) (p *Provenance, settle func() error, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("source directory %s: %w", dir, err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, nil, fmt.Errorf("source directory %s: %w", dir, err)
	}
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, nil, fmt.Errorf("source directory %s is not in a git repository: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, nil, fmt.Errorf("git repository of %s: %w", dir, err)
	}
	root, err := filepath.EvalSymlinks(wt.Filesystem.Root())
	if err != nil {
		return nil, nil, fmt.Errorf("git repository of %s: %w", dir, err)
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return nil, nil, fmt.Errorf("source directory %s within %s: %w", dir, root, err)
	}
	p, err = describe(repo)
	if err != nil {
		return nil, nil, fmt.Errorf("git repository %s: %w", root, err)
	}
	p.Root, p.Dir, p.Context = root, abs, filepath.ToSlash(rel)
	if p.Repository == "" {
		p.Repository = "file://" + filepath.ToSlash(root)
	}
	settle = func() error {
		status, err := wt.Status()
		if err != nil {
			return fmt.Errorf("git status of %s: %w", root, err)
		}
		if !status.IsClean() {
			if !allowDirty {
				return dirtyError(root, status)
			}
			p.Dirty = true
		}
		return nil
	}
	return p, settle, nil
}

// ErrDirty is the error (matched with errors.Is) of a working tree with
// uncommitted changes.
var ErrDirty = errors.New("the working tree has uncommitted changes")

func dirtyError(root string, status git.Status) error {
	var paths []string
	for path, s := range status {
		if s.Worktree != git.Unmodified || s.Staging != git.Unmodified {
			paths = append(paths, path)
		}
	}
	sort.Strings(paths)
	more := ""
	if len(paths) > maxDirtyPaths {
		more = fmt.Sprintf(" and %d more", len(paths)-maxDirtyPaths)
		paths = paths[:maxDirtyPaths]
	}
	return fmt.Errorf("%s: %w (%s%s): commit them, or pass allowDirty to build the working tree as it is", root, ErrDirty, strings.Join(paths, ", "), more)
}

// describe reads HEAD's commit and the origin URL of repo.
func describe(repo *git.Repository) (*Provenance, error) {
	head, err := repo.Head()
	if err != nil {
		return nil, fmt.Errorf("resolving HEAD (is there a commit yet?): %w", err)
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		return nil, fmt.Errorf("reading HEAD's commit %s: %w", head.Hash(), err)
	}
	p := commitProvenance(c)
	if remote, err := repo.Remote("origin"); err == nil {
		if urls := remote.Config().URLs; len(urls) > 0 {
			p.Repository = urls[0]
		}
	}
	return p, nil
}

func commitProvenance(c *object.Commit) *Provenance {
	return &Provenance{
		Commit:  c.Hash.String(),
		Author:  fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Message: c.Message,
		Context: ".",
	}
}

// ErrCommitNotFound is the error (matched with errors.Is) of a commit
// that the cloned repository does not have.
var ErrCommitNotFound = errors.New("commit not found")

// Clone clones url (https, ssh, file:// or a local path) into dir, which
// is emptied first, and checks out commit: a SHA (possibly abbreviated),
// a branch or a tag.
func Clone(ctx context.Context, url, commit, dir string) (*Provenance, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing %s for a clone: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("clone directory: %w", err)
	}
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: url, Tags: git.AllTags})
	if err != nil {
		return nil, fmt.Errorf("cloning %s: %w", url, err)
	}
	hash, err := resolveCommit(repo, commit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("clone of %s: %w", url, err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: hash, Force: true}); err != nil {
		return nil, fmt.Errorf("checking out %s of %s: %w", commit, url, err)
	}
	c, err := repo.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s of %s: %w", hash, url, err)
	}
	p := commitProvenance(c)
	p.Repository = url
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	p.Root, p.Dir = abs, abs
	return p, nil
}

// resolveCommit resolves a SHA (full or abbreviated), branch or tag of a
// fresh clone to a commit hash.
func resolveCommit(repo *git.Repository, commit string) (plumbing.Hash, error) {
	if commit == "" {
		head, err := repo.Head()
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("resolving HEAD: %w", err)
		}
		return head.Hash(), nil
	}
	candidates := []string{commit, "refs/remotes/origin/" + commit, "refs/tags/" + commit}
	for _, c := range candidates {
		h, err := repo.ResolveRevision(plumbing.Revision(c))
		if err != nil {
			continue
		}
		if _, err := repo.CommitObject(*h); err == nil {
			return *h, nil
		}
		// A tag object: peel it to its commit.
		if tag, err := repo.TagObject(*h); err == nil {
			if tc, err := tag.Commit(); err == nil {
				return tc.Hash, nil
			}
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("%w: %q is no commit SHA, branch or tag of the repository", ErrCommitNotFound, commit)
}
