package action

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/manifest"
)

// Inputs are the action's inputs (action.yml documents each).
type Inputs struct {
	Manifest    string
	Mode        string
	Server      string
	Kubeconfig  string // the file's contents (a secret)
	Context     string
	Namespace   string
	Registry    string
	Environment string
	Token       string
	Timeout     time.Duration
	DryRun      bool
	// Gateway and DomainSuffix wire the bundled reconciler to a cluster.
	Gateway, DomainSuffix string
	// Service and Rollout are the rollout mode's: a service and "50",
	// "finish" or "abort".
	Service, Rollout string
	// AllowForks lets preview mode build pull requests from forks.
	AllowForks bool
	// Insecure pushes to a plain-HTTP registry (a local one).
	Insecure bool
}

// InputError is an input with a value the action does not accept.
type InputError struct{ Input, Value, Want string }

func (e *InputError) Error() string {
	return fmt.Sprintf("input %s: %q is not accepted; want %s", e.Input, e.Value, e.Want)
}

func readInputs(a *githubactions.Action) (Inputs, error) {
	in := Inputs{
		Manifest:     or(a.GetInput("manifest"), manifest.DefaultFile),
		Mode:         a.GetInput("mode"),
		Server:       a.GetInput("server"),
		Kubeconfig:   a.GetInput("kubeconfig"),
		Context:      a.GetInput("context"),
		Namespace:    or(a.GetInput("namespace"), v1alpha1.DefaultNamespace),
		Registry:     a.GetInput("registry"),
		Environment:  or(a.GetInput("environment"), "production"),
		Token:        a.GetInput("github-token"),
		Gateway:      a.GetInput("gateway"),
		DomainSuffix: or(a.GetInput("domain-suffix"), "example.com"),
		Service:      a.GetInput("service"),
		Rollout:      a.GetInput("rollout"),
	}
	var err error
	if in.Timeout, err = time.ParseDuration(or(a.GetInput("timeout"), "10m")); err != nil || in.Timeout <= 0 {
		return in, &InputError{"timeout", a.GetInput("timeout"), "a positive duration such as 10m or 90s"}
	}
	for name, p := range map[string]*bool{"dry-run": &in.DryRun, "allow-forks": &in.AllowForks, "insecure-registry": &in.Insecure} {
		v := a.GetInput(name)
		if v == "" {
			continue
		}
		if *p, err = strconv.ParseBool(v); err != nil {
			return in, &InputError{name, v, "true or false"}
		}
	}
	if in.Mode != "" && modeOf(in.Mode) == nil {
		return in, &InputError{"mode", in.Mode, "one of " + strings.Join(modeNames(), ", ") + " (or empty: from the event)"}
	}
	if in.Server != "" && !strings.HasPrefix(in.Server, "http://") && !strings.HasPrefix(in.Server, "https://") {
		return in, &InputError{"server", in.Server, "the URL of an elafros API, e.g. http://127.0.0.1:7070"}
	}
	if in.Server != "" && in.Kubeconfig != "" {
		return in, &InputError{"server", in.Server, "either server or kubeconfig, not both"}
	}
	if filepath.IsAbs(in.Manifest) || strings.HasPrefix(filepath.Clean(in.Manifest), "..") {
		return in, &InputError{"manifest", in.Manifest, "a path inside the repository, e.g. elafros.yaml or deploy/elafros.yaml"}
	}
	return in, nil
}

func or(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return strings.TrimSpace(v)
}

// maskSecrets tells the runner to hide every line of the kubeconfig and
// the token before anything could print them (a mask is per line: a
// multi-line secret needs one per line).
func maskSecrets(a *githubactions.Action, in Inputs) {
	for _, s := range []string{in.Kubeconfig, in.Token} {
		for _, line := range strings.Split(s, "\n") {
			if line = strings.TrimSpace(line); len(line) >= 4 {
				a.AddMask(line)
			}
		}
	}
}

// kubeconfigPath is where the cluster's kubeconfig is: the input's
// contents written to a private file, or a KUBECONFIG that an earlier step
// set (as cloud credential actions do), its runner path translated to the
// container's workspace. "" when there is none.
func kubeconfigPath(a *githubactions.Action, in Inputs, tmp string) (string, error) {
	if in.Kubeconfig != "" {
		p := filepath.Join(tmp, "kubeconfig")
		if err := os.WriteFile(p, []byte(in.Kubeconfig), 0o600); err != nil {
			return "", err
		}
		return p, nil
	}
	kc := a.Getenv("KUBECONFIG")
	if kc == "" || in.Server != "" {
		return "", nil
	}
	if _, err := os.Stat(kc); err == nil {
		return kc, nil
	}
	// A container action sees the runner's workspace at GITHUB_WORKSPACE;
	// the host path is RUNNER_WORKSPACE/<repository name>.
	ws, rws := a.Getenv("GITHUB_WORKSPACE"), a.Getenv("RUNNER_WORKSPACE")
	repo := a.Getenv("GITHUB_REPOSITORY")
	if rws != "" && repo != "" {
		host := filepath.Join(rws, repo[strings.LastIndex(repo, "/")+1:])
		if rel, err := filepath.Rel(host, kc); err == nil && !strings.HasPrefix(rel, "..") {
			p := filepath.Join(ws, rel)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("KUBECONFIG is %s, which this container cannot see: write it inside the workspace (%s) or pass the kubeconfig input", kc, ws)
}
