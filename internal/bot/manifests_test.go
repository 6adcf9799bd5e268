package bot

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The deployable files agree with the binary and with config/rbac: the
// Deployment's arguments and environment are what ParseConfig accepts,
// its ServiceAccount exists, and the App manifest subscribes to the
// events the bot handles.
func TestConfigBot(t *testing.T) {
	root := filepath.Join("..", "..", "config")
	var dep *appsv1.Deployment
	var roles []rbacv1.Role
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
			switch m["kind"] {
			case "Deployment":
				dep = &appsv1.Deployment{}
				if err := yaml.UnmarshalStrict(doc, dep); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			case "Role":
				var r rbacv1.Role
				if err := yaml.UnmarshalStrict(doc, &r); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				roles = append(roles, r)
			}
		}
	}
	if dep == nil {
		t.Fatal("no Deployment in config/bot")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]string{"GITHUB_APP_PRIVATE_KEY_FILE": filepath.Join(t.TempDir(), "key.pem")}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = dep.Namespace // the downward API
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "elafros-bot-7d9f-abcde"
		case e.Value == "":
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
	if !cfg.InCluster || cfg.AppID != 12 || !cfg.Reconcile || cfg.Gateway == "" || cfg.JournalNamespace != dep.Namespace || cfg.Identity == "" {
		t.Errorf("config from the Deployment: %+v; want in-cluster, reconciling, the journal in %s, the pod's name as identity", cfg, dep.Namespace)
	}
	// Two replicas share the journal in the API server: no volume holds
	// state (the one there is the App's key), and a rollout need not
	// stop one replica before starting the next.
	if r := dep.Spec.Replicas; r == nil || *r != 2 {
		t.Errorf("replicas %v, want 2", r)
	}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			t.Errorf("volume %s: the bot keeps no state on a volume", v.Name)
		}
	}
	if dep.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		t.Error("Recreate strategy: with a shared journal, a rolling update keeps one replica answering")
	}
	// The Role in the bot's namespace allows what the journal and the
	// leader election do (the cluster test runs them as this
	// ServiceAccount, so RBAC is enforced there too).
	need := map[string][]string{"coordination.k8s.io/leases": {"get", "create", "update"},
		"/configmaps": {"get", "list", "watch", "create", "update", "delete"}}
	for res, verbs := range need {
		for _, verb := range verbs {
			ok := false
			for _, r := range roles {
				for _, rule := range r.Rules {
					for _, g := range rule.APIGroups {
						for _, rr := range rule.Resources {
							if g+"/"+rr == res && slices.Contains(rule.Verbs, verb) && r.Namespace == dep.Namespace {
								ok = true
							}
						}
					}
				}
			}
			if !ok {
				t.Errorf("no Role in %s lets the bot %s %s", dep.Namespace, verb, res)
			}
		}
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
