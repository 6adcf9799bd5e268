package build

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRepo is a git repository in a temporary directory.
type testRepo struct {
	t    testing.TB
	dir  string
	repo *git.Repository
}

func newRepo(t testing.TB) *testRepo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, dir: dir, repo: repo}
}

// write writes files (path -> content) into the working tree.
func (r *testRepo) write(files map[string]string) {
	r.t.Helper()
	for p, c := range files {
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// commit writes files, stages everything and commits; it returns the SHA.
func (r *testRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.write(files)
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &object.Signature{
		Name: "Ada Lovelace", Email: "ada@example.com", When: time.Unix(1500000000, 0),
	}})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

func (r *testRepo) tag(name, sha string) {
	r.t.Helper()
	if _, err := r.repo.CreateTag(name, plumbing.NewHash(sha), nil); err != nil {
		r.t.Fatal(err)
	}
}

func (r *testRepo) setOrigin(url string) {
	r.t.Helper()
	if _, err := r.repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *testRepo) url() string { return "file://" + r.dir }

const appGoMod = "module example.com/app\n\ngo 1.22\n"

const appMain = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", os.Getenv("GREETING"))
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
`

// pullIndex pulls ref (by digest) as an index.
func pullIndex(t testing.TB, ref string) v1.ImageIndex {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	return idx
}

// platformImage returns the image of idx for linux/arch.
func imageFor(t testing.TB, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/%s image in the index", arch)
	return nil
}

// extractApp writes the /app of img to a temporary executable.
func extractApp(t testing.TB, img v1.Image) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("no /app in the image")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "app" && h.Name != "/app" {
			continue
		}
		if h.Mode&0o111 == 0 {
			t.Fatalf("/app has mode %o, want it executable", h.Mode)
		}
		exe := filepath.Join(t.TempDir(), "app")
		f, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return exe
	}
}

// runApp starts exe with PORT set (and env), stops it when t ends, and
// returns its base URL once it answers, and a func that sends it SIGTERM
// and returns how it exited.
func runApp(t testing.TB, exe string, env ...string) (string, func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(exe)
	cmd.Env = append([]string{"PORT=" + strconv.Itoa(port)}, env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			return base, func() error {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-exited
				return waitErr
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before answering: %v", exe, waitErr)
		case <-ctx.Done():
			t.Fatalf("%s did not answer on %s", exe, base)
		case <-tick.C:
		}
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func newBuilder(t testing.TB, opts Options) *Builder {
	t.Helper()
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
