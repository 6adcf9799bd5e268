package process

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestNewLaunch(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := unpackTar(bytes.NewReader(makeTar(t,
		file("app", "x", 0o755),
		file("usr/local/bin/tool", "x", 0o755),
		symlink("usr/bin/python", "/usr/local/bin/tool"),
		file("srv/run.sh", "x", 0o755),
		file("data", "not executable", 0o644),
	)), root); err != nil {
		t.Fatal(err)
	}
	image := v1.Config{
		Entrypoint: []string{"/app"},
		Cmd:        []string{"--default"},
		Env:        []string{"PATH=/usr/bin:/usr/local/bin", "LANG=C", "PORT=1"},
		WorkingDir: "/srv",
	}
	for _, tc := range []struct {
		name     string
		image    *v1.Config // default: image
		c        corev1.Container
		wantPath string
		wantArgs []string
		wantDir  string
		wantEnv  []string // default: the image's, then PORT and ELAFROS_*
		wantErr  string
	}{{
		name:     "image entrypoint and cmd",
		wantPath: "app",
		wantArgs: []string{"/app", "--default"},
		wantDir:  "srv",
	}, {
		name:     "args replace cmd",
		c:        corev1.Container{Args: []string{"--port=$(PORT)", "$$(PORT)", "$(NOPE)"}},
		wantPath: "app",
		wantArgs: []string{"/app", "--port=8080", "$(PORT)", "$(NOPE)"},
		wantDir:  "srv",
	}, {
		name:     "command drops the image cmd; bare name through PATH and a symlink",
		c:        corev1.Container{Command: []string{"python"}, WorkingDir: "/work"},
		wantPath: "usr/local/bin/tool",
		wantArgs: []string{"python"},
		wantDir:  "work",
	}, {
		name:     "relative command from the working dir",
		c:        corev1.Container{Command: []string{"./run.sh"}, Args: []string{"a"}},
		wantPath: "srv/run.sh",
		wantArgs: []string{"./run.sh", "a"},
		wantDir:  "srv",
	}, {
		name: "revision env after the image's, expanded from its own earlier entries",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "LANG", Value: "en"},
			{Name: "A", Value: "a"},
			{Name: "B", Value: "$(A)-$(LANG)-$(PATH)"},
			{Name: "PORT", Value: "9"},
		}},
		wantPath: "app",
		wantArgs: []string{"/app", "--default"},
		wantDir:  "srv",
		wantEnv: []string{"PATH=/usr/bin:/usr/local/bin", "LANG=en", "PORT=8080", "A=a", "B=a-en-$(PATH)",
			"ELAFROS_REVISION=hello-00001", "ELAFROS_CONFIGURATION=cfg", "ELAFROS_CONCURRENCY_MODEL=Multi"},
	}, {
		name:     "no PATH in the image",
		image:    &v1.Config{Entrypoint: []string{"/app"}},
		wantPath: "app",
		wantArgs: []string{"/app"},
		wantDir:  "",
		wantEnv:  []string{"PATH=" + defaultPath, "PORT=8080", "ELAFROS_REVISION=hello-00001", "ELAFROS_CONFIGURATION=cfg", "ELAFROS_CONCURRENCY_MODEL=Multi"},
	}, {
		name:    "missing command",
		c:       corev1.Container{Command: []string{"node"}},
		wantErr: `exec "node": executable file not found in the image's PATH /usr/bin:/usr/local/bin`,
	}, {
		name:    "not executable",
		c:       corev1.Container{Command: []string{"/data"}},
		wantErr: `exec "/data" in the image: data is not an executable file`,
	}, {
		name:    "nothing to run",
		image:   &v1.Config{},
		wantErr: "the image has no entrypoint or cmd",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := image
			if tc.image != nil {
				cfg = *tc.image
			}
			rev := revision("hello-00001")
			rev.Spec.Container = tc.c
			l, err := newLaunch(&prepared{rootfs: root, config: &v1.ConfigFile{Config: cfg}}, rev, 8080)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("newLaunch: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newLaunch: %v", err)
			}
			wantEnv := tc.wantEnv
			if wantEnv == nil {
				wantEnv = []string{"PATH=/usr/bin:/usr/local/bin", "LANG=C", "PORT=8080", "ELAFROS_REVISION=hello-00001", "ELAFROS_CONFIGURATION=cfg", "ELAFROS_CONCURRENCY_MODEL=Multi"}
			}
			want := launch{path: filepath.Join(root, tc.wantPath), args: tc.wantArgs, dir: filepath.Join(root, tc.wantDir), env: wantEnv}
			if diff := cmp.Diff(want, *l, cmp.AllowUnexported(launch{})); diff != "" {
				t.Errorf("launch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"A": "x", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":       "plain",
		"$(A)":        "x",
		"a$(A)b$(A)":  "axbx",
		"$$(A)":       "$(A)",
		"$$":          "$",
		"$(B)":        "$(B)",
		"$(EMPTY)!":   "!",
		"$(A":         "$(A",
		"cost $5":     "cost $5",
		"trailing $":  "trailing $",
		"$$$(A)":      "$x",
		"$(A)$(B)$$x": "x$(B)$x",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTailLastLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		writes []string
		max    int
		want   string
	}{
		{name: "empty", want: ""},
		{name: "one line", writes: []string{"hello\n"}, want: "hello"},
		{name: "no newline", writes: []string{"a\nb"}, want: "b"},
		{name: "blank lines after", writes: []string{"SyntaxError: x\n", "\n  \r\n"}, want: "SyntaxError: x"},
		{name: "split writes", writes: []string{"first\ncrash", "ing on request\n"}, want: "crashing on request"},
		{name: "only blanks", writes: []string{"\n\n"}, want: ""},
		{name: "beyond the window", writes: []string{strings.Repeat("x", 100) + "\n", "tail\n"}, max: 8, want: "tail"},
		{name: "rolled over many times", writes: repeat("line\n", 100), max: 16, want: "line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &tailBuffer{max: tc.max}
			if tb.max == 0 {
				tb.max = tailSize
			}
			for _, w := range tc.writes {
				_, _ = tb.Write([]byte(w))
			}
			if got := tb.lastLine(); got != tc.want {
				t.Errorf("lastLine = %q, want %q", got, tc.want)
			}
			if len(tb.buf) > 2*tb.max {
				t.Errorf("buffer holds %d bytes, want at most %d", len(tb.buf), 2*tb.max)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestReadinessProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if r.Header.Get("X-Probe") != "yes" || r.Host != "probe.local" {
				http.Error(w, "headers", http.StatusBadRequest)
			}
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/fail":
			http.Error(w, "no", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	port, err := strconv.Atoi(srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path:        path,
			Port:        intstr.FromInt32(1), // ignored: PORT is probed
			HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "probe.local"}},
		}}}
	}
	for _, tc := range []struct {
		name  string
		port  int
		probe *corev1.Probe
		want  bool
	}{
		{name: "tcp", port: port, want: true},
		{name: "tcp closed port", port: closedPort(t), want: false},
		{name: "tcp socket probe is tcp", port: port, probe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}}, want: true},
		{name: "http 200 with headers", port: port, probe: get("/healthz"), want: true},
		{name: "http 302", port: port, probe: get("moved"), want: true},
		{name: "http 404", port: port, probe: get("/missing"), want: false},
		{name: "http 503", port: port, probe: get("/fail"), want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ready(context.Background(), tc.port, tc.probe); got != tc.want {
				t.Errorf("ready = %v, want %v", got, tc.want)
			}
		})
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	port, release, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return port
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{opts: Options{LogDir: "l"}, want: "Options.CacheDir is required"},
		{opts: Options{CacheDir: "c"}, want: "Options.LogDir is required"},
		{opts: Options{CacheDir: "c", LogDir: "l", MinBackoff: 2e9, MaxBackoff: 1e9}, want: "MaxBackoff (1s) must be at least MinBackoff (2s)"},
	} {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.opts, err, tc.want)
		}
	}
	o, err := Options{CacheDir: "c", LogDir: "l"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(o.StartTimeout, o.MinBackoff, o.MaxBackoff, o.GracePeriod, filepath.IsAbs(o.CacheDir), filepath.IsAbs(o.LogDir))
	if want := "1m0s 500ms 30s 10s true true"; got != want {
		t.Errorf("defaults = %s, want %s", got, want)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	ref, err := rt.parseReference("localhost/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got := ref.Context().Scheme(); got != "http" {
		t.Errorf("scheme of localhost = %q, want http", got)
	}
}
