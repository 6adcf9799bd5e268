package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/command"
	"github.com/elafros/elafros/internal/deploy"
	"github.com/elafros/elafros/internal/github"
	"github.com/elafros/elafros/internal/rollout"
	"github.com/elafros/elafros/internal/store"
)

// repositoryOf is the repository an object was applied from.
func repositoryOf(o store.Object) string {
	if r := o.GetAnnotations()[v1alpha1.RepositoryAnnotationKey]; r != "" {
		return r
	}
	return strings.Replace(o.GetLabels()[v1alpha1.RepositoryLabelKey], ".", "/", 1)
}

// GitHub is what the bot needs of GitHub, for one installation.
type GitHub interface {
	React(ctx context.Context, repo github.Repo, commentID int64, r github.Reaction) error
	Reply(ctx context.Context, repo github.Repo, number int, body string) (int64, error)
	Permission(ctx context.Context, repo github.Repo, login string) (github.Permission, error)
	IsTeamMember(ctx context.Context, team, login string) (bool, error)
	PullRequest(ctx context.Context, repo github.Repo, number int) (*github.PullRequest, error)
	ChecksGreen(ctx context.Context, repo github.Repo, sha string, required []string) (github.Checks, error)
	LatestDeployment(ctx context.Context, repo github.Repo, environment, sha string) (int64, bool, error)
	SetDeploymentStatus(ctx context.Context, repo github.Repo, id int64, st github.DeploymentStatus) error
}

// Deliveries is the App's log of webhook deliveries (nil with a token).
type Deliveries interface {
	FailedDeliveries(ctx context.Context, since time.Time) ([]github.Delivery, error)
	Redeliver(ctx context.Context, id int64) error
}

// Options configure a Bot.
type Options struct {
	Verifier *github.Verifier
	// GitHub returns the client for an App installation (the id in the
	// payload; 0 when there is none, as with a token).
	GitHub     func(installation int64) GitHub
	Deliveries Deliveries
	Deploy     *deploy.Client
	Journal    Journal
	Logger     *slog.Logger
	// Registry receives the bot's metrics; a new one when nil.
	Registry *prometheus.Registry
	// RecoverEvery is how often failed deliveries are looked for
	// (default 10m); RecoverWindow how far back (default 72h, as long as
	// GitHub keeps them).
	RecoverEvery, RecoverWindow time.Duration
	// URL makes a public URL of a host (default http://HOST).
	URL func(host string) string
	// Elect, on a cluster, makes this bot one of several replicas sharing
	// the Journal: every replica answers webhooks and records them, only
	// the leader carries them out. Nil: one process, always the leader.
	Elect Elector
	// Lead runs while this replica leads (the bundled reconciler, see
	// Reconciler); restarted when it fails.
	Lead func(ctx context.Context) error
	// PollEvery is how often the leader lists the journal for entries
	// other replicas accepted, besides watching it where the journal can
	// (KubeJournal) (default 1s; only with Elect).
	PollEvery time.Duration
}

// Bot is the webhook server. Handler serves it; Run does its work.
type Bot struct {
	o       Options
	log     *slog.Logger
	reg     *prometheus.Registry
	m       metrics
	ready   atomic.Bool
	work    chan Entry
	wg      sync.WaitGroup
	running sync.Map // delivery → struct{}: in the hands of a worker
	lead    leadState
	seq     *sequencer
	// answering bounds the commands whose answers are being sent after
	// their worker moved on.
	answering chan struct{}
}

// rollout moves one route's traffic when it is t's turn: after the
// commands accepted before it that write the same service, before those
// accepted after it. Only this write takes turns; the reads before it and
// the answers after it run concurrently with other commands. It returns
// the route after, and the traffic op found (the route just before).
func (b *Bot) rollout(ctx context.Context, t *ticket, actor, reason, route string, op deploy.Op) (*v1alpha1.Route, []v1alpha1.TrafficTarget, error) {
	asked := time.Now()
	if !t.claimed.IsZero() {
		b.m.phase.WithLabelValues("read").Observe(asked.Sub(t.claimed).Seconds())
	}
	w := &write{t: t, route: route, op: op, actor: actor, reason: reason}
	res := b.seq.write(ctx, w, b.applyWrites)
	if !w.began.IsZero() && res.err == nil {
		b.m.phase.WithLabelValues("turn").Observe(w.began.Sub(asked).Seconds())
		b.m.phase.WithLabelValues("write").Observe(time.Since(w.began).Seconds())
	}
	return res.after, res.before, res.err
}

// applyWrites writes a batch of one route's writes, in ticket order, in one
// read-modify-write of the route through deploy (with its conflict retry):
// each op is applied to the traffic the one before it left, and a refused
// op leaves it as it was. The route's audit history gets one move, naming
// every person and command in it.
func (b *Bot) applyWrites(ctx context.Context, batch []*write) {
	var actors, reasons []string
	for _, w := range batch {
		if !slices.Contains(actors, w.actor) {
			actors = append(actors, w.actor)
		}
		reasons = append(reasons, w.reason)
	}
	type step struct {
		before, after rollout.Traffic
		err           error
	}
	steps := make([]step, len(batch))
	after, err := b.o.Deploy.As(strings.Join(actors, ", "), strings.Join(reasons, "; ")).Rollout(ctx, batch[0].route,
		func(tr rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
			ready = memoReady(ready)
			cur := tr
			for i, w := range batch {
				out, err := w.op(slices.Clone(cur), ready)
				steps[i] = step{before: slices.Clone(cur), after: out, err: err}
				if err == nil {
					cur = out
				}
			}
			return cur, nil
		})
	for i, w := range batch {
		switch {
		case err != nil:
			w.res = writeResult{err: err}
		case steps[i].err != nil:
			w.res = writeResult{err: steps[i].err}
		default:
			rt := after.DeepCopy()
			rt.Spec.Rollout.Traffic = steps[i].after
			w.res = writeResult{after: rt, before: steps[i].before}
		}
	}
}

// memoReady asks ready once per revision: within one try of one write,
// the ops of a batch ask about the same few revisions again and again,
// each a read of the store.
func memoReady(ready rollout.ReadyFunc) rollout.ReadyFunc {
	if ready == nil {
		return nil
	}
	type answer struct {
		ok  bool
		why string
	}
	seen := map[string]answer{}
	return func(rev string) (bool, string) {
		if a, ok := seen[rev]; ok {
			return a.ok, a.why
		}
		ok, why := ready(rev)
		seen[rev] = answer{ok, why}
		return ok, why
	}
}

// queued says whether a delivery is in the work queue or a worker's hands.
func (b *Bot) queued(delivery string) bool {
	_, ok := b.running.Load(delivery)
	return ok
}

type metrics struct {
	deliveries *prometheus.CounterVec
	commands   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	phase      *prometheus.HistogramVec
	api        *prometheus.CounterVec
}

// New checks the options and builds the bot.
func New(o Options) (*Bot, error) {
	switch {
	case o.Verifier == nil:
		return nil, errors.New("bot: no webhook verifier (the webhook secret is required)")
	case o.GitHub == nil:
		return nil, errors.New("bot: no GitHub client (GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE)")
	case o.Deploy == nil:
		return nil, errors.New("bot: no backend (--server or --kubeconfig)")
	case o.Journal == nil:
		return nil, errors.New("bot: no journal to record accepted commands in")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = 10 * time.Minute
	}
	if o.RecoverWindow <= 0 {
		o.RecoverWindow = 72 * time.Hour
	}
	if o.URL == nil {
		o.URL = func(host string) string { return "http://" + host }
	}
	b := &Bot{o: o, log: o.Logger, reg: o.Registry, work: make(chan Entry, 1024), seq: newSequencer(),
		answering: make(chan struct{}, 256)}
	b.m = metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "elafros_bot_deliveries_total",
			Help: "Webhook deliveries by event and outcome (accepted, duplicate, ignored, refused)."}, []string{"event", "outcome"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "elafros_bot_commands_total",
			Help: "Commands carried out, by outcome (moved, answered, refused, malformed, failed)."}, []string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "elafros_bot_command_duration_seconds",
			Help:    "From a delivery's acceptance to its command's end.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"outcome"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "elafros_bot_command_phase_seconds",
			Help: "Where a command's time goes, by phase: queue (accepted to a worker's hands), read (the worker's reads: " +
				"GitHub's permission, pull request and checks, the store), turn (waiting for the earlier commands' writes), " +
				"write (its route write, batched with the writes after it).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 13)}, []string{"phase"}),
		api: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "elafros_bot_github_requests_total",
			Help: "Requests to GitHub's API by method and status (0: no answer)."}, []string{"method", "status"}),
	}
	for _, c := range []prometheus.Collector{b.m.deliveries, b.m.commands, b.m.latency, b.m.phase, b.m.api} {
		if err := o.Registry.Register(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ObserveGitHub counts one request to GitHub (github.WithObserver).
func (b *Bot) ObserveGitHub(method string, status int, _ error) {
	b.m.api.WithLabelValues(method, strconv.Itoa(status)).Inc()
}

// Handler serves POST /webhook, /healthz, /readyz and /metrics.
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", b.webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.ready.Load() {
			http.Error(w, "replaying the journal", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{}))
	return mux
}

// --- payloads: the fields the bot reads ---

type user struct {
	Login string `json:"login"`
	Type  string `json:"type"`
}

type payload struct {
	Action string `json:"action"`
	Issue  struct {
		Number      int             `json:"number"`
		PullRequest json.RawMessage `json:"pull_request"`
	} `json:"issue"`
	Comment struct {
		ID        int64     `json:"id"`
		Body      string    `json:"body"`
		User      user      `json:"user"`
		CreatedAt time.Time `json:"created_at"`
	} `json:"comment"`
	Number      int `json:"number"`
	PullRequest struct {
		Merged bool `json:"merged"`
	} `json:"pull_request"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

func isBot(u user) bool { return u.Type == "Bot" || strings.HasSuffix(u.Login, "[bot]") }

// webhook verifies a delivery, decides whether it is work, records it
// durably and only then answers.
func (b *Bot) webhook(w http.ResponseWriter, r *http.Request) {
	wh, err := b.o.Verifier.Verify(r)
	if err != nil {
		b.m.deliveries.WithLabelValues(r.Header.Get("X-GitHub-Event"), "refused").Inc()
		b.log.Warn("webhook refused", "err", err, "delivery", r.Header.Get("X-GitHub-Delivery"))
		http.Error(w, err.Error(), github.WebhookStatus(err))
		return
	}
	answer := func(code int, outcome, msg string) {
		b.m.deliveries.WithLabelValues(wh.Event, outcome).Inc()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, msg+"\n")
	}
	var p payload
	if err := json.Unmarshal(wh.Body, &p); err != nil {
		answer(http.StatusBadRequest, "refused", fmt.Sprintf("payload of %s: %v", wh.Event, err))
		return
	}
	switch wh.Event {
	case "ping":
		answer(http.StatusOK, "ignored", "pong")
		return
	case "issue_comment":
		if p.Action != "created" {
			answer(http.StatusOK, "ignored", "only new comments carry commands; "+p.Action+" ignored")
			return
		}
		if len(p.Issue.PullRequest) == 0 || string(p.Issue.PullRequest) == "null" {
			answer(http.StatusOK, "ignored", "not a pull request")
			return
		}
		if isBot(p.Comment.User) {
			answer(http.StatusOK, "ignored", "comments by bots are ignored")
			return
		}
		if cmd, err := command.Parse(p.Comment.Body); cmd == nil && err == nil {
			answer(http.StatusOK, "ignored", "no /rollout command")
			return
		}
	case "pull_request":
		if p.Action != "closed" {
			answer(http.StatusOK, "ignored", "pull_request "+p.Action+" ignored (the Action deploys previews)")
			return
		}
	case "installation", "installation_repositories":
		b.log.Info("installation changed", "action", p.Action, "installation", p.Installation.ID)
		answer(http.StatusOK, "ignored", "noted")
		return
	default:
		answer(http.StatusOK, "ignored", "event "+wh.Event+" ignored")
		return
	}
	if wh.Delivery == "" {
		answer(http.StatusBadRequest, "refused", "no X-GitHub-Delivery header")
		return
	}
	e := Entry{Delivery: wh.Delivery, Event: wh.Event, Payload: wh.Body}
	// The ticket is the delivery's place in the order its command's write
	// takes; it is stamped with the time received under the same lock, so
	// the journal's order (by that time) is the order writes are applied.
	tk := b.seq.accept(e.Delivery, func() { e.ReceivedAt = time.Now() })
	isNew, err := b.o.Journal.Record(e)
	b.seq.recorded(tk, e, err == nil && isNew, b.enqueue, b.queued)
	if err != nil {
		// Not recorded: answer 5xx so the delivery shows as failed and
		// is redelivered, rather than acknowledging what could be lost.
		b.log.Error("journal", "err", err)
		answer(http.StatusServiceUnavailable, "refused", "cannot record the command; it will be redelivered")
		return
	}
	if !isNew {
		answer(http.StatusOK, "duplicate", "delivery "+wh.Delivery+" was accepted before; it is applied once")
		return
	}
	answer(http.StatusAccepted, "accepted", "accepted")
}

func (b *Bot) enqueue(e Entry) {
	b.lead.mu.RLock()
	defer b.lead.mu.RUnlock()
	if !b.lead.leading {
		return // the leader finds it in the journal
	}
	if _, done := b.lead.done.Load(e.Delivery); done {
		return // finished in this term; the listing predates it
	}
	if _, busy := b.running.LoadOrStore(e.Delivery, struct{}{}); busy {
		return
	}
	select {
	case b.work <- e:
	default:
		// The queue is full: the entry stays pending in the journal and
		// runs at the next replay.
		b.running.Delete(e.Delivery)
		b.log.Warn("work queue full; left pending", "delivery", e.Delivery)
	}
}

// Run carries out accepted commands with workers until ctx ends: at once
// (one process), or with an Elector while this replica leads, replaying
// the journal's pending entries when it becomes the leader. The leader
// also prunes the journal, runs Options.Lead and (as a GitHub App) asks
// for failed deliveries to be redelivered.
func (b *Bot) Run(ctx context.Context, workers int) error {
	if workers <= 0 {
		workers = 8
	}
	if b.o.PollEvery <= 0 {
		b.o.PollEvery = time.Second
	}
	// A journal that cannot be read is a configuration error (RBAC, a
	// locked file): say so at start rather than answer 503 to GitHub.
	if _, err := b.o.Journal.Pending(); err != nil {
		return fmt.Errorf("bot journal: %w", err)
	}
	b.registerLeader()
	if b.o.Elect == nil {
		b.term(ctx, workers)
		return nil
	}
	// Every replica records what it accepts; whoever leads carries it
	// out, so a follower is ready as soon as its journal answers.
	b.ready.Store(true)
	b.o.Elect.Run(ctx, func(ctx context.Context) { b.term(ctx, workers) })
	return nil
}

// Recover asks GitHub to redeliver the App's failed deliveries that the
// journal does not hold: events sent while the bot was down or unable to
// record them. A redelivery keeps its GUID, so one that arrives twice is
// still applied once.
func (b *Bot) Recover(ctx context.Context) error {
	failed, err := b.o.Deliveries.FailedDeliveries(ctx, time.Now().Add(-b.o.RecoverWindow))
	if err != nil {
		return err
	}
	for _, d := range failed {
		if seen, err := b.o.Journal.Seen(d.GUID); err != nil || seen {
			continue
		}
		if d.Event != "issue_comment" && d.Event != "pull_request" {
			continue
		}
		if err := b.o.Deliveries.Redeliver(ctx, d.ID); err != nil {
			return err
		}
		b.log.Info("asked GitHub to redeliver", "delivery", d.GUID, "event", d.Event)
	}
	return nil
}

// handle carries out one accepted delivery and marks it done.
func (b *Bot) handle(ctx context.Context, e Entry) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	// Its place in the order of writes, given up at the latest here, so
	// that a command that ends early never holds up the next.
	tk := b.seq.claim(e.Delivery)
	tk.claimed = time.Now()
	if !e.ReceivedAt.IsZero() {
		b.m.phase.WithLabelValues("queue").Observe(tk.claimed.Sub(e.ReceivedAt).Seconds())
	}
	var p payload
	outcome, answer := "failed", func(context.Context) {}
	if err := json.Unmarshal(e.Payload, &p); err == nil {
		switch e.Event {
		case "issue_comment":
			outcome, answer = b.comment(ctx, tk, p)
		case "pull_request":
			outcome = b.closed(ctx, tk, p)
		}
	}
	b.seq.release(tk)
	finish := func() {
		defer cancel()
		answer(ctx)
		b.m.commands.WithLabelValues(outcome).Inc()
		b.m.latency.WithLabelValues(outcome).Observe(time.Since(e.ReceivedAt).Seconds())
		if ctx.Err() != nil && outcome == "failed" {
			return // shutting down: stays pending, replayed at start
		}
		if err := b.o.Journal.Finish(e.Delivery, outcome); err != nil {
			b.log.Error("journal", "delivery", e.Delivery, "err", err)
		}
	}
	// The answers are GitHub round trips (the reply, the deployment
	// status, the final reaction): they go on without the worker, which
	// takes the next command, up to a bound; Run waits for them (b.wg)
	// before the journal is closed.
	select {
	case b.answering <- struct{}{}:
	case <-ctx.Done():
		finish()
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.answering }()
		finish()
	}()
}

// refusal is an answer to the person that moves nothing.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// comment carries out a /rollout comment; answer sends its answers (a
// reply, the final reaction, the deployment status), after its write.
func (b *Bot) comment(ctx context.Context, tk *ticket, p payload) (outcome string, answer func(context.Context)) {
	repo, err := github.ParseRepo(p.Repository.FullName)
	if err != nil {
		return "failed", func(context.Context) {}
	}
	gh := b.o.GitHub(p.Installation.ID)
	log := b.log.With("repo", repo.String(), "pr", p.Issue.Number, "comment", p.Comment.ID, "user", p.Comment.User.Login)
	react := func(ctx context.Context, r github.Reaction) {
		if err := gh.React(ctx, repo, p.Comment.ID, r); err != nil {
			log.Warn("reaction", "reaction", r, "err", err)
		}
	}
	reply := func(ctx context.Context, body string) {
		if _, err := gh.Reply(ctx, repo, p.Issue.Number, body); err != nil {
			log.Warn("reply", "err", err)
		}
	}
	// 👀 says "seen" while the command runs; it need not hold it up.
	eyes := make(chan struct{})
	go func() { defer close(eyes); react(ctx, github.ReactionEyes) }()
	// say answers with body and a final reaction, which goes last: it
	// tells the person (and the tests) that the command is over.
	say := func(body string, final github.Reaction, beside func()) func(context.Context) {
		return func(ctx context.Context) {
			var wg sync.WaitGroup
			if beside != nil {
				wg.Add(1)
				go func() { defer wg.Done(); beside() }()
			}
			reply(ctx, body)
			wg.Wait()
			<-eyes
			react(ctx, final)
		}
	}
	cmd, perr := command.Parse(p.Comment.Body)
	if perr != nil {
		return "malformed", say(fmt.Sprintf("@%s, I could not read that command: %s", p.Comment.User.Login, perr), github.ReactionConfused, nil)
	}
	res, err := b.run(ctx, tk, gh, repo, p, *cmd)
	if err != nil {
		var rf *refusal
		if errors.As(err, &rf) || rollout.IsRefused(err) {
			log.Info("refused", "command", cmd.String(), "reason", err)
			return "refused", say(fmt.Sprintf("@%s, nothing moved: %s", p.Comment.User.Login, err), github.ReactionConfused, nil)
		}
		log.Error("command failed", "command", cmd.String(), "err", err)
		return "failed", say(fmt.Sprintf("@%s, `%s` failed: %v\n\nNothing was changed unless the table in a later comment says so; try again, or ask whoever runs the bot to look at its log.", p.Comment.User.Login, cmd.String(), err), github.ReactionConfused, nil)
	}
	log.Info("done", "command", cmd.String(), "outcome", res.outcome)
	return res.outcome, say(res.body, github.ReactionRocket, res.deployment)
}

// result is what a command did: its outcome, the reply, and the GitHub
// Deployment status to post (nil: none), all sent after its write.
type result struct {
	outcome, body string
	deployment    func()
}

// run decides and applies a parsed command. The reads (the service and
// route from the store; the permission, the pull request and its checks
// from GitHub) run concurrently with other commands; only the write takes
// its turn (tk).
func (b *Bot) run(ctx context.Context, tk *ticket, gh GitHub, repo github.Repo, p payload, cmd command.Command) (result, error) {
	if cmd.Verb == command.Help {
		return result{outcome: "answered", body: command.Usage}, nil
	}
	svc, err := b.service(ctx, repo, cmd.Service)
	if err != nil {
		return result{}, err
	}
	moves := cmd.Verb == command.SetPercent || cmd.Verb == command.Finish || cmd.Verb == command.Abort
	if moves || cmd.Verb == command.Pause || cmd.Verb == command.Resume {
		// Known early, so that commands on other services never wait for
		// this one's GitHub round trips.
		b.seq.key(tk, svc.Name)
	} else {
		b.seq.release(tk)
	}
	login := p.Comment.User.Login
	// The pull request (and then, if the policy requires them, its
	// commit's checks) is fetched while the permission is checked: all are
	// GitHub round trips a move needs.
	type prResult struct {
		pr  *github.PullRequest
		err error
	}
	prc := make(chan prResult, 1)
	if moves {
		go func() {
			pr, err := gh.PullRequest(ctx, repo, p.Issue.Number)
			if err == nil && cmd.Verb != command.Abort { // going back never waits for checks
				err = b.checksGreen(ctx, gh, repo, svc, pr)
			}
			prc <- prResult{pr, err}
		}()
	}
	// The route is read from the store while GitHub answers the
	// permission check too; it is used only if the person may act.
	type routeResult struct {
		route *v1alpha1.Route
		err   error
	}
	rtc := make(chan routeResult, 1)
	go func() {
		route, err := b.route(ctx, svc.Name)
		rtc <- routeResult{route, err}
	}()
	if err := b.allowed(ctx, gh, repo, login, svc); err != nil {
		if moves {
			<-prc
		}
		<-rtc
		return result{}, err
	}
	rt := <-rtc
	route, err := rt.route, rt.err
	if err != nil {
		if moves {
			<-prc
		}
		return result{}, err
	}
	switch cmd.Verb {
	case command.Status:
		return result{outcome: "answered", body: b.describe(svc.Name, route, nil, "Status of")}, nil
	case command.Pause, command.Resume:
		paused := cmd.Verb == command.Pause
		if err := b.seq.turn(ctx, tk); err != nil {
			return result{}, err
		}
		if err := b.o.Deploy.As(login, "bot: "+cmd.String()).SetPaused(ctx, svc.Name, paused); err != nil {
			return result{}, err
		}
		what := "paused: scheduled promotion leaves its canary where it is until `/rollout resume`"
		if !paused {
			what = "resumed: scheduled promotion moves its canary again, one step per interval"
		}
		return result{outcome: "answered", body: fmt.Sprintf("@%s `%s` %s. Traffic did not move.", login, svc.Name, what)}, nil
	}
	got := <-prc
	if got.err != nil {
		return result{}, got.err
	}
	pr := got.pr
	rev, err := b.revisionFor(ctx, svc, route, pr, p.Comment.CreatedAt)
	if err != nil {
		return result{}, err
	}
	op, err := Plan(cmd, pr.Number, rev)
	if err != nil {
		return result{}, err
	}
	after, before, err := b.rollout(ctx, tk, login, fmt.Sprintf("bot: %s on #%d", cmd.String(), pr.Number), svc.Name, op)
	if err != nil {
		return result{}, err
	}
	b.seq.release(tk)
	why := fmt.Sprintf("`%s` by @%s", cmd.String(), login)
	return result{outcome: "moved",
		body:       b.describe(svc.Name, after, before, fmt.Sprintf("@%s moved traffic with `%s` on", login, cmd.String())),
		deployment: func() { b.deploymentStatus(ctx, gh, repo, pr, svc.Name, rev, after, why) },
	}, nil
}

// checksGreen refuses a move when the service's policy requires checks
// (requireChecks) and the commit's are not all green: the PR's head for an
// open PR (its preview is of that commit), the merge commit for a merged
// one. A check with no result is not green.
func (b *Bot) checksGreen(ctx context.Context, gh GitHub, repo github.Repo, svc *v1alpha1.Service, pr *github.PullRequest) error {
	req := svc.Spec.Rollout.RequireChecks
	if !req.Required() {
		return nil
	}
	sha := pr.HeadSHA
	if pr.Merged {
		sha = pr.MergeCommitSHA
	}
	var names []string
	if !req.All {
		names = req.Names
	}
	c, err := gh.ChecksGreen(ctx, repo, sha, names)
	if err != nil {
		return err
	}
	if c.Green {
		return nil
	}
	if req.All && len(c.Passed)+len(c.Pending)+len(c.Failed) == 0 {
		return refuse("`%s` requires the checks of commit %s to be green (requireChecks: true), and none has reported on it yet. Wait for them to pass and comment again", svc.Name, short(sha))
	}
	var not []string
	list := func(what string, names []string) {
		if len(names) > 0 {
			not = append(not, what+" "+quoteAll(names))
		}
	}
	list("failing:", c.Failed)
	list("still running:", c.Pending)
	list("missing (no result):", c.Missing)
	return refuse("`%s` requires the checks of commit %s to be green (requireChecks), and they are not: %s. Wait for them to pass and comment again", svc.Name, short(sha), strings.Join(not, "; "))
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "`" + n + "`"
	}
	return strings.Join(q, ", ")
}

// servicesOf lists the services deployed from repo. What the Action
// applies carries the repository's label, so the store (the API server, on
// a cluster) selects them, with a label written by hand in the
// repository's own case ("Acme.Web" beside the Action's "acme.web"), and
// the services that carry no such label at all (marked by the annotation
// alone, as by hand); other repositories' services are not read. Only when
// neither list holds one of repo's are all services read, for a
// hand-written label in some other case. The repository the annotation (or
// else the label) names decides, compared as GitHub compares names:
// without regard to case.
func (b *Bot) servicesOf(ctx context.Context, repo github.Repo) ([]store.Object, error) {
	var objs []store.Object
	add := func(sel labels.Selector) error {
		got, err := b.o.Deploy.List(ctx, store.KindService, sel)
		for _, o := range got {
			if strings.EqualFold(repositoryOf(o), repo.String()) {
				objs = append(objs, o)
			}
		}
		return err
	}
	// The two selections are disjoint: no service is in both.
	if err := add(labelledFor(repo)); err != nil {
		return nil, err
	}
	if err := add(unlabelled); err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		if err := add(labels.Everything()); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(objs, func(a, b store.Object) int { return strings.Compare(a.GetName(), b.GetName()) })
	return objs, nil
}

// labelledFor selects the objects labelled for repo: with the Action's
// value, or with "owner.name" in the repository's own case.
func labelledFor(repo github.Repo) labels.Selector {
	values := []string{v1alpha1.RepositoryLabelValue(repo.String())}
	if own := strings.Replace(repo.String(), "/", ".", 1); own != values[0] && len(validation.IsValidLabelValue(own)) == 0 {
		values = append(values, own)
	}
	r, err := labels.NewRequirement(v1alpha1.RepositoryLabelKey, selection.In, values)
	if err != nil {
		panic(err) // the values were checked
	}
	return labels.NewSelector().Add(*r)
}

// unlabelled selects objects without the repository label.
var unlabelled = func() labels.Selector {
	r, err := labels.NewRequirement(v1alpha1.RepositoryLabelKey, selection.DoesNotExist, nil)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*r)
}()

// service picks the repository's service the command is about.
func (b *Bot) service(ctx context.Context, repo github.Repo, name string) (*v1alpha1.Service, error) {
	objs, err := b.servicesOf(ctx, repo)
	if err != nil {
		return nil, err
	}
	var mine []*v1alpha1.Service
	var names []string
	for _, o := range objs {
		s := o.(*v1alpha1.Service)
		mine = append(mine, s)
		names = append(names, "`"+s.Name+"`")
	}
	slices.Sort(names)
	switch {
	case len(mine) == 0:
		return nil, refuse("no service in namespace %s was deployed from %s (the Action marks what it applies with %s)", b.ns(), repo, v1alpha1.RepositoryAnnotationKey)
	case name != "":
		for _, s := range mine {
			if s.Name == name {
				return s, nil
			}
		}
		return nil, refuse("%s has no service %q; its services are %s", repo, name, strings.Join(names, ", "))
	case len(mine) > 1:
		return nil, refuse("%s has several services (%s); name one, e.g. `/rollout %s 50`", repo, strings.Join(names, ", "), mine[0].Name)
	}
	return mine[0], nil
}

// allowed: write access (admin, maintain, write) from the collaborator
// permission API — never author_association — or one of the service's
// approvers (a login, or an org/team the person is an active member of).
func (b *Bot) allowed(ctx context.Context, gh GitHub, repo github.Repo, login string, svc *v1alpha1.Service) error {
	perm, err := gh.Permission(ctx, repo, login)
	if err != nil {
		return err
	}
	if perm.CanWrite() {
		return nil
	}
	for _, a := range svc.Spec.Rollout.Approvers {
		if strings.EqualFold(a, login) {
			return nil
		}
		if strings.Contains(a, "/") {
			ok, err := gh.IsTeamMember(ctx, a, login)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
	}
	return refuse("moving the traffic of `%s` takes write access to %s or being one of its approvers, and your permission is %s. Someone with write access can run the command for you", svc.Name, repo, perm)
}

func (b *Bot) route(ctx context.Context, name string) (*v1alpha1.Route, error) {
	o, err := b.o.Deploy.Get(ctx, store.KindRoute, name)
	if apierrors.IsNotFound(err) {
		return nil, refuse("service %s has no route yet; it is still being deployed", name)
	}
	if err != nil {
		return nil, err
	}
	return o.(*v1alpha1.Route), nil
}

// revisionFor finds the pull request's revision: an open PR's preview
// (the pr-N target), a merged PR's revision built from its merge commit.
// The person approved what they saw: an open PR's preview must be of its
// head commit and must have existed when the comment was written.
func (b *Bot) revisionFor(ctx context.Context, svc *v1alpha1.Service, route *v1alpha1.Route, pr *github.PullRequest, commented time.Time) (string, error) {
	if pr.Merged {
		if pr.MergeCommitSHA == "" {
			return "", refuse("pull request #%d is merged but GitHub gives no merge commit", pr.Number)
		}
		objs, err := b.o.Deploy.List(ctx, store.KindRevision, labels.SelectorFromSet(labels.Set{v1alpha1.ConfigurationLabelKey: svc.Name}))
		if err != nil {
			return "", err
		}
		var found string
		for _, o := range objs {
			if o.GetAnnotations()[v1alpha1.GitCommitAnnotationKey] == pr.MergeCommitSHA && o.GetName() > found {
				found = o.GetName()
			}
		}
		if found == "" {
			return "", refuse("no revision of `%s` was built from the merge commit %s of pull request #%d yet; the deploy on push makes it", svc.Name, short(pr.MergeCommitSHA), pr.Number)
		}
		return found, nil
	}
	if pr.State != "open" {
		return "", refuse("pull request #%d is closed without being merged; its preview is gone", pr.Number)
	}
	target := PreviewTarget(pr.Number)
	i := rollout.Find(route.Spec.Rollout.Traffic, target)
	if i < 0 || route.Spec.Rollout.Traffic[i].RevisionName == "" {
		return "", refuse("pull request #%d has no preview of `%s` (no %s target); the Action's preview mode deploys one", pr.Number, svc.Name, target)
	}
	rev := route.Spec.Rollout.Traffic[i].RevisionName
	o, err := b.o.Deploy.Get(ctx, store.KindRevision, rev)
	if err != nil {
		return "", err
	}
	commit := o.GetAnnotations()[v1alpha1.GitCommitAnnotationKey]
	switch {
	case commit != pr.HeadSHA:
		return "", refuse("the preview (revision %s, commit %s) is not the pull request's head %s: a commit was pushed after it was deployed. Wait for the new preview, look at it, and comment again", rev, short(commit), short(pr.HeadSHA))
	case !commented.IsZero() && o.GetCreationTimestamp().Time.After(commented):
		return "", refuse("the preview was deployed again (revision %s) after your comment: a commit was pushed since you looked. Look at the new preview and comment again", rev)
	}
	return rev, nil
}

// describe is the reply: the traffic (before → after), the URLs and what
// to type next.
func (b *Bot) describe(service string, route *v1alpha1.Route, before []v1alpha1.TrafficTarget, title string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s `%s`:\n\n", title, service)
	after := route.Spec.Rollout.Traffic
	if before == nil {
		before = after
	}
	sb.WriteString(Table(before, after))
	if d := route.Status.Domain; d != "" {
		fmt.Fprintf(&sb, "\n%s serves the split", b.o.URL(d))
		for _, t := range after {
			if t.Name != "" {
				fmt.Fprintf(&sb, "; %s is %s", t.Name, b.o.URL(t.Name+"."+d))
			}
		}
		sb.WriteString(".\n")
	}
	sb.WriteString("\nNext: `/rollout 50` (any percent), `/rollout finish` to send everything to the canary, `/rollout abort` to go back, `/rollout status`.\n")
	return sb.String()
}

// deploymentStatus tells the GitHub Deployment the Action made for the
// revision (the PR's preview environment pr-<N> at its head, or the merge
// commit's deployment) how much traffic it now serves: in_progress while
// it is a canary, success at 100% or back at 0% (it still answers at its
// own URL). No deployment, no status; a failure here is logged, as the
// traffic has moved either way.
func (b *Bot) deploymentStatus(ctx context.Context, gh GitHub, repo github.Repo, pr *github.PullRequest, service, rev string, route *v1alpha1.Route, why string) {
	env, sha := PreviewTarget(pr.Number), pr.HeadSHA
	if pr.Merged {
		env, sha = "", pr.MergeCommitSHA
	}
	id, found, err := gh.LatestDeployment(ctx, repo, env, sha)
	if err != nil || !found {
		if err != nil {
			b.log.Warn("finding the deployment", "repo", repo.String(), "err", err)
		}
		return
	}
	pct := rollout.ByRevision(route.Spec.Rollout.Traffic)[rev]
	st := github.DeploymentStatus{State: github.StateInProgress,
		Description: fmt.Sprintf("%s: %d%% of the traffic after %s", service, pct, why)}
	if pct == 0 || pct == 100 {
		st.State = github.StateSuccess
	}
	if d := route.Status.Domain; d != "" {
		st.EnvironmentURL = b.o.URL(d)
		if !pr.Merged {
			st.EnvironmentURL = b.o.URL(PreviewTarget(pr.Number) + "." + d)
		}
	}
	if err := gh.SetDeploymentStatus(ctx, repo, id, st); err != nil {
		b.log.Warn("deployment status", "repo", repo.String(), "deployment", id, "err", err)
	}
}

// closed removes a closed pull request's preview target from the
// repository's routes.
func (b *Bot) closed(ctx context.Context, tk *ticket, p payload) string {
	repo, err := github.ParseRepo(p.Repository.FullName)
	if err != nil {
		return "failed"
	}
	objs, err := b.servicesOf(ctx, repo)
	if err != nil {
		return "failed"
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	b.seq.key(tk, names...)
	target := PreviewTarget(p.Number)
	outcome := "answered"
	for _, o := range objs {
		if rt, err := b.route(ctx, o.GetName()); err != nil || rollout.Find(rt.Spec.Rollout.Traffic, target) < 0 {
			continue
		}
		_, _, err := b.rollout(ctx, tk, "elafros-bot", fmt.Sprintf("bot: pull request #%d closed", p.Number), o.GetName(), func(t rollout.Traffic, ready rollout.ReadyFunc) (rollout.Traffic, error) {
			return rollout.Unstage(t, target, ready)
		})
		switch {
		case err == nil:
			outcome = "moved"
		case apierrors.IsNotFound(err):
		default:
			b.log.Warn("removing a preview", "service", o.GetName(), "target", target, "err", err)
			outcome = "failed"
		}
	}
	return outcome
}

func (b *Bot) ns() string {
	return b.o.Deploy.Namespace()
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
