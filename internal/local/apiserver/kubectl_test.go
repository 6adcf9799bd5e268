package apiserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/local/process/processtest"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/testutil"
)

// kubectlEnv is a real kubectl (the one hack/cluster/build.sh builds)
// pointed at an in-process elafros serve.
type kubectlEnv struct {
	t                    *testing.T
	bin, kubeconfig, tmp string
	srv                  *serve.Server
}

func startKubectl(t *testing.T) *kubectlEnv {
	t.Helper()
	bin := filepath.Join(kubetest.BinDir(), "kubectl")
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("kubectl is not built (%v): run bash hack/cluster/build.sh", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	srv, err := serve.Start(context.Background(), serve.Options{
		DataDir: t.TempDir(), APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		NoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tmp := t.TempDir()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: elafros
  cluster:
    server: `+srv.APIURL+`
users:
- name: me
  user: {}
contexts:
- name: elafros
  context:
    cluster: elafros
    user: me
    namespace: default
current-context: elafros
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubectlEnv{t: t, bin: bin, kubeconfig: kubeconfig, tmp: tmp, srv: srv}
}

func (e *kubectlEnv) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"--kubeconfig", e.kubeconfig, "--cache-dir", filepath.Join(e.tmp, "cache")}, args...)...)
	cmd.Env = []string{"HOME=" + e.tmp, "PATH=" + os.Getenv("PATH")}
	return cmd
}

// run runs kubectl and returns its output; it fails the test when kubectl
// fails.
func (e *kubectlEnv) run(args ...string) string {
	e.t.Helper()
	out, err := e.try(args...)
	if err != nil {
		e.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs kubectl and returns its output and error.
func (e *kubectlEnv) try(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 60*time.Second)
	defer cancel()
	out, err := e.cmd(ctx, args...).CombinedOutput()
	return string(out), err
}

func (e *kubectlEnv) file(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.tmp, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// eventually retries f until it returns "" or the deadline passes.
func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, what, func() (bool, string) {
		msg := f()
		return msg == "", msg
	})
}

func contains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// TestKubectl drives elafros serve with the real kubectl, each verb a
// person would use, and checks what kubectl prints: apply (validated by
// the server, no --validate=false), get with the CRDs' printer columns,
// by singular, short name and category, describe, explain, patch, get -w
// and delete.
func TestKubectl(t *testing.T) {
	e := startKubectl(t)
	image := processtest.BuildImage(t, e.srv.RegistryAddr, "kubectl/server", processtest.ServerDir())

	// The seed's scenario 1: a Route and a Configuration, applied as they are.
	seed := e.file("seed.yaml", `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: my-service
spec:
  rollout:
    traffic:
    - configurationName: my-service
      percent: 100
---
apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service
spec:
  revisionTemplate:
    metadata:
      labels:
        elafros.dev/type: "app"
    spec:
      container:
        image: `+image+`
        env:
        - name: FOO
          value: bar
`)
	out := e.run("apply", "-f", seed)
	contains(t, "kubectl apply", out, "route.elafros.dev/my-service created", "configuration.elafros.dev/my-service created")
	out = e.run("apply", "-f", seed)
	contains(t, "kubectl apply (again)", out, "route.elafros.dev/my-service unchanged", "configuration.elafros.dev/my-service unchanged")

	eventually(t, "route serving my-service-00001", func() string {
		out, err := e.try("get", "route", "my-service", "-o", `jsonpath={.status.traffic[0].revisionName}/{.status.conditions[?(@.type=="RolloutComplete")].status}`)
		if err != nil || out != "my-service-00001/True" {
			return fmt.Sprintf("%v %s", err, out)
		}
		return ""
	})

	t.Run("get", func(t *testing.T) {
		out := e.run("get", "configurations,revisions,routes")
		t.Logf("kubectl get:\n%s", out)
		contains(t, "kubectl get", out,
			"LATESTCREATED", "LATESTREADY", "REASON", // configuration
			"CONFIGURATION", "GENERATION", // revision
			"DOMAIN", "REVISIONS", "PERCENTS", "READY", "AGE", // route
			"configuration.elafros.dev/my-service", "revision.elafros.dev/my-service-00001", "route.elafros.dev/my-service",
			"my-service.default.localhost", "True")
		// One row of the route, with its columns in order.
		row := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "route.elafros.dev/my-service ") {
				row = strings.Join(strings.Fields(l)[:5], " ")
			}
		}
		if want := "route.elafros.dev/my-service my-service.default.localhost my-service-00001 100 True"; row != want {
			t.Errorf("route row %q, want %q", row, want)
		}
		for _, name := range []string{"route", "routes", "rt", "route.elafros.dev"} {
			if out := e.run("get", name, "my-service", "--no-headers"); !strings.HasPrefix(out, "my-service ") {
				t.Errorf("kubectl get %s my-service: %q", name, out)
			}
		}
		out = e.run("get", "elafros")
		contains(t, "kubectl get elafros (the category)", out, "configuration.elafros.dev/my-service", "revision.elafros.dev/my-service-00001", "route.elafros.dev/my-service")
		out = e.run("get", "cfg,rev", "-o", "name")
		contains(t, "kubectl get cfg,rev -o name", out, "configuration.elafros.dev/my-service", "revision.elafros.dev/my-service-00001")
	})

	t.Run("describe", func(t *testing.T) {
		// Columns are aligned with spaces: compare with single spaces.
		out := strings.Join(strings.Fields(e.run("describe", "route", "my-service")), " ")
		contains(t, "kubectl describe", out, "Name: my-service", "Namespace: default", "API Version: elafros.dev/v1alpha1", "Kind: Route",
			"Traffic: Configuration Name: my-service Percent: 100", "Domain: my-service.default.localhost", "Revision Name: my-service-00001")
	})

	t.Run("explain", func(t *testing.T) {
		out := e.run("explain", "route.spec")
		contains(t, "kubectl explain route.spec", out, "GROUP:      elafros.dev", "KIND:       Route", "VERSION:    v1alpha1", "FIELD: spec", "rollout")
		out = e.run("explain", "route.spec.rollout.traffic")
		contains(t, "kubectl explain route.spec.rollout.traffic", out, "FIELD: traffic", "percent", "revisionName", "configurationName")
		out = e.run("explain", "configuration.metadata")
		contains(t, "kubectl explain configuration.metadata", out, "ObjectMeta", "labels")
	})

	t.Run("apply refuses an unknown field", func(t *testing.T) {
		bad := e.file("bad.yaml", `apiVersion: elafros.dev/v1alpha1
kind: Route
metadata:
  name: typo
spec:
  rollout:
    Traffic:
    - configurationName: my-service
      percent: 100
`)
		out, err := e.try("apply", "-f", bad)
		if err == nil {
			t.Fatalf("kubectl apply of an unknown field succeeded:\n%s", out)
		}
		contains(t, "kubectl apply of a misspelt field", out, "spec.rollout.Traffic", `did you mean "traffic"`)
		if _, err := e.try("get", "route", "typo"); err == nil {
			t.Error("the refused route exists")
		}
	})

	t.Run("patch, apply and get -w", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		w := e.cmd(ctx, "get", "routes", "-w", "--no-headers")
		stdout, err := w.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		w.Stderr = w.Stdout
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = w.Wait() }()
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		next := func(what string) string {
			t.Helper()
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("kubectl get -w ended before %s", what)
				}
				return l
			case <-ctx.Done():
				t.Fatalf("kubectl get -w printed no line for %s", what)
			}
			return ""
		}
		if l := next("the first row"); !strings.HasPrefix(l, "my-service ") || !strings.Contains(l, "100") {
			t.Fatalf("first row: %q", l)
		}

		// A named target at 0% (merge patch, as on a cluster), then the
		// same without --type (a cluster refuses strategic merge patches
		// for custom resources; this server merges them).
		out := e.run("patch", "route", "my-service", "--type=merge", "-p",
			`{"spec":{"rollout":{"traffic":[{"configurationName":"my-service","percent":100,"name":"current"},{"revisionName":"my-service-00001","percent":0,"name":"pinned"}]}}}`)
		contains(t, "kubectl patch --type=merge", out, "route.elafros.dev/my-service patched")
		eventually(t, "the patched route's status", func() string {
			out, _ := e.try("get", "route", "my-service", "-o", `jsonpath={.status.traffic[*].name}`)
			if out != "current pinned" {
				return out
			}
			return ""
		})
		if l := next("the patch"); !strings.HasPrefix(l, "my-service ") {
			t.Errorf("row after the patch: %q", l)
		}

		// A new revision by apply (a client-side three-way merge patch).
		changed := e.file("changed.yaml", `apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service
spec:
  revisionTemplate:
    metadata:
      labels:
        elafros.dev/type: "app"
    spec:
      container:
        image: `+image+`
        env:
        - name: FOO
          value: baz
`)
		contains(t, "kubectl apply of a change", e.run("apply", "-f", changed), "configuration.elafros.dev/my-service configured")
		eventually(t, "my-service-00002 Ready", func() string {
			out, _ := e.try("get", "revision", "my-service-00002", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if out != "True" {
				return out
			}
			return ""
		})
		if out := e.run("get", "configuration", "my-service", "-o", "jsonpath={.spec.revisionTemplate.spec.container.env[0].value}"); out != "baz" {
			t.Errorf("env after apply: %q, want baz", out)
		}
		out = e.run("patch", "route", "my-service", "-p", `{"metadata":{"labels":{"team":"a"}}}`)
		contains(t, "kubectl patch (strategic)", out, "route.elafros.dev/my-service patched")
		if out := e.run("get", "routes", "-l", "team=a", "-o", "name"); out != "route.elafros.dev/my-service\n" {
			t.Errorf("routes labelled team=a: %q", out)
		}
	})

	t.Run("delete", func(t *testing.T) {
		out := e.run("delete", "route", "my-service")
		contains(t, "kubectl delete", out, `route.elafros.dev "my-service" deleted`)
		out, err := e.try("get", "route", "my-service")
		if err == nil {
			t.Fatalf("the deleted route is still there:\n%s", out)
		}
		contains(t, "kubectl get of a deleted route", out, `routes.elafros.dev "my-service" not found`)
	})
}
