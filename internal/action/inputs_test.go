package action

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-githubactions"
)

func newAction(env map[string]string) (*githubactions.Action, *bytes.Buffer) {
	var out bytes.Buffer
	return githubactions.New(githubactions.WithWriter(&out), githubactions.WithGetenv(func(k string) string { return env[k] })), &out
}

func TestPickMode(t *testing.T) {
	cases := []struct {
		event, mode, rollout, want, err string
	}{
		{event: "push", want: "deploy"},
		{event: "pull_request", want: "preview"},
		{event: "schedule", want: "promote"},
		{event: "workflow_dispatch", want: "deploy"},
		{event: "workflow_dispatch", rollout: "50", want: "rollout"},
		{event: "push", mode: "validate", want: "validate"},
		{event: "issues", err: `event "issues": no mode follows from it`},
	}
	for _, c := range cases {
		got, err := pickMode(Inputs{Mode: c.mode, Rollout: c.rollout}, c.event)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.event, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s/%s/%s: %q %v, want %q", c.event, c.mode, c.rollout, got, err, c.want)
		}
	}
}

func TestReadInputsRefusesBadValues(t *testing.T) {
	cases := map[string]string{
		"INPUT_MODE":     `input mode: "ship" is not accepted; want one of validate, deploy, preview, promote, rollout`,
		"INPUT_TIMEOUT":  `input timeout: "soon" is not accepted`,
		"INPUT_DRY-RUN":  `input dry-run: "yes please" is not accepted; want true or false`,
		"INPUT_SERVER":   `input server: "localhost:7070" is not accepted`,
		"INPUT_MANIFEST": `input manifest: "../elafros.yaml" is not accepted`,
	}
	values := map[string]string{"INPUT_MODE": "ship", "INPUT_TIMEOUT": "soon", "INPUT_DRY-RUN": "yes please", "INPUT_SERVER": "localhost:7070", "INPUT_MANIFEST": "../elafros.yaml"}
	for k, want := range cases {
		a, _ := newAction(map[string]string{k: values[k]})
		if _, err := readInputs(a); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%q: %v, want %q", k, values[k], err, want)
		}
	}
}

func TestMaskEveryLineOfTheKubeconfig(t *testing.T) {
	kc := "apiVersion: v1\nusers:\n- name: ci\n  user:\n    token: s3cr3t-token-value\n"
	a, out := newAction(map[string]string{"INPUT_KUBECONFIG": kc, "INPUT_GITHUB-TOKEN": "ghp_abc123"})
	in, err := readInputs(a)
	if err != nil {
		t.Fatal(err)
	}
	maskSecrets(a, in)
	for _, want := range []string{"::add-mask::token: s3cr3t-token-value", "::add-mask::apiVersion: v1", "::add-mask::ghp_abc123"} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("no mask %q in:\n%s", want, out)
		}
	}
}

func TestKubeconfigPath(t *testing.T) {
	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, ".kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, ".kube", "config"), []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KUBECONFIG": "/home/runner/work/Hello-World/Hello-World/.kube/config", "GITHUB_WORKSPACE": ws,
		"RUNNER_WORKSPACE": "/home/runner/work/Hello-World", "GITHUB_REPOSITORY": "Codertocat/Hello-World"}
	a, _ := newAction(env)
	got, err := kubeconfigPath(a, Inputs{}, t.TempDir())
	if err != nil || got != filepath.Join(ws, ".kube", "config") {
		t.Errorf("translated KUBECONFIG = %q, %v; want the workspace's .kube/config", got, err)
	}
	env["KUBECONFIG"] = "/home/runner/.kube/config" // outside the workspace: the container cannot see it
	if _, err := kubeconfigPath(a, Inputs{}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "cannot see") {
		t.Errorf("KUBECONFIG outside the workspace: %v, want an explanation", err)
	}
	tmp := t.TempDir()
	got, err = kubeconfigPath(a, Inputs{Kubeconfig: "apiVersion: v1\n"}, tmp)
	if err != nil || got != filepath.Join(tmp, "kubeconfig") {
		t.Errorf("kubeconfig input: %q, %v", got, err)
	}
	if fi, err := os.Stat(got); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig file mode: %v %v, want 0600", fi.Mode(), err)
	}
}

func TestValidateMode(t *testing.T) {
	ws := t.TempDir()
	summary := filepath.Join(t.TempDir(), "summary")
	if err := os.WriteFile(summary, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(ws, "elafros.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"INPUT_MODE": "validate", "GITHUB_WORKSPACE": ws, "GITHUB_STEP_SUMMARY": summary}
	write("apiVersion: elafros.dev/v1alpha1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  revisionTemplate:\n    spec:\n      container:\n        image: img\n")
	a, out := newAction(env)
	if code := Run(t.Context(), a, Options{}); code != 0 {
		t.Fatalf("valid: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(summary); !strings.Contains(string(b), "`elafros.yaml` is valid: 1 object(s).") {
		t.Errorf("summary = %q", b)
	}
	write("apiVersion: elafros.dev/v1alpha1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  revisionTemplate:\n    spec:\n      container:\n        image: img\n      timeoutSeconds: 0\n")
	a, out = newAction(env)
	if code := Run(t.Context(), a, Options{}); code != 1 || !strings.Contains(out.String(), "::error col=23,file=elafros.yaml,line=10::spec.revisionTemplate.spec.timeoutSeconds") {
		t.Errorf("invalid: exit %d\n%s", code, out)
	}
}
