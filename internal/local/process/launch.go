package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/elafros/elafros/api/v1alpha1"
)

// defaultPath is the PATH of an image that sets none (as Docker's).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// unsupportedEnv explains why c's environment cannot be built here, or
// returns "".
func unsupportedEnv(c *corev1.Container) string {
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return fmt.Sprintf("env %s uses valueFrom, which needs the kube backend; the local runtime takes only literal values", e.Name)
		}
	}
	if len(c.EnvFrom) > 0 {
		return "envFrom needs the kube backend; the local runtime takes only literal env values"
	}
	return ""
}

// launch is how one run of a revision's process starts.
type launch struct {
	// path is the executable on the host (inside the rootfs).
	path string
	// args is argv; args[0] as the image or revision wrote it.
	args []string
	// dir is the working directory on the host.
	dir string
	env []string
}

// errNotFound marks an executable missing from the image (exit code 127,
// as a shell reports it).
var errNotFound = errors.New("executable file not found")

// newLaunch builds the command for rev from image p with PORT=port.
// Env: the image's, then the revision's literal values (expanding
// $(VAR) as Kubernetes does), then PORT, ELAFROS_REVISION,
// ELAFROS_CONFIGURATION, ELAFROS_CONCURRENCY_MODEL and
// ELAFROS_TIMEOUT_SECONDS. argv: command (or the image entrypoint) and
// args (or the image cmd), $(VAR) expanded from that env.
func newLaunch(p *prepared, rev *v1alpha1.Revision, port int) (*launch, error) {
	c := &rev.Spec.Container
	cfg := p.config.Config

	env := newEnvList()
	for _, kv := range cfg.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env.set(k, v)
		}
	}
	if _, ok := env.get("PATH"); !ok {
		env.set("PATH", defaultPath)
	}
	// Kubernetes expands a value from the container's own earlier entries
	// only.
	own := newEnvList()
	for _, e := range c.Env {
		v := expand(e.Value, own.get)
		own.set(e.Name, v)
		env.set(e.Name, v)
	}
	// The contract every runtime gives (the go-function builder's
	// generated main enforces the model and timeout inside the process).
	for _, e := range v1alpha1.WorkloadEnv(rev, port) {
		env.set(e.Name, e.Value)
	}

	argv := append([]string(nil), cfg.Entrypoint...)
	if len(c.Command) > 0 {
		argv = append([]string(nil), c.Command...)
	}
	if len(c.Args) > 0 {
		argv = append(argv, c.Args...)
	} else if len(c.Command) == 0 {
		// Kubernetes: a container command drops the image's cmd too.
		argv = append(argv, cfg.Cmd...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: the image has no entrypoint or cmd and the revision sets no command", errNotFound)
	}
	for i, a := range argv {
		argv[i] = expand(a, env.get)
	}

	wd := cfg.WorkingDir
	if c.WorkingDir != "" {
		wd = c.WorkingDir
	}
	if wd == "" || !path.IsAbs(wd) {
		wd = path.Join("/", wd)
	}
	dir, err := secureJoin(p.rootfs, wd)
	if err != nil {
		return nil, fmt.Errorf("working directory %s: %w", wd, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("working directory %s: %w", wd, err)
	}
	pathEnv, _ := env.get("PATH")
	exe, err := findExecutable(p.rootfs, wd, pathEnv, argv[0])
	if err != nil {
		return nil, err
	}
	return &launch{path: exe, args: argv, dir: dir, env: env.list()}, nil
}

// findExecutable resolves name as exec would inside root: a name with a
// slash is a path (relative ones from wd), a bare name is looked up in
// pathEnv; every directory is inside root.
func findExecutable(root, wd, pathEnv, name string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !path.IsAbs(p) {
			p = path.Join(wd, p)
		}
		host, err := secureJoin(root, p)
		if err != nil {
			return "", err
		}
		if err := checkExecutable(host); err != nil {
			return "", fmt.Errorf("exec %q in the image: %w", name, err)
		}
		return host, nil
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		if !path.IsAbs(dir) {
			dir = path.Join(wd, dir)
		}
		host, err := secureJoin(root, path.Join(dir, name))
		if err != nil {
			continue
		}
		if checkExecutable(host) == nil {
			return host, nil
		}
	}
	return "", fmt.Errorf("exec %q: %w in the image's PATH %s", name, errNotFound, pathEnv)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path.Base(p))
	}
	return nil
}

// expand replaces $(VAR) with lookup's value as Kubernetes does: "$$" is
// a literal "$", and a reference to an unknown variable stays as written.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// envList is an environment in first-set order, later values winning.
type envList struct {
	keys []string
	vals map[string]string
}

func newEnvList() *envList { return &envList{vals: map[string]string{}} }

func (e *envList) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) get(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}
