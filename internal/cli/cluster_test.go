package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/kube/kubetest"
	"github.com/elafros/elafros/internal/local/process/processtest"
)

// TestClusterCommands drives a real cluster through the CLI's kubeconfig
// path: install, apply, reconcile --once, get and revisions list.
func TestClusterCommands(t *testing.T) {
	c := kubetest.Start(t)
	if err := kube.InstallCRDs(context.Background(), c.Config, c.GatewayAPICRDs(t)...); err != nil {
		t.Fatal(err)
	}
	reg := processtest.StartRegistry(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg+"/hello:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	kc := "--kubeconfig=" + filepath.Join(c.Dir, "kubeconfig")

	code, out, errOut := run(t, "install", kc)
	if code != 0 || !strings.Contains(out, "✓ CRDs") || !strings.Contains(out, "✓ RBAC") {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	manifest := writeFile(t, t.TempDir(), "elafros.yaml", `apiVersion: elafros.dev/v1alpha1
kind: Service
metadata:
  name: hello
spec:
  revisionTemplate:
    spec:
      container:
        image: `+reg+`/hello:v1
  rollout:
    strategy: automatic
`)
	if code, out, errOut = run(t, "apply", kc, "-f", manifest); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = run(t, "reconcile", kc, "--once", "--timeout=60s", "--gateway=default/public", "--domain-suffix=apps.test",
		"--log-url-template=https://grafana.example/explore?ns={namespace}&rev={name}"); code != 0 || !strings.Contains(out, "✓ converged") {
		t.Fatalf("reconcile --once: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, "get", kc, "revisions", "hello-00001", "-o", "json")
	if code != 0 || !strings.Contains(out, `"logUrl": "https://grafana.example/explore?ns=default\u0026rev=hello-00001"`) {
		t.Errorf("the revision's logUrl from --log-url-template: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, "get", kc, "routes", "hello")
	if code != 0 || !strings.Contains(out, "hello-00001") || !strings.Contains(out, "hello.default.apps.test") {
		t.Fatalf("get routes: exit %d\n%s%s", code, out, errOut)
	}
	d, err := c.Client.AppsV1().Deployments("default").Get(context.Background(), kube.DeploymentName("hello-00001"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if im := d.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(im, reg+"/hello@sha256:") {
		t.Errorf("deployment image %q, want %s/hello pinned by digest", im, reg)
	}

	// Confined to one namespace, the reconciler needs only a RoleBinding
	// there: a ServiceAccount of team-a, bound to the reconciler and
	// deployer roles in team-a alone, deploys with -n team-a and is
	// refused cluster-wide.
	if err := kube.ApplyManifests(context.Background(), c.Config, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: elafros-reconciler, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: elafros-reconciler}
subjects: [{kind: ServiceAccount, name: deployer, namespace: team-a}]
`)); err != nil {
		t.Fatal(err)
	}
	sa := c.ServiceAccountConfig(t, "team-a", "deployer")
	teamKC := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(teamKC, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: deployer, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: deployer}}]
current-context: test
`, sa.Host, sa.BearerToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	team := "--kubeconfig=" + teamKC
	if code, out, errOut = run(t, "apply", team, "-n", "team-a", "-f", manifest); code != 0 {
		t.Fatalf("apply -n team-a as team-a's ServiceAccount: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = run(t, "reconcile", team, "-n", "team-a", "--once", "--timeout=60s", "--gateway=default/public"); code != 0 {
		t.Fatalf("reconcile -n team-a as team-a's ServiceAccount: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = run(t, "get", team, "-n", "team-a", "routes", "hello"); code != 0 || !strings.Contains(out, "hello-00001") {
		t.Fatalf("get routes -n team-a: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = run(t, "reconcile", team, "--once", "--timeout=20s", "--gateway=default/public"); code == 0 || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("reconcile across namespaces as team-a's ServiceAccount: exit %d, stderr %q; want forbidden", code, errOut)
	}

	// Bad flags name themselves and what would be accepted.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"reconcile", kc, "--gateway=public"}, `--gateway "public": want NAMESPACE/NAME`},
		{[]string{"reconcile", kc, "--gateway=default/public", "--mirror=gcr.io"}, `--mirror "gcr.io": want REGISTRY=MIRROR`},
		{[]string{"reconcile", kc}, `required flag(s) "gateway" not set`},
	} {
		code, _, errOut := run(t, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q: want %q", tc.args, code, errOut, tc.want)
		}
	}
}
