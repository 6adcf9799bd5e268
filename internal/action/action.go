package action

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github"
	"github.com/elafros/elafros/internal/manifest"
	"github.com/elafros/elafros/internal/rollout"
)

// mode is one of the action's modes.
type mode struct {
	name string
	// needsBackend: the mode talks to a cluster or an elafros API.
	needsBackend bool
	run          func(r *run) error
}

// modes is the table of modes, in the order action.yml lists them.
var modes = []mode{
	{"validate", false, (*run).validate},
	{"deploy", true, (*run).deploy},
	{"preview", true, (*run).preview},
	{"promote", true, (*run).promote},
	{"rollout", true, (*run).rollout},
}

func modeOf(name string) *mode {
	for i := range modes {
		if modes[i].name == name {
			return &modes[i]
		}
	}
	return nil
}

func modeNames() []string {
	var out []string
	for _, m := range modes {
		out = append(out, m.name)
	}
	return out
}

// pickMode is the mode an event means when the mode input is empty:
// push → deploy; pull_request → preview; schedule → promote;
// workflow_dispatch → rollout when the rollout input is set, else deploy.
func pickMode(in Inputs, event string) (string, error) {
	if in.Mode != "" {
		return in.Mode, nil
	}
	switch event {
	case "push":
		return "deploy", nil
	case "pull_request", "pull_request_target":
		return "preview", nil
	case "schedule":
		return "promote", nil
	case "workflow_dispatch":
		if in.Rollout != "" {
			return "rollout", nil
		}
		return "deploy", nil
	}
	return "", fmt.Errorf("event %q: no mode follows from it; set the mode input to one of %s", event, strings.Join(modeNames(), ", "))
}

// Options are what a test (or cmd/action) may change.
type Options struct {
	// HTTPClient reaches GitHub's API (default: http.DefaultClient's transport).
	GitHubOptions []github.Option
	// Logger receives the reconciler's and builder's logs (default: the
	// action's debug log).
	Logger *slog.Logger
}

// run is one run of the action.
type run struct {
	ctx    context.Context
	a      *githubactions.Action
	in     Inputs
	gh     *githubactions.GitHubContext
	mode   string
	repo   github.Repo
	ws     string // the workspace (repository checkout)
	tmp    string
	be     *backend
	dc     *deploy.Client
	ghc    *github.Client // nil without a token
	logger *slog.Logger
	opts   Options

	// what the run found, for outputs and the summary
	summary []string
	outputs map[string]string
}

// Run runs the action and returns its exit code: 0 done, 1 failed (a bad
// manifest, a refused rollout, a revision that cannot start), 2 misused (a
// bad input).
func Run(ctx context.Context, a *githubactions.Action, opts Options) int {
	in, err := readInputs(a)
	maskSecrets(a, in) // first, whatever else failed
	if err != nil {
		a.Errorf("%v", err)
		return 2
	}
	gh, err := a.Context()
	if err != nil {
		a.Errorf("reading the workflow's context: %v", err)
		return 2
	}
	name, err := pickMode(in, gh.EventName)
	if err != nil {
		a.Errorf("%v", err)
		return 2
	}
	r := &run{ctx: ctx, a: a, in: in, gh: gh, mode: name, opts: opts, outputs: map[string]string{}}
	r.logger = opts.Logger
	if r.logger == nil {
		r.logger = slog.New(slog.NewTextHandler(&debugWriter{a}, nil))
	}
	r.ws = or(gh.Workspace, ".")
	if gh.Repository != "" {
		if r.repo, err = github.ParseRepo(gh.Repository); err != nil {
			a.Errorf("GITHUB_REPOSITORY: %v", err)
			return 2
		}
	}
	code := r.execute(modeOf(name))
	r.finish()
	return code
}

func (r *run) execute(m *mode) int {
	var err error
	if r.tmp, err = os.MkdirTemp("", "elafros-action-"); err != nil {
		r.a.Errorf("%v", err)
		return 2
	}
	defer os.RemoveAll(r.tmp)
	if m.needsBackend {
		kc, err := kubeconfigPath(r.a, r.in, r.tmp)
		if err != nil {
			r.a.Errorf("%v", err)
			return 2
		}
		if r.be, err = connect(r.ctx, r.in, kc, r.logger); err != nil {
			r.a.Errorf("%v", err)
			return 2
		}
		actor := or(r.gh.Actor, "github-actions")
		r.dc = deploy.New(r.be.store, r.in.Namespace, deploy.WithActor(actor, fmt.Sprintf("action %s (%s)", r.mode, or(r.gh.EventName, "manual"))), deploy.WithEvents(r.be.events, func(err error) { r.a.Warningf("%v", err) }))
		if r.in.Token != "" && r.repo.Name != "" {
			opts := append([]github.Option{github.WithAPIURL(or(r.gh.APIURL, "https://api.github.com"))}, r.opts.GitHubOptions...)
			if r.ghc, err = github.New(r.in.Token, opts...); err != nil {
				r.a.Errorf("input github-token: %v", err)
				return 2
			}
		}
	}
	err = m.run(r)
	var refused *rollout.RefusedError
	var failed *deploy.FailedError
	var bad *badManifest
	var input *InputError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &input):
		r.a.Errorf("%v", err)
		return 2
	case errors.As(err, &bad):
		return 1 // annotated on its lines already
	case errors.As(err, &refused):
		r.a.Errorf("refused: %s. Nothing was changed.", refused.Reason)
		r.note("**Refused:** " + refused.Reason + ". Nothing was changed.")
		return 1
	case errors.As(err, &failed):
		r.a.Errorf("revision %s cannot become Ready: %s: %s", failed.Revision, failed.Reason, failed.Detail)
		r.note(fmt.Sprintf("**Failed:** revision `%s` cannot become Ready: %s\n\n```\n%s\n```", failed.Revision, failed.Reason, failed.Detail))
		return 1
	default:
		r.a.Errorf("%v", err)
		r.note("**Failed:** " + err.Error())
		return 1
	}
}

// debugWriter sends log lines to the runner's debug log.
type debugWriter struct{ a *githubactions.Action }

func (d *debugWriter) Write(p []byte) (int, error) {
	d.a.Debugf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// badManifest is a manifest with errors, each annotated on its line.
type badManifest struct{ n int }

func (b *badManifest) Error() string { return fmt.Sprintf("the manifest has %d errors", b.n) }

// load reads the manifest, annotating each error on its file:line:col.
func (r *run) load() (*manifest.Manifest, error) {
	path := filepath.Join(r.ws, r.in.Manifest)
	m, err := manifest.Load(path)
	var errs manifest.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			msg := e.Message
			if e.Field != "" {
				msg = e.Field + ": " + msg
			}
			r.a.WithFieldsMap(map[string]string{"file": r.in.Manifest, "line": strconv.Itoa(e.Line), "col": strconv.Itoa(e.Column)}).Errorf("%s", msg)
		}
		r.note(fmt.Sprintf("`%s` has %d error(s); they are annotated on the file. Nothing was changed.", r.in.Manifest, len(errs)))
		return nil, &badManifest{len(errs)}
	}
	if err != nil {
		r.a.WithFieldsMap(map[string]string{"file": r.in.Manifest, "line": "1", "col": "1"}).Errorf("%v", err)
		r.note(fmt.Sprintf("`%s` cannot be read: %v. Nothing was changed.", r.in.Manifest, err))
		return nil, &badManifest{1}
	}
	return m, nil
}

func (r *run) validate() error {
	m, err := r.load()
	if err != nil {
		return err
	}
	r.note(fmt.Sprintf("`%s` is valid: %d object(s).", r.in.Manifest, len(m.Documents)))
	return nil
}

// note adds a paragraph to the job summary.
func (r *run) note(md string) { r.summary = append(r.summary, md) }

// finish writes the outputs and the job summary.
func (r *run) finish() {
	keys := make([]string, 0, len(r.outputs))
	for k := range r.outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if r.a.Getenv("GITHUB_OUTPUT") != "" {
		for _, k := range keys {
			if err := setOutput(r.a, k, r.outputs[k]); err != nil {
				r.a.Errorf("output %s: %v", k, err)
			}
		}
	}
	if r.a.Getenv("GITHUB_STEP_SUMMARY") != "" && len(r.summary) > 0 {
		r.a.AddStepSummary("### elafros " + r.mode + "\n\n" + strings.Join(r.summary, "\n\n") + "\n")
	}
}

// setOutput writes one output with a random delimiter, so that no value
// (a traffic JSON, a URL someone controls) can end it early.
func setOutput(a *githubactions.Action, k, v string) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	delim := "ghadelimiter_" + hex.EncodeToString(b[:])
	if strings.Contains(k, delim) || strings.Contains(v, delim) {
		return errors.New("the value contains the delimiter")
	}
	a.IssueFileCommand(&githubactions.Command{Name: "output", Message: k + "<<" + delim + "\n" + v + "\n" + delim})
	return nil
}

// group runs fn inside a collapsible log group.
func (r *run) group(title string, fn func() error) error {
	r.a.Group(title)
	defer r.a.EndGroup()
	return fn()
}

func (r *run) url(domain, target string) string {
	return deploy.TargetURL(r.be.scheme, domain, r.be.port, target)
}

func (r *run) logURL() string {
	if r.gh.RunID == 0 || r.repo.Name == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s/actions/runs/%d", or(r.gh.ServerURL, "https://github.com"), r.repo, r.gh.RunID)
}

func trafficJSON(t []v1alpha1.TrafficTarget) string {
	if t == nil {
		t = []v1alpha1.TrafficTarget{}
	}
	b, _ := json.Marshal(t)
	return string(b)
}

// services are the Service names of a manifest.
func services(m *manifest.Manifest) []string {
	var out []string
	for _, s := range m.Services() {
		out = append(out, s.Name)
	}
	return out
}

// repoSelector selects what this repository applied.
func (r *run) repoLabel() string { return v1alpha1.RepositoryLabelValue(r.repo.String()) }
