package kube_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKubectl runs the real kubectl against the test cluster: the CRDs'
// printer columns show latest ready, traffic, domain and readiness, and
// kubectl explain reads the schema's descriptions.
func TestKubectl(t *testing.T) {
	e := setup(t)
	kubectl := filepath.Join(e.c.BinDir, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("kubectl is not built (%v): run bash hack/cluster/build.sh", err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", filepath.Join(e.c.Dir, "kubeconfig")}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startReconciler(t, ctx, e, e.action, time.Minute)
	t.Cleanup(cancel)
	app(t, ctx, r.store, "shown")
	eventually(t, "converged", 60*time.Second, func() error { return converged(ctx, e, r.store, "shown", 1) })

	out := run("get", "configurations,revisions,routes,services.elafros.dev", "-n", "default")
	t.Logf("kubectl get:\n%s", out)
	for _, want := range []string{
		"LATESTCREATED", "LATESTREADY", "shown-00001", // configuration
		"CONFIGURATION", "GENERATION", // revision
		"DOMAIN", "REVISIONS", "PERCENTS", "shown.default.example.com", "100", // route
		"READY", "True",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get output lacks %q", want)
		}
	}
	// The seed's body as it is (no container name) applies with kubectl.
	body := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(body, []byte(`apiVersion: elafros.dev/v1alpha1
kind: Configuration
metadata:
  name: my-service
  namespace: default
spec:
  revisionTemplate:
    metadata:
      labels:
        elafros.dev/type: "app"
    spec:
      container:
        image: gcr.io/elafros-samples/my-service:v1
        env:
        - name: FOO
          value: bar
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run("apply", "-f", body)
	if got := run("get", "configuration", "my-service", "-n", "default", "-o", "jsonpath={.spec.revisionTemplate.spec.container.name}"); got != "user-container" {
		t.Errorf("container name of a body without one: %q, want user-container (the CRD's default)", got)
	}

	out = run("explain", "route.spec.rollout.traffic")
	t.Logf("kubectl explain:\n%s", out)
	for _, want := range []string{"GROUP:      elafros.dev", "FIELD: traffic", "percent", "revisionName", "configurationName"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain output lacks %q", want)
		}
	}
}
