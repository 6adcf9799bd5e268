package bot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elafros/elafros/internal/client"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github"
	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/reconcile"
)

// Config is the bot's command line and environment.
type Config struct {
	Addr string
	// The backend, as the CLI takes it: elafros serve's API, or a cluster.
	Server, Kubeconfig, Context, Namespace string
	// InCluster uses the pod's ServiceAccount.
	InCluster bool
	// WebhookSecrets: the current one, and the previous while rotating.
	WebhookSecrets [][]byte
	// GitHub auth: an App (id + private key) or a token.
	AppID  int64
	AppKey []byte
	Token  string
	APIURL string
	// Journal is the bbolt file accepted commands are recorded in (with
	// --server; on a cluster the journal is ConfigMaps in JournalNamespace).
	Journal string
	Workers int

	// On a cluster: the bot's own namespace (journal and Lease), the
	// Lease's name and this replica's identity in it.
	JournalNamespace, Lease, Identity string
	// Lease timing; zero values take client-go's usual 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// PollEvery is how often the leader lists the journal besides
	// watching it (Options.PollEvery; zero: 1s).
	PollEvery time.Duration
	// Reconcile runs the bundled reconciler while this replica leads,
	// with HTTPRoutes attached to Gateway (NAMESPACE/NAME[:LISTENER]).
	Reconcile                             bool
	Gateway, DomainSuffix, LogURLTemplate string
	// GitHubTransport carries the requests to GitHub (nil: the default
	// transport, which honours HTTPS_PROXY).
	GitHubTransport http.RoundTripper
}

// ParseConfig reads flags and the environment (getenv).
func ParseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	server := getenv("ELAFROS_SERVER")
	if server == "" {
		server = "http://127.0.0.1:7070"
	}
	fs.StringVar(&c.Addr, "addr", ":8080", "where to serve /webhook, /healthz, /readyz and /metrics")
	fs.StringVar(&c.Server, "server", server, "the elafros serve API ($ELAFROS_SERVER)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "a cluster through this kubeconfig instead of elafros serve")
	fs.StringVar(&c.Context, "context", "", "the kubeconfig context (implies a cluster)")
	fs.StringVar(&c.Namespace, "namespace", "default", "the namespace of the services")
	fs.BoolVar(&c.InCluster, "in-cluster", false, "the cluster the bot runs in, through its ServiceAccount")
	secretFile := fs.String("webhook-secret-file", "", "a file holding the webhook secret (instead of $GITHUB_WEBHOOK_SECRET)")
	fs.StringVar(&c.Journal, "journal", defaultJournal(getenv), "the file accepted commands are recorded in")
	fs.IntVar(&c.Workers, "workers", 64, "commands carried out at once")
	podNS := getenv("POD_NAMESPACE")
	if podNS == "" {
		podNS = "elafros-system"
	}
	fs.StringVar(&c.JournalNamespace, "journal-namespace", podNS, "on a cluster: the namespace of the journal's ConfigMaps and the Lease ($POD_NAMESPACE)")
	fs.StringVar(&c.Lease, "lease", "elafros-bot", "on a cluster: the Lease the replicas elect their leader with")
	fs.BoolVar(&c.Reconcile, "reconcile", true, "on a cluster: run the bundled reconciler while this replica leads")
	fs.StringVar(&c.Gateway, "gateway", "", "on a cluster: the Gateway every HTTPRoute attaches to, NAMESPACE/NAME[:LISTENER] (required with --reconcile)")
	fs.StringVar(&c.DomainSuffix, "domain-suffix", "example.com", "on a cluster: routes are served at <route>.<namespace>.<suffix>")
	fs.StringVar(&c.LogURLTemplate, "log-url-template", "", "on a cluster: each revision's status.logUrl ({namespace}, {name}, {configuration})")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w\n\nflags: --addr, --server, --kubeconfig, --context, --in-cluster, --namespace, --webhook-secret-file, --journal, --workers; on a cluster --journal-namespace, --lease, --reconcile, --gateway, --domain-suffix, --log-url-template", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: the bot takes flags only", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.Identity = getenv("POD_NAME")
	if c.cluster() {
		if set["journal"] {
			return c, fmt.Errorf("--journal %q: on a cluster the journal is ConfigMaps in --journal-namespace (%s), shared by the replicas; --journal is for --server", c.Journal, c.JournalNamespace)
		}
		if c.Reconcile {
			if c.Gateway == "" {
				return c, errors.New("--gateway: the bundled reconciler needs the Gateway its HTTPRoutes attach to (NAMESPACE/NAME); or --reconcile=false when another controller runs")
			}
			if _, err := kube.ParseGateway(c.Gateway); err != nil {
				return c, fmt.Errorf("--gateway %w", err)
			}
			if c.DomainSuffix == "" {
				return c, errors.New("--domain-suffix must not be empty")
			}
		}
	} else {
		for _, f := range []string{"journal-namespace", "lease", "reconcile", "gateway", "domain-suffix", "log-url-template"} {
			if set[f] {
				return c, fmt.Errorf("--%s is for a cluster (--kubeconfig, --context or --in-cluster); elafros serve reconciles by itself and the bot's journal is the --journal file", f)
			}
		}
	}

	secret := []byte(getenv("GITHUB_WEBHOOK_SECRET"))
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return c, fmt.Errorf("--webhook-secret-file: %w", err)
		}
		secret = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	c.WebhookSecrets = [][]byte{secret, []byte(getenv("GITHUB_WEBHOOK_SECRET_PREVIOUS"))}
	if len(secret) == 0 {
		return c, errors.New("no webhook secret: set GITHUB_WEBHOOK_SECRET or --webhook-secret-file to the App's webhook secret; the bot never accepts unsigned deliveries")
	}

	c.APIURL = getenv("GITHUB_API_URL")
	c.Token = getenv("GITHUB_TOKEN")
	if id := getenv("GITHUB_APP_ID"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("GITHUB_APP_ID %q: want the App's numeric id", id)
		}
		c.AppID = n
		keyFile := getenv("GITHUB_APP_PRIVATE_KEY_FILE")
		if keyFile == "" {
			return c, errors.New("GITHUB_APP_ID is set but GITHUB_APP_PRIVATE_KEY_FILE is not: point it at the App's .pem private key")
		}
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return c, fmt.Errorf("GITHUB_APP_PRIVATE_KEY_FILE: %w", err)
		}
		c.AppKey = b
	}
	if c.AppID == 0 && c.Token == "" {
		return c, errors.New("no GitHub credentials: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE (a GitHub App, recommended), or GITHUB_TOKEN")
	}
	if !c.cluster() && !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://") {
		return c, fmt.Errorf("--server %q: want a URL such as http://127.0.0.1:7070", c.Server)
	}
	return c, nil
}

func (c Config) cluster() bool { return c.Kubeconfig != "" || c.Context != "" || c.InCluster }

func defaultJournal(getenv func(string) string) string {
	dir := getenv("XDG_STATE_HOME")
	if dir == "" {
		if h, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(h, ".local", "state")
		} else {
			dir = os.TempDir()
		}
	}
	return filepath.Join(dir, "elafros", "bot-journal.db")
}

// Build makes the bot a Config describes; close releases its journal.
func Build(c Config, log *slog.Logger) (b *Bot, closeFn func(), err error) {
	v, err := github.NewVerifier(0, c.WebhookSecrets...)
	if err != nil {
		return nil, nil, err
	}
	var (
		dc *deploy.Client
		j  Journal
	)
	opts := Options{Verifier: v, Logger: log, PollEvery: c.PollEvery}
	if c.cluster() {
		var cfg *rest.Config
		if c.InCluster {
			cfg, err = rest.InClusterConfig()
		} else {
			cfg, err = client.Kubeconfig(c.Kubeconfig, c.Context)
		}
		if err != nil {
			return nil, nil, err
		}
		st, err := client.New(cfg)
		if err != nil {
			return nil, nil, err
		}
		ev, err := kube.NewEvents(cfg, "elafros-bot")
		if err != nil {
			return nil, nil, err
		}
		// Every move is also a Kubernetes Event on its Route.
		dc = deploy.New(st, c.Namespace, deploy.WithEvents(ev, func(err error) { log.Warn("event", "err", err) }))
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, nil, err
		}
		if j, err = NewKubeJournal(cs, c.JournalNamespace); err != nil {
			return nil, nil, err
		}
		if opts.Elect, err = NewLeaseElector(cs, LeaseConfig{Namespace: c.JournalNamespace, Name: c.Lease, Identity: c.Identity,
			LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}, log); err != nil {
			return nil, nil, err
		}
		if c.Reconcile {
			gw, err := kube.ParseGateway(c.Gateway)
			if err != nil {
				return nil, nil, fmt.Errorf("--gateway %w", err)
			}
			opts.Lead = Reconciler(cfg, kube.ReconcilerOptions{Traffic: kube.TrafficOptions{Gateway: gw}, Namespace: c.Namespace,
				Reconcile: reconcile.Options{DomainSuffix: c.DomainSuffix, LogURLTemplate: c.LogURLTemplate}}, log)
		}
	} else {
		st, err := client.ForServer(c.Server)
		if err != nil {
			return nil, nil, err
		}
		dc = deploy.New(st, c.Namespace)
		if err := os.MkdirAll(filepath.Dir(c.Journal), 0o700); err != nil {
			return nil, nil, fmt.Errorf("--journal: %w", err)
		}
		if j, err = OpenBoltJournal(c.Journal); err != nil {
			return nil, nil, err
		}
	}
	opts.Deploy, opts.Journal = dc, j
	// The observer needs the bot, which needs the clients: tie the knot
	// through a variable set below.
	observe := github.WithObserver(func(m string, s int, err error) {
		if b != nil {
			b.ObserveGitHub(m, s, err)
		}
	})
	gopts := []github.Option{github.WithAPIURL(c.APIURL), observe, github.WithUserAgent("elafros-bot")}
	if c.GitHubTransport != nil {
		gopts = append(gopts, github.WithTransport(c.GitHubTransport))
	}
	if c.AppID != 0 {
		app, err := github.NewApp(c.AppID, c.AppKey, gopts...)
		if err != nil {
			j.Close()
			return nil, nil, err
		}
		opts.GitHub = func(id int64) GitHub { return app.Installation(id) }
		opts.Deliveries = app
	} else {
		gh, err := github.New(c.Token, gopts...)
		if err != nil {
			j.Close()
			return nil, nil, err
		}
		opts.GitHub = func(int64) GitHub { return gh }
	}
	b, err = New(opts)
	if err != nil {
		j.Close()
		return nil, nil, err
	}
	return b, func() { _ = j.Close() }, nil
}

// Main runs the bot until ctx ends; it returns the process's exit code.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	c, err := ParseConfig(args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "elafros bot: %v\n", err)
		return 2
	}
	b, closeFn, err := Build(c, log)
	if err != nil {
		fmt.Fprintf(stderr, "elafros bot: %v\n", err)
		return 1
	}
	defer closeFn()
	l, err := net.Listen("tcp", c.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "elafros bot: --addr: %v\n", err)
		return 1
	}
	// GitHub gives a delivery 10 s; reading and recording one takes far
	// less, so the timeouts only guard against slow clients.
	hs := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 9 * time.Second, WriteTimeout: 10 * time.Second}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, 1)
	ran := make(chan struct{})
	go func() { errs <- hs.Serve(l) }()
	go func() { defer close(ran); _ = b.Run(ctx, c.Workers) }()
	journal := c.Journal
	if c.cluster() {
		journal = "ConfigMaps in " + c.JournalNamespace
	}
	log.Info("elafros bot serving", "addr", l.Addr().String(), "app", c.AppID != 0, "journal", journal)
	select {
	case <-ctx.Done():
	case err := <-errs:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "elafros bot: %v\n", err)
			stop()
			<-ran
			return 1
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stop()
	<-ran // workers stop before the journal closes; unfinished commands stay pending
	return 0
}
