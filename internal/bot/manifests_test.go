package bot

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// The deployable files agree with the binary and with config/rbac: the
// Deployment's arguments and environment are what ParseConfig accepts,
// its ServiceAccount exists, and the App manifest subscribes to the
// events the bot handles.
func TestConfigBot(t *testing.T) {
	root := filepath.Join("..", "..", "config")
	var dep *appsv1.Deployment
	for _, f := range []string{"bot/deployment.yaml", "bot/lease.yaml", "bot/service.yaml", "bot/kustomization.yaml", "rbac/kustomization.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var m map[string]any
			if err := yaml.UnmarshalStrict(doc, &m); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if m["kind"] == "Deployment" {
				dep = &appsv1.Deployment{}
				if err := yaml.UnmarshalStrict(doc, dep); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
		}
	}
	if dep == nil {
		t.Fatal("no Deployment in config/bot")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]string{"GITHUB_APP_PRIVATE_KEY_FILE": filepath.Join(t.TempDir(), "key.pem")}
	for _, e := range c.Env {
		if e.Value == "" {
			env[e.Name] = "12" // from the secret: a placeholder that parses
		}
	}
	if err := os.WriteFile(env["GITHUB_APP_PRIVATE_KEY_FILE"], []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(c.Args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the Deployment's args %v: %v", c.Args, err)
	}
	if !cfg.InCluster || cfg.AppID != 12 {
		t.Errorf("config from the Deployment: %+v", cfg)
	}
	sa, err := os.ReadFile(filepath.Join(root, "rbac", "serviceaccounts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sa, []byte("name: "+dep.Spec.Template.Spec.ServiceAccountName+"\n")) {
		t.Errorf("ServiceAccount %s is not in config/rbac", dep.Spec.Template.Spec.ServiceAccountName)
	}

	b, err := os.ReadFile(filepath.Join(root, "bot", "github-app-manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var app struct {
		Events      []string          `json:"default_events"`
		Permissions map[string]string `json:"default_permissions"`
	}
	if err := json.Unmarshal(b, &app); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"issue_comment", "pull_request"} {
		if !slices.Contains(app.Events, ev) {
			t.Errorf("the App manifest does not subscribe to %s", ev)
		}
	}
	if app.Permissions["issues"] != "write" || app.Permissions["members"] != "read" {
		t.Errorf("permissions %v: replies need issues write, approver teams members read", app.Permissions)
	}
}
