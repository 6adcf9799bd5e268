package cli

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/apiserver"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/reconcile/reconciletest"
	"github.com/elafros/elafros/internal/testutil"
)

// apiWithReconciler serves the API over a fresh store with a reconciler
// running continuously behind it (test runtime), as elafros serve does.
func apiWithReconciler(t *testing.T) (string, *reconciletest.Runtime) {
	t.Helper()
	st, err := local.Open(filepath.Join(t.TempDir(), "elafros.db"), local.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	api := apiserver.New(st, nil)
	api.SetInfo("routerPort", "8080")
	srv := httptest.NewServer(api)
	rt := reconciletest.NewRuntime()
	r, err := reconcile.New(st, rt, reconciletest.NewTraffic(), reconciletest.NewBuilder(true), reconcile.Options{DomainSuffix: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx, reconcile.RunOptions{Resync: time.Minute}) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		_ = st.Close()
	})
	return srv.URL, rt
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	s, out, errOut := streams()
	code := Main(args, s)
	return code, out.String(), errOut.String()
}

func TestDeployRevisionsRollout(t *testing.T) {
	url, rt := apiWithReconciler(t)
	srv := "--server=" + url

	code, out, errOut := run(t, "deploy", srv, "--service", "my-service", "--image", "registry.local/app:1", "--env", "FOO=bar", "--env", "HELLO=world", "--git-sha", "33643fc0123", "--deployer", "user1")
	want := "  Deploying app to service [my-service]:\n✓ Starting\n✓ Promoting\n  Done.\n  Deployed to http://my-service.default.localhost:8080\n"
	if code != 0 || out != want {
		t.Fatalf("deploy: exit %d\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	if code, out, _ := run(t, "rollout", srv, "strategy", "manual", "--service", "my-service"); code != 0 || !strings.Contains(out, "strategy manual") {
		t.Fatalf("rollout strategy: %d %s", code, out)
	}
	if code, out, errOut := run(t, "deploy", srv, "--service", "my-service", "--image", "registry.local/app:1", "--env", "HELLO=blurg", "--git-sha", "a6f92d1", "--deployer", "user1"); code != 0 {
		t.Fatalf("second deploy: %d %s %s", code, out, errOut)
	}
	_, out, _ = run(t, "revisions", srv, "list", "--service", "my-service")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "Name") || !strings.Contains(lines[0], "Git SHA") {
		t.Fatalf("revisions list:\n%s", out)
	}
	for i, w := range []string{"next     0%       my-service-00002", "current  100%     my-service-00001"} {
		if !strings.Contains(lines[i+1], w) {
			t.Errorf("row %d = %q, want it to contain %q", i+1, lines[i+1], w)
		}
	}
	if !strings.Contains(lines[1], "user1") || !strings.Contains(lines[1], "a6f92d1") || !strings.Contains(lines[2], "33643fc") || strings.Contains(lines[2], "33643fc0") {
		t.Errorf("deployer / git sha columns:\n%s", out)
	}
	for _, pct := range []string{"5", "50"} {
		if code, out, errOut := run(t, "rollout", srv, "next", "percent", pct, "--service", "my-service"); code != 0 || !strings.Contains(out, pct+"%") {
			t.Fatalf("next percent %s: %d %s %s", pct, code, out, errOut)
		}
	}
	if code, _, errOut := run(t, "rollout", srv, "next", "percent", "120", "--service", "my-service"); code == 0 || !strings.Contains(errOut, "want an integer from 0 to 100") {
		t.Errorf("percent 120: %d %s", code, errOut)
	}
	if code, out, _ := run(t, "rollout", srv, "finish", "--service", "my-service"); code != 0 || !strings.Contains(out, "current  my-service-00002  100%") {
		t.Fatalf("finish: %d\n%s", code, out)
	}
	waitFor(t, func() bool {
		_, out, _ := run(t, "revisions", srv, "list", "--service", "my-service")
		return strings.Contains(out, "current,next  100%")
	})

	// A revision that cannot start: the deploy says why and fails.
	rt.Fail("default", "my-service-00003", "ExitCode:1", "Container failed with: panic: boom")
	code, out, _ = run(t, "deploy", srv, "--service", "my-service", "--image", "registry.local/app:broken", "--timeout", "20s")
	if code != 1 || !strings.Contains(out, "✗ Starting") || !strings.Contains(out, "ExitCode:1: Container failed with: panic: boom") {
		t.Errorf("failed deploy: %d\n%s", code, out)
	}
	// A refusal changes nothing.
	code, _, errOut = run(t, "rollout", srv, "next", "percent", "50", "--service", "my-service")
	if code != 1 || !strings.Contains(errOut, "refused:") || !strings.Contains(errOut, "Nothing was changed.") {
		t.Errorf("refused rollout: %d %s", code, errOut)
	}
}

func TestApplyGetDescribe(t *testing.T) {
	url, _ := apiWithReconciler(t)
	srv := "--server=" + url
	code, out, errOut := run(t, "apply", srv, "-f", "../../examples/function/elafros.yaml")
	if code != 0 || out != "configuration/my-function created\nroute/my-function created\n" {
		t.Fatalf("apply: %d %q %s", code, out, errOut)
	}
	if _, out, _ := run(t, "apply", srv, "-f", "../../examples/function/elafros.yaml"); out != "configuration/my-function unchanged\nroute/my-function unchanged\n" {
		t.Errorf("re-apply: %q", out)
	}
	code, _, errOut = run(t, "apply", srv, "-f", "../manifest/testdata/bad/03-percent-sum.yaml")
	if code != 1 || !strings.Contains(errOut, "03-percent-sum.yaml:8:5: spec.rollout.traffic: the route must have traffic percent sum equal to 100, got 90") {
		t.Errorf("bad apply: %d %s", code, errOut)
	}
	if _, out, _ := run(t, "get", srv, "routes"); !strings.Contains(out, "my-function") || !strings.HasPrefix(out, "NAME") {
		t.Errorf("get routes:\n%s", out)
	}
	if _, out, _ := run(t, "get", srv, "cfg", "my-function", "-o", "json"); !strings.Contains(out, `"kind": "Configuration"`) {
		t.Errorf("get -o json:\n%s", out)
	}
	if _, out, _ := run(t, "describe", srv, "configuration", "my-function"); !strings.Contains(out, "kind: Configuration") || !strings.Contains(out, "Conditions:") {
		t.Errorf("describe:\n%s", out)
	}
	if code, _, errOut := run(t, "get", srv, "widgets"); code != 2 || !strings.Contains(errOut, `unknown kind "widgets"`) {
		t.Errorf("get widgets: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "get", "--server=http://127.0.0.1:1", "services")
	if code != 2 || !strings.Contains(errOut, `start it with "elafros serve"`) {
		t.Errorf("no server: %d %s", code, errOut)
	}
	_ = client.IsUnreachable
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, "the condition", func() (bool, string) { return ok(), "" })
}
