package build

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/elafros/elafros/api/v1alpha1"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("first\n", map[string]string{"README": "one\n", ".gitignore": "*.log\n"})
	second := r.commit("second commit\n\nwith a body\n", map[string]string{"svc/main.go": "package main\n"})
	r.write(map[string]string{"svc/debug.log": "ignored\n"})

	for _, tc := range []struct {
		name, dir, context, repository string
	}{
		{"root", r.dir, ".", "file://" + r.dir},
		{"subdirectory", filepath.Join(r.dir, "svc"), "svc", "file://" + r.dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Open(tc.dir, false)
			if err != nil {
				t.Fatal(err)
			}
			want := &Provenance{
				Repository: tc.repository, Commit: second, Author: "Ada Lovelace <ada@example.com>",
				Message: "second commit\n\nwith a body\n", Context: tc.context, Root: r.dir, Dir: tc.dir,
			}
			if diff := cmp.Diff(want, p); diff != "" {
				t.Errorf("Open(%s) (-want +got):\n%s", tc.dir, diff)
			}
			wantSrc := &v1alpha1.ImageSource{Repository: tc.repository, Commit: second, Context: tc.context}
			if diff := cmp.Diff(wantSrc, p.ImageSource()); diff != "" {
				t.Errorf("ImageSource (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenOrigin(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("first", map[string]string{"README": "one\n"})
	r.setOrigin("https://github.com/elafros/hello.git")
	p, err := Open(r.dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Repository != "https://github.com/elafros/hello.git" {
		t.Errorf("Repository = %q, want the origin URL", p.Repository)
	}
}

func TestOpenDirty(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		paths []string
	}{
		{"modified", map[string]string{"README": "changed\n"}, []string{"README"}},
		{"untracked", map[string]string{"new.go": "package x\n", "sub/other.txt": "x"}, []string{"new.go", "sub/other.txt"}},
		{"many", map[string]string{"a": "", "b": "", "c": "", "d": "", "e": "", "f": "", "g": ""}, []string{"a", "b", "c", "d", "e", "and 2 more"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRepo(t)
			sha := r.commit("first", map[string]string{"README": "one\n", ".gitignore": "*.log\n"})
			r.write(map[string]string{"ignored.log": "x"})
			r.write(tc.files)
			_, err := Open(r.dir, false)
			if !errors.Is(err, ErrDirty) {
				t.Fatalf("Open of a dirty tree = %v, want ErrDirty", err)
			}
			for _, p := range append(tc.paths, "allowDirty") {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
			if strings.Contains(err.Error(), "ignored.log") {
				t.Errorf("error %q mentions a file .gitignore ignores", err)
			}
			p, err := Open(r.dir, true)
			if err != nil {
				t.Fatalf("Open(allowDirty) = %v", err)
			}
			if !p.Dirty || p.Commit != sha {
				t.Errorf("Open(allowDirty) = Dirty %v Commit %s, want Dirty true Commit %s", p.Dirty, p.Commit, sha)
			}
		})
	}
}

func TestOpenNotARepository(t *testing.T) {
	t.Parallel()
	if _, err := Open(t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "not in a git repository") {
		t.Errorf("Open of a plain directory = %v, want a not-in-a-repository error", err)
	}
}

func TestClone(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	first := r.commit("first", map[string]string{"VERSION": "1\n"})
	r.tag("v1", first)
	second := r.commit("second", map[string]string{"VERSION": "2\n"})
	third := r.commit("third", map[string]string{"VERSION": "3\n"})

	for _, tc := range []struct {
		name, url, commit, want, version string
	}{
		{"full SHA", r.url(), second, second, "2\n"},
		{"abbreviated SHA", r.url(), first[:8], first, "1\n"},
		{"tag", r.url(), "v1", first, "1\n"},
		{"branch", r.url(), "master", third, "3\n"},
		{"default", r.url(), "", third, "3\n"},
		{"local path", r.dir, second[:10], second, "2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "clone")
			p, err := Clone(context.Background(), tc.url, tc.commit, dir)
			if err != nil {
				t.Fatal(err)
			}
			if p.Commit != tc.want || p.Repository != tc.url || p.Context != "." || p.Author != "Ada Lovelace <ada@example.com>" {
				t.Errorf("Clone at %q = %+v, want commit %s of %s", tc.commit, p, tc.want, tc.url)
			}
			got, err := os.ReadFile(filepath.Join(dir, "VERSION"))
			if err != nil || string(got) != tc.version {
				t.Errorf("VERSION in the clone = %q, %v; want %q", got, err, tc.version)
			}
		})
	}

	t.Run("unknown commit", func(t *testing.T) {
		t.Parallel()
		_, err := Clone(context.Background(), r.url(), "deadbeef", filepath.Join(t.TempDir(), "clone"))
		if !errors.Is(err, ErrCommitNotFound) || !strings.Contains(err.Error(), `"deadbeef"`) {
			t.Errorf("Clone at an unknown commit = %v, want ErrCommitNotFound naming it", err)
		}
	})
	t.Run("unknown repository", func(t *testing.T) {
		t.Parallel()
		_, err := Clone(context.Background(), "file://"+filepath.Join(t.TempDir(), "nothing"), "", filepath.Join(t.TempDir(), "clone"))
		if err == nil || !strings.Contains(err.Error(), "cloning") {
			t.Errorf("Clone of a missing repository = %v, want a cloning error", err)
		}
	})
}

// TestOpenLinkedWorktree: a checkout made with "git worktree add" (its
// .git is a file pointing into the main repository) opens too.
func TestOpenLinkedWorktree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	r := newRepo(t)
	sha := r.commit("first\n", map[string]string{"README": "one\n"})
	wt := filepath.Join(t.TempDir(), "linked")
	if out, err := exec.Command("git", "-C", r.dir, "worktree", "add", "--detach", wt, sha).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add: %v\n%s", err, out)
	}
	p, err := Open(wt, false)
	if err != nil {
		t.Fatalf("Open(linked worktree): %v", err)
	}
	if p.Commit != sha {
		t.Errorf("commit = %s, want %s", p.Commit, sha)
	}
}
