package cli

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/local/serve"
	"github.com/elafros/elafros/internal/reconcile"
	"github.com/elafros/elafros/internal/store"
)

// capture builds a command whose run function records the options the
// flags and arguments parsed to, instead of running.
type capture func(s IOStreams, t *target, got *any) *cobra.Command

func record[O any](got *any) func(context.Context, *O) error {
	return func(_ context.Context, o *O) error { *got = *o; return nil }
}

var (
	applyCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newApplyCommand(s, t, record[ApplyOptions](got))
	}
	getCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newGetCommand(s, t, record[GetOptions](got))
	}
	describeCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newDescribeCommand(s, t, record[DescribeOptions](got))
	}
	deployCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newDeployCommand(s, t, record[DeployOptions](got))
	}
	revisionsCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newRevisionsCommand(s, t, record[RevisionsOptions](got))
	}
	rolloutCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newRolloutCommand(s, t, record[RolloutOptions](got))
	}
	serveCmd = func(s IOStreams, _ *target, got *any) *cobra.Command {
		return newServeCommand(s, record[ServeOptions](got))
	}
	upCmd = func(s IOStreams, _ *target, got *any) *cobra.Command {
		return newUpCommand(s, record[UpOptions](got))
	}
	logsCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newLogsCommand(s, t, record[LogsOptions](got))
	}
	installCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newInstallCommand(s, t, record[InstallOptions](got))
	}
	reconcileCmd = func(s IOStreams, t *target, got *any) *cobra.Command {
		return newReconcileCommand(s, t, record[ReconcileOptions](got))
	}
	validateCmd = func(s IOStreams, _ *target, got *any) *cobra.Command {
		return newValidateCommand(s, record[ValidateOptions](got))
	}
)

// plane is serve.Options as planeFlags defaults them, with changes.
func plane(change func(*serve.Options)) serve.Options {
	o := serve.Options{DataDir: serve.DefaultDataDir(), APIAddr: serve.DefaultAPIAddr, HTTPAddr: serve.DefaultHTTPAddr,
		RegistryAddr: serve.DefaultRegistryAddr, Domain: serve.DefaultDomain}
	if change != nil {
		change(&o)
	}
	return o
}

// TestFlags: each command's flags and arguments parse to the options its
// run function gets, and bad ones are refused, naming the flag and what it
// accepts, before anything runs.
func TestFlags(t *testing.T) {
	abs, err := filepath.Abs("some/dir")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cmd     capture
		args    string
		want    any    // the options run gets
		wantErr string // or the error, and run is not called
	}{
		{name: "apply", cmd: applyCmd, args: "-f m.yaml --wait --timeout 1m", want: ApplyOptions{File: "m.yaml", Wait: true, Timeout: time.Minute}},
		{name: "apply defaults", cmd: applyCmd, args: "--filename m.yaml", want: ApplyOptions{File: "m.yaml", Timeout: 10 * time.Minute}},
		{name: "apply without -f", cmd: applyCmd, args: "--wait", wantErr: "-f: name the manifest to apply, e.g. -f elafros.yaml"},
		{name: "apply with an argument", cmd: applyCmd, args: "-f m.yaml extra", wantErr: `unknown command "extra"`},

		{name: "get one", cmd: getCmd, args: "esvc hello -o yaml", want: GetOptions{Kind: store.KindService, Name: "hello", Output: "yaml"}},
		{name: "get a list by plural", cmd: getCmd, args: "routes", want: GetOptions{Kind: store.KindRoute}},
		{name: "get an unknown kind", cmd: getCmd, args: "pods", wantErr: `unknown kind "pods"; accepted: `},
		{name: "get -o xml", cmd: getCmd, args: "rev -o xml", wantErr: `-o "xml": accepted: json, yaml`},

		{name: "describe", cmd: describeCmd, args: "revision hello-00001", want: DescribeOptions{Kind: store.KindRevision, Name: "hello-00001"}},
		{name: "describe without a name", cmd: describeCmd, args: "revision", wantErr: "accepts 2 arg(s), received 1"},

		{name: "deploy", cmd: deployCmd, args: "--service s --image r/app:1 --env A=1 --env B=x=y --function --git-sha abc --deployer ann --timeout 30s",
			want: DeployOptions{Deploy: deploy.Options{Service: "s", Image: "r/app:1", Function: true, GitCommit: "abc", Deployer: "ann",
				Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "x=y"}}}, Timeout: 30 * time.Second}},
		{name: "deploy a bad env", cmd: deployCmd, args: "--service s --image i --env =1", wantErr: `--env "=1": want NAME=value`},
		{name: "deploy without an image", cmd: deployCmd, args: "--service s", wantErr: "--service and --image are required"},

		{name: "revisions list", cmd: revisionsCmd, args: "list --service s", want: RevisionsOptions{Service: "s"}},
		{name: "revisions list without a service", cmd: revisionsCmd, args: "list", wantErr: "--service is required"},

		{name: "rollout next percent", cmd: rolloutCmd, args: "next percent 50% --service s", want: RolloutOptions{Service: "s", Action: RolloutPercent, Percent: 50}},
		{name: "rollout next percent 0", cmd: rolloutCmd, args: "--service s next percent 0", want: RolloutOptions{Service: "s", Action: RolloutPercent}},
		{name: "rollout next percent 101", cmd: rolloutCmd, args: "next percent 101 --service s", wantErr: `percent "101": want an integer from 0 to 100`},
		{name: "rollout next percent -1", cmd: rolloutCmd, args: "next percent --service s -- -1", wantErr: `percent "-1": want an integer from 0 to 100`},
		{name: "rollout strategy", cmd: rolloutCmd, args: "strategy canary --service s", want: RolloutOptions{Service: "s", Action: RolloutStrategy, Strategy: v1alpha1.StrategyCanary}},
		{name: "rollout strategy unknown", cmd: rolloutCmd, args: "strategy fast --service s", wantErr: `strategy "fast": accepted: automatic, manual, canary`},
		{name: "rollout finish", cmd: rolloutCmd, args: "finish --service s", want: RolloutOptions{Service: "s", Action: RolloutFinish}},
		{name: "rollout abort", cmd: rolloutCmd, args: "abort --service s", want: RolloutOptions{Service: "s", Action: RolloutAbort}},
		{name: "rollout promote", cmd: rolloutCmd, args: "promote --service s", want: RolloutOptions{Service: "s", Action: RolloutPromote}},
		{name: "rollout history", cmd: rolloutCmd, args: "history --service s", want: RolloutOptions{Service: "s", Action: RolloutHistory}},
		{name: "rollout without a service", cmd: rolloutCmd, args: "finish", wantErr: "--service is required"},

		{name: "serve", cmd: serveCmd, args: "--data-dir d --api-addr 127.0.0.1:0 --sticky -v",
			want: ServeOptions{Plane: plane(func(o *serve.Options) { o.DataDir, o.APIAddr, o.Sticky = "d", "127.0.0.1:0", true }), Verbose: true}},
		{name: "serve --reset --yes", cmd: serveCmd, args: "--reset --yes --data-dir d",
			want: ServeOptions{Plane: plane(func(o *serve.Options) { o.DataDir = "d" }), Reset: true, Yes: true}},
		{name: "serve --reset alone", cmd: serveCmd, args: "--reset --data-dir d", wantErr: "--reset deletes every deployment, pushed image, unpacked image, log and build in d; add --yes to confirm"},
		{name: "serve --yes alone", cmd: serveCmd, args: "--yes", wantErr: "--yes confirms --reset; it does nothing alone"},
		{name: "serve --router-loops", cmd: serveCmd, args: "--router-loops 4",
			want: ServeOptions{Plane: plane(func(o *serve.Options) { o.RouterLoops = 4 })}},
		{name: "serve --router-loops -1", cmd: serveCmd, args: "--router-loops=-1",
			want: ServeOptions{Plane: plane(func(o *serve.Options) { o.RouterLoops = -1 })}},
		{name: "serve --router-loops -2", cmd: serveCmd, args: "--router-loops=-2",
			wantErr: "--router-loops -2: want -1 (a goroutine per connection), 0 (one loop per two CPUs) or a number of loops"},
		{name: "up --router-loops -3", cmd: upCmd, args: "--router-loops=-3",
			wantErr: "--router-loops -3: want -1 (a goroutine per connection), 0 (one loop per two CPUs) or a number of loops"},

		{name: "up", cmd: upCmd, args: "some/dir --watch --debounce 1s --domain example.test",
			want: UpOptions{Dir: abs, Plane: plane(func(o *serve.Options) { o.Domain = "example.test" }), Watch: true, Debounce: time.Second, Timeout: 10 * time.Minute}},
		{name: "up --debounce 0", cmd: upCmd, args: "--watch --debounce 0", wantErr: "--debounce 0s: want a positive duration, e.g. 250ms"},
		{name: "up two dirs", cmd: upCmd, args: "a b", wantErr: "accepts at most 1 arg(s), received 2"},

		{name: "logs", cmd: logsCmd, args: "hello-00001", want: LogsOptions{Revision: "hello-00001"}},
		{name: "logs on a cluster", cmd: logsCmd, args: "hello-00001 --context kind", wantErr: "on a cluster use kubectl logs -l elafros.dev/revision=hello-00001"},

		{name: "install", cmd: installCmd, args: "--rbac=false", want: InstallOptions{}},
		{name: "install defaults", cmd: installCmd, args: "", want: InstallOptions{RBAC: true}},

		{name: "reconcile", cmd: reconcileCmd, args: "--gateway infra/gw:http --mirror gcr.io=m:5000 -n team --once --domain-suffix example.org",
			want: ReconcileOptions{Gateway: mustGateway(t, "infra/gw:http"), Mirrors: map[string]string{"gcr.io": "m:5000"}, Namespace: "team",
				Once: true, Timeout: 5 * time.Minute, Domain: "example.org"}},
		{name: "reconcile every namespace", cmd: reconcileCmd, args: "--gateway infra/gw",
			want: ReconcileOptions{Gateway: mustGateway(t, "infra/gw"), Mirrors: map[string]string{}, Timeout: 5 * time.Minute, Domain: "example.com"}},
		{name: "reconcile without a gateway", cmd: reconcileCmd, args: "--once", wantErr: `required flag(s) "gateway" not set`},
		{name: "reconcile a bad gateway", cmd: reconcileCmd, args: "--gateway gw", wantErr: `--gateway "gw": want NAMESPACE/NAME or NAMESPACE/NAME:LISTENER`},
		{name: "reconcile a bad mirror", cmd: reconcileCmd, args: "--gateway a/b --mirror gcr.io", wantErr: `--mirror "gcr.io": want REGISTRY=MIRROR`},
		{name: "reconcile an empty domain", cmd: reconcileCmd, args: "--gateway a/b --domain-suffix=", wantErr: "--domain-suffix must not be empty"},

		{name: "validate", cmd: validateCmd, args: "--format github a.yaml b.yaml", want: ValidateOptions{Files: []string{"a.yaml", "b.yaml"}, Format: "github"}},
		{name: "validate --format json", cmd: validateCmd, args: "--format json", wantErr: `--format: unsupported value "json"; accepted: text, github`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := streams()
			tg := &target{}
			var got any
			cmd := tc.cmd(s, tg, &got)
			tg.flags(cmd) // the root's persistent flags: --server, --context, -n
			cmd.SetArgs(strings.Fields(tc.args))
			cmd.SetOut(s.Out)
			cmd.SetErr(s.ErrOut)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if got != nil {
					t.Fatalf("ran with %+v after refusing the flags", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.IgnoreTypes(IOStreams{}, (*target)(nil)), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
		})
	}
}

func mustGateway(t *testing.T, s string) gatewayv1.ParentReference {
	t.Helper()
	g, err := kube.ParseGateway(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestRunWithOptions calls the run functions directly, with options of
// the test's own, against an API with the reconciler behind it.
func TestRunWithOptions(t *testing.T) {
	url, _ := apiWithReconciler(t)
	tg := &target{server: url, namespace: v1alpha1.DefaultNamespace}
	ctx := t.Context()
	s, out, _ := streams()
	if err := runDeploy(ctx, &DeployOptions{IO: s, Target: tg, Deploy: deploy.Options{Service: "web", Image: "registry.local/web:1"}, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Deployed to http://web.default.localhost:8080") {
		t.Fatalf("deploy printed:\n%s", out)
	}
	s, out, _ = streams()
	if err := runGet(ctx, &GetOptions{IO: s, Target: tg, Kind: store.KindRevision}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "web-00001") {
		t.Fatalf("get revisions:\n%s", out)
	}
	s, _, errOut := streams()
	err := runRollout(ctx, &RolloutOptions{IO: s, Target: tg, Service: "web", Action: RolloutPercent, Percent: 50})
	if code := exitCode(err); code != 1 || !strings.Contains(errOut.String(), "refused: ") || !strings.Contains(errOut.String(), "Nothing was changed.") {
		t.Fatalf("a canary with no next revision: %v, stderr:\n%s", err, errOut)
	}
	s, out, _ = streams()
	if err := runRollout(ctx, &RolloutOptions{IO: s, Target: tg, Service: "web", Action: RolloutStrategy, Strategy: v1alpha1.StrategyManual}); err != nil || out.String() != "service/web strategy manual\n" {
		t.Fatalf("strategy manual: %v, printed %q", err, out)
	}
	s, _, _ = streams()
	if err := runDeploy(ctx, &DeployOptions{IO: s, Target: tg, Deploy: deploy.Options{Service: "web", Image: "registry.local/web:2"}, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	s, out, _ = streams()
	if err := runRollout(ctx, &RolloutOptions{IO: s, Target: tg, Service: "web", Action: RolloutPercent, Percent: 50}); err != nil {
		t.Fatal(err)
	}
	if want := "Name     Revision   Traffic\ncurrent  web-00001  50%\nnext     web-00002  50%\n"; out.String() != want {
		t.Fatalf("next percent 50 printed %q, want %q", out, want)
	}
	s, out, _ = streams()
	if err := runRollout(ctx, &RolloutOptions{IO: s, Target: tg, Service: "web", Action: RolloutHistory}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// The strategy's two moves (web-00001 pinned as current when manual
	// was set; web-00002 staged as next), then the person's.
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "Time") {
		t.Fatalf("history has not three moves:\n%s", out)
	}
	for i, rev := range []string{"web-00001", "web-00002"} {
		if !strings.Contains(lines[i+1], reconcile.StrategyActor+"  strategy manual: revision "+rev+" is ready") {
			t.Errorf("history row %d is not the strategy's move for %s: %q", i+1, rev, lines[i+1])
		}
	}
	row := strings.Fields(lines[3])
	if _, err := time.Parse(time.RFC3339, row[0]); err != nil {
		t.Errorf("history time: %v", err)
	}
	if d := cmp.Diff([]string{localActor(), "elafros", "CLI", "current=web-00001:100%", "next=web-00002:0%", "current=web-00001:50%", "next=web-00002:50%"}, row[1:]); d != "" {
		t.Errorf("history row (-want +got):\n%s", d)
	}
	if err := runRollout(ctx, &RolloutOptions{IO: s, Target: tg, Service: "web", Action: "sideways"}); err == nil || !strings.Contains(err.Error(), `unknown action "sideways"`) {
		t.Fatalf("an unknown action: %v", err)
	}
}

func exitCode(err error) int {
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return -1
}
