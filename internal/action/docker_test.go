package action_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/elafros/elafros/internal/testutil"
)

// runnerUID is the uid of GitHub's hosted runner user: the workspace and
// the file-command files belong to it, and the container (root) must
// leave them readable for it.
const runnerUID = 1001

// TestContainerAction builds the repository's Dockerfile with a real
// Docker daemon and runs the image the way GitHub's runner starts a
// container action: the workspace mounted at /github/workspace (also the
// working directory), the file-commands directory at /github/file_commands
// with GITHUB_OUTPUT and GITHUB_STEP_SUMMARY pointing into it, the event
// at /github/workflow/event.json, HOME at /github/home, every input as
// INPUT_*. It deploys examples/hello to elafros serve from inside the
// container (built there with the image's Go toolchain), then fails a bad
// manifest on its line and changes nothing.
//
// Nothing can be pulled here, so the Dockerfile's GO_IMAGE base is made
// from this machine's Go toolchain (and its /bin/sh, which docker's RUN
// needs) with go-containerregistry, and loaded into the daemon; the
// modules come from this machine's module cache served as a GOPROXY.
func TestContainerAction(t *testing.T) {
	cli := testutil.Docker(t)
	if testing.Short() {
		t.Skip("builds a container image")
	}
	// A cold build of the action compiles client-go and friends: minutes on
	// two busy cores.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()

	base := loadGoBase(t, ctx, cli)
	proxy := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(goenv(t, "GOMODCACHE"), "cache", "download"))))
	t.Cleanup(proxy.Close)
	tag := "elafros-action:test-" + fmt.Sprint(time.Now().UnixNano())
	start := time.Now()
	// The latest build stays in the daemon under two fixed tags, its build
	// stage (the sources, the module and build caches: most of its size) and
	// the image, so that a second run with the same sources does not compile
	// again. Both carry a label; what the tags pointed to before is pruned
	// once they move, and so is what a run that failed between the two
	// builds left untagged: a run after an edit leaves no stale gigabytes.
	const keepBuild, keepImage, label = "elafros-action:test-build", "elafros-action:test", "elafros.test=container-action"
	build := []string{"build", "--network", "host", "--label", label, "--build-arg", "GO_IMAGE=" + base, "--build-arg", "GOPROXY=" + proxy.URL}
	dockerRun(t, ctx, cli, append(build, "--target", "build", "-t", keepBuild, "../..")...)
	dockerRun(t, ctx, cli, append(build, "-t", tag, "-t", keepImage, "../..")...)
	t.Cleanup(func() { _ = exec.Command(cli, "rmi", "--no-prune", tag).Run() })
	if got := strings.TrimSpace(dockerRun(t, ctx, cli, "image", "inspect", "-f", `{{index .Config.Labels "elafros.test"}}`, keepBuild)); got != "container-action" {
		t.Errorf("the build stage's image is labelled %q, want container-action: the prune below would miss its stale copies", got)
	}
	t.Logf("earlier builds pruned: %s", strings.TrimSpace(dockerRun(t, ctx, cli, "image", "prune", "-f", "--filter", "dangling=true", "--filter", "label="+label)))
	size := strings.TrimSpace(dockerRun(t, ctx, cli, "image", "inspect", "-f", "{{.Size}}", tag))
	baseSize := strings.TrimSpace(dockerRun(t, ctx, cli, "image", "inspect", "-f", "{{.Size}}", base))
	t.Logf("action image: %s bytes (its Go toolchain base: %s bytes), built in %s", size, baseSize, time.Since(start).Round(time.Second))
	if cfg := dockerRun(t, ctx, cli, "image", "inspect", "-f", "{{.Config.User}}|{{.Config.WorkingDir}}", tag); strings.TrimSpace(cfg) != "|" {
		t.Errorf("the image sets USER|WORKDIR = %q; GitHub's rules for container actions forbid both", cfg)
	}

	p := newPlane(t)
	ws, sha := workspace(t, fmt.Sprintf(helloManifest, "container", "automatic"))

	// push → deploy, from inside the container.
	r := runContainer(t, ctx, cli, tag, p, ws, sha, map[string]string{"server": p.api})
	if r.code != 0 {
		t.Fatalf("deploy in the container: exit %d\n%s", r.code, r.stdout)
	}
	if r.outputs["revision"] != "hello-00001" || !strings.Contains(r.outputs["image"], "@sha256:") || !strings.HasPrefix(r.outputs["url"], "http://hello.default.localhost:") {
		t.Errorf("outputs = %v", r.outputs)
	}
	for _, want := range []string{"| service/hello | created |", "```mermaid", "hello-00001", r.outputs["image"]} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
	for _, want := range []string{"::add-mask::" + p.gh.Token, "::group::"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the log lacks %q:\n%s", want, r.stdout)
		}
	}
	if code, body := p.get("hello.default.localhost"); code != 200 || body != "Hello container!\n" {
		t.Errorf("GET hello = %d %q", code, body)
	}
	if deps := p.gh.Deployments(repoName); len(deps) != 1 || deps[0].Ref != sha {
		t.Errorf("deployments = %+v", deps)
	}

	// A bad manifest: annotated on its line, the step fails, nothing changes.
	sha = commit(t, ws, map[string]string{"elafros.yaml": strings.Replace(fmt.Sprintf(helloManifest, "x", "automatic"), "timeoutSeconds: 30", "timeoutSeconds: 9000", 1)})
	writes := p.writes.Load()
	r = runContainer(t, ctx, cli, tag, p, ws, sha, map[string]string{"server": p.api})
	if r.code != 1 || !strings.Contains(r.stdout, "::error col=23,file=elafros.yaml,line=18::spec.revisionTemplate.spec.timeoutSeconds") {
		t.Errorf("bad manifest in the container: exit %d\n%s", r.code, r.stdout)
	}
	if w := p.writes.Load() - writes; w != 0 {
		t.Errorf("a bad manifest made %d writes", w)
	}
	if code, body := p.get("hello.default.localhost"); code != 200 || body != "Hello container!\n" {
		t.Errorf("after the bad manifest GET hello = %d %q", code, body)
	}
}

// runContainer starts the action image as the runner does for a push.
func runContainer(t *testing.T, ctx context.Context, cli, image string, p *plane, ws, sha string, inputs map[string]string) result {
	t.Helper()
	temp := t.TempDir() // the runner's _temp
	dirs := map[string]string{}
	for _, d := range []string{"_github_home", "_github_workflow", "_runner_file_commands"} {
		dirs[d] = filepath.Join(temp, d)
		must(t, os.MkdirAll(dirs[d], 0o755))
	}
	payload, err := os.ReadFile("../../../shared/testdata/github-webhooks/push.json")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dirs["_github_workflow"], "event.json"), payload, 0o644))
	id := fmt.Sprint(time.Now().UnixNano())
	outName, summaryName := "set_output_"+id, "step_summary_"+id
	for _, f := range []string{outName, summaryName} {
		must(t, os.WriteFile(filepath.Join(dirs["_runner_file_commands"], f), nil, 0o644))
	}
	chownTree(t, temp)
	chownTree(t, ws)

	args := []string{"run", "--rm", "--network", "host", "--workdir", "/github/workspace",
		"-v", ws + ":/github/workspace", "-v", dirs["_github_home"] + ":/github/home",
		"-v", dirs["_github_workflow"] + ":/github/workflow", "-v", dirs["_runner_file_commands"] + ":/github/file_commands"}
	env := map[string]string{
		"HOME": "/github/home", "GITHUB_ACTIONS": "true", "CI": "true",
		"GITHUB_WORKSPACE": "/github/workspace", "GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": "/github/workflow/event.json",
		"GITHUB_OUTPUT": "/github/file_commands/" + outName, "GITHUB_STEP_SUMMARY": "/github/file_commands/" + summaryName,
		"GITHUB_REPOSITORY": repoName, "GITHUB_SHA": sha, "GITHUB_ACTOR": "Codertocat",
		"GITHUB_API_URL": strings.TrimSuffix(p.gh.URL, "/"), "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "4242",
		"RUNNER_OS": "Linux", "RUNNER_TEMP": temp, "INPUT_GITHUB-TOKEN": p.gh.Token, "INPUT_TIMEOUT": "8m",
		"INPUT_MANIFEST": "elafros.yaml",
	}
	for k, v := range inputs {
		env["INPUT_"+strings.ToUpper(k)] = v
	}
	for k, v := range env {
		args = append(args, "-e", k+"="+v)
	}
	args = append(args, image)
	code, stdout := runCommand(t, exec.CommandContext(ctx, cli, args...))
	out := filepath.Join(dirs["_runner_file_commands"], outName)
	summary := filepath.Join(dirs["_runner_file_commands"], summaryName)
	if os.Geteuid() == 0 {
		for _, f := range []string{out, summary} {
			fi, err := os.Stat(f)
			must(t, err)
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != runnerUID || fi.Mode().Perm()&0o044 != 0o044 {
				t.Errorf("%s: owner %d mode %v after the action; the runner (uid %d) must still own and read it", f, st.Uid, fi.Mode(), runnerUID)
			}
		}
	}
	s, err := os.ReadFile(summary)
	must(t, err)
	if r := p.gh.Refusals(); len(r) > 0 {
		t.Errorf("requests GitHub would refuse: %v", r)
	}
	return result{code: code, stdout: stdout.String(), outputs: parseOutputs(t, out), summary: string(s)}
}

// chownTree gives dir to the runner's uid, as on a hosted runner (only
// possible as root; otherwise the files stay the test's own).
func chownTree(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	must(t, filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, runnerUID, runnerUID)
	}))
}

func dockerRun(t *testing.T, ctx context.Context, cli string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", cli, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// loadGoBase makes the GO_IMAGE base the Dockerfile builds on from this
// machine's Go toolchain: GOROOT at /usr/local/go, /bin/sh with the
// libraries it loads, the golang image's environment; and loads it into
// the daemon. It is tagged by the toolchain's version, so a second run
// reuses it.
func loadGoBase(t *testing.T, ctx context.Context, cli string) string {
	t.Helper()
	tag := "elafros-test/go:" + strings.TrimPrefix(runtime.Version(), "go")
	if exec.CommandContext(ctx, cli, "image", "inspect", tag).Run() == nil {
		return tag
	}
	goroot := goenv(t, "GOROOT")
	files := map[string]string{} // path in the image → file on this machine
	must(t, filepath.WalkDir(goroot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(goroot, path)
		if d.IsDir() && (rel == "test" || rel == ".git" || rel == "api" || rel == "doc") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			files["usr/local/go/"+filepath.ToSlash(rel)] = path
		}
		return nil
	}))
	sh, err := filepath.EvalSymlinks("/bin/sh")
	must(t, err)
	files["bin/sh"] = sh
	ldd, err := exec.CommandContext(ctx, "ldd", sh).Output()
	must(t, err)
	for _, line := range strings.Split(string(ldd), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				must(t, err)
				files[strings.TrimPrefix(f, "/")] = real
			}
		}
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTree(pw, files)) }()
		return pr, nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	must(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer)
	must(t, err)
	img, err = mutate.Config(img, v1.Config{
		Env: []string{"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"GOPATH=/go", "GOTOOLCHAIN=local", "GOLANG_VERSION=" + strings.TrimPrefix(runtime.Version(), "go")},
	})
	must(t, err)
	ref, err := name.NewTag(tag)
	must(t, err)
	path := filepath.Join(t.TempDir(), "go-base.tar")
	must(t, tarball.WriteToFile(path, ref, img))
	dockerRun(t, ctx, cli, "load", "-i", path)
	return tag
}

// writeTree writes files (and their directories, with /tmp sticky and
// world-writable) as one tar stream.
func writeTree(w io.Writer, files map[string]string) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	mkdir := func(d string, mode int64) error {
		if dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode})
	}
	for _, d := range []string{"tmp", "root", "go", "etc"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := mkdir(d, mode); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i := 1; i < len(parts); i++ {
			if err := mkdir(strings.Join(parts[:i], "/"), 0o755); err != nil {
				return err
			}
		}
		f, err := os.Open(files[n])
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: int64(fi.Mode().Perm()), Size: fi.Size()})
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
