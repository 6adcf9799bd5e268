package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"

	"github.com/elafros/elafros/internal/kube"
	"github.com/elafros/elafros/internal/reconcile"
)

// Elector decides which of several replicas sharing a journal carries out
// commands. Run calls lead each time this replica becomes the leader, with
// a context that ends when it stops being one, and returns when ctx ends
// and the last lead has returned. Two calls of lead never overlap.
type Elector interface {
	Run(ctx context.Context, lead func(ctx context.Context))
}

// LeaseConfig names the coordination.k8s.io Lease the replicas share and
// its timing (client-go's leaderelection: a leader that cannot renew
// within RenewDeadline stops; the others take over LeaseDuration after its
// last renewal).
type LeaseConfig struct {
	Namespace, Name string
	// Identity is this replica's (default: the host name and the pid).
	Identity string
	// Defaults 15s, 10s and 2s, as Kubernetes' own controllers.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// KeepOnStop leaves the Lease to expire when Run ends instead of
	// handing it over at once: how a crash looks to the other replicas.
	KeepOnStop bool
}

// LeaseElector is the Elector on a Lease.
type LeaseElector struct {
	cs      kubernetes.Interface
	c       LeaseConfig
	log     *slog.Logger
	leading atomic.Bool
}

// NewLeaseElector checks the configuration and returns the elector.
func NewLeaseElector(cs kubernetes.Interface, c LeaseConfig, log *slog.Logger) (*LeaseElector, error) {
	if c.Namespace == "" || c.Name == "" {
		return nil, errors.New("leader election: the Lease's namespace and name must not be empty")
	}
	if c.Identity == "" {
		h, _ := os.Hostname()
		c.Identity = h + "_" + strconv.Itoa(os.Getpid())
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline <= 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod <= 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.LeaseDuration <= c.RenewDeadline || float64(c.RenewDeadline) <= leaderelection.JitterFactor*float64(c.RetryPeriod) {
		return nil, fmt.Errorf("leader election: want lease duration (%s) > renew deadline (%s) > %.1f × retry period (%s)",
			c.LeaseDuration, c.RenewDeadline, leaderelection.JitterFactor, c.RetryPeriod)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LeaseElector{cs: cs, c: c, log: log}, nil
}

// Leading says whether this replica holds the Lease now.
func (l *LeaseElector) Leading() bool { return l.leading.Load() }

// Identity is this replica's name in the Lease.
func (l *LeaseElector) Identity() string { return l.c.Identity }

// Run implements Elector.
func (l *LeaseElector) Run(ctx context.Context, lead func(ctx context.Context)) {
	// client-go starts OnStartedLeading in a goroutine and does not wait
	// for it when leadership ends; the mutex makes a new term wait until
	// the previous one has stopped working.
	var term sync.Mutex
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: l.c.Namespace, Name: l.c.Name},
				Client:     l.cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: l.c.Identity},
			},
			LeaseDuration: l.c.LeaseDuration, RenewDeadline: l.c.RenewDeadline, RetryPeriod: l.c.RetryPeriod,
			// Released below once the term has stopped working, not
			// while it may still be winding down.
			ReleaseOnCancel: false,
			Name:            l.c.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(c context.Context) {
					term.Lock()
					defer term.Unlock()
					if c.Err() != nil {
						return
					}
					l.leading.Store(true)
					defer l.leading.Store(false)
					l.log.Info("leading: carrying out commands", "identity", l.c.Identity, "lease", l.c.Namespace+"/"+l.c.Name)
					lead(c)
					l.log.Info("stopped leading", "identity", l.c.Identity)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil { // the configuration was checked in NewLeaseElector
			l.log.Error("leader election", "err", err)
			return
		}
		le.Run(ctx)
	}
	term.Lock()
	defer term.Unlock()
	if !l.c.KeepOnStop {
		l.release()
	}
}

// release hands the Lease over (as client-go's ReleaseOnCancel does: no
// holder, a one-second duration), if this replica still holds it.
func (l *LeaseElector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), l.c.RenewDeadline)
	defer cancel()
	leases := l.cs.CoordinationV1().Leases(l.c.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease, err := leases.Get(ctx, l.c.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != l.c.Identity {
			return nil
		}
		none, one, now := "", int32(1), metav1.NewMicroTime(time.Now())
		lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.AcquireTime, lease.Spec.RenewTime = &none, &one, &now, &now
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		l.log.Warn("releasing the Lease; the other replicas wait for it to expire", "err", err)
	}
}

// changes is a Journal that says when entries become pending
// (KubeJournal: a watch).
type changes interface {
	Changes(ctx context.Context, failed func(error)) <-chan struct{}
}

// leadState is what enqueue and the workers share with the term: whether
// this replica leads, and the deliveries it finished in this term (so a
// journal listing taken before an entry was finished does not run it
// again).
type leadState struct {
	// replaying makes looks at the journal take turns: a listing taken
	// before another must not be acted on after it (it could show as
	// pending an entry the later one knew was done).
	replaying sync.Mutex
	mu        sync.RWMutex
	leading   bool
	done      sync.Map // delivery → struct{}
}

// term is one stretch of leadership: workers carry out commands, pending
// entries are replayed, entries recorded by other replicas are picked up,
// the journal is pruned, failed deliveries are recovered and Options.Lead
// runs, all until ctx ends. Without an Elector it is the whole of Run.
func (b *Bot) term(ctx context.Context, workers int) {
	b.lead.mu.Lock()
	b.drain() // a stale queue from an earlier term: the journal is the truth
	b.lead.done.Clear()
	b.lead.leading = true
	b.lead.mu.Unlock()
	defer func() {
		b.lead.mu.Lock()
		b.lead.leading = false
		b.lead.mu.Unlock()
		b.wg.Wait()
		b.drain()
	}()
	for range workers {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-b.work:
					if ctx.Err() != nil {
						b.running.Delete(e.Delivery)
						return
					}
					b.handle(ctx, e)
					b.lead.done.Store(e.Delivery, struct{}{})
					b.running.Delete(e.Delivery)
				}
			}
		}()
	}
	if err := b.replay(); err != nil {
		b.log.Warn("reading the journal", "err", err)
	}
	b.ready.Store(true)
	b.every(ctx, time.Hour, func() {
		if n, err := b.o.Journal.Prune(time.Now().Add(-b.o.RecoverWindow)); err != nil {
			b.log.Warn("pruning the journal", "err", err)
		} else if n > 0 {
			b.log.Info("pruned the journal", "entries", n)
		}
	})
	if b.o.Deliveries != nil {
		b.every(ctx, b.o.RecoverEvery, func() {
			if err := b.Recover(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("recovering failed deliveries", "err", err)
			}
		})
	}
	if b.o.Elect != nil {
		// Other replicas record what they accept without carrying it
		// out: the leader finds it in the journal, at once where the
		// journal says when it changes, and at every look.
		look := func() {
			if err := b.replay(); err != nil && ctx.Err() == nil {
				b.log.Warn("reading the journal", "err", err)
			}
		}
		b.every(ctx, b.o.PollEvery, look)
		if n, ok := b.o.Journal.(changes); ok {
			ch := n.Changes(ctx, func(err error) {
				if ctx.Err() == nil {
					b.log.Warn("the journal cannot be watched; looking at it every "+b.o.PollEvery.String(), "err", err)
				}
			})
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case <-ch:
						look()
					}
				}
			}()
		}
	}
	if b.o.Lead != nil {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for ctx.Err() == nil {
				if err := b.o.Lead(ctx); err != nil && ctx.Err() == nil {
					b.log.Error("the leader's companion stopped; restarting it", "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(5 * time.Second):
					}
				}
			}
		}()
	}
	<-ctx.Done()
}

// replay queues the journal's pending entries, and forgets the marks of
// finished deliveries the journal no longer lists as pending.
func (b *Bot) replay() error {
	b.lead.replaying.Lock()
	defer b.lead.replaying.Unlock()
	pending, err := b.o.Journal.Pending()
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(pending))
	for _, e := range pending {
		listed[e.Delivery] = true
		if _, busy := b.running.Load(e.Delivery); !busy {
			if _, done := b.lead.done.Load(e.Delivery); !done {
				b.log.Info("carrying out an accepted command", "delivery", e.Delivery)
			}
		}
		b.enqueue(e)
	}
	b.lead.done.Range(func(k, _ any) bool {
		if !listed[k.(string)] {
			b.lead.done.Delete(k)
		}
		return true
	})
	return nil
}

// registerLeader adds elafros_bot_leader to the bot's metrics: 1 while
// this replica carries out commands, so a dashboard shows which one does
// (and that exactly one does).
func (b *Bot) registerLeader() {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "elafros_bot_leader",
		Help: "1 while this replica leads: it carries out the commands every replica accepts, and runs the reconciler."},
		func() float64 {
			b.lead.mu.RLock()
			defer b.lead.mu.RUnlock()
			if b.lead.leading {
				return 1
			}
			return 0
		})
	if err := b.reg.Register(g); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		b.log.Warn("metrics", "err", err)
	}
}

// every runs f now and then every d until ctx ends.
func (b *Bot) every(ctx context.Context, d time.Duration, f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			f()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// drain empties the work queue; what it held stays pending in the journal.
func (b *Bot) drain() {
	for {
		select {
		case e := <-b.work:
			b.running.Delete(e.Delivery)
		default:
			return
		}
	}
}

// Reconciler returns an Options.Lead that runs the bundled reconciler on
// cfg's cluster while the bot leads: kube.NewReconciler and its Run, what
// "elafros reconcile" runs, so a cluster with the bot needs no other
// controller.
func Reconciler(cfg *rest.Config, o kube.ReconcilerOptions, log *slog.Logger) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		r, err := kube.NewReconciler(ctx, cfg, o)
		if err != nil {
			return fmt.Errorf("the bundled reconciler: %w", err)
		}
		return r.Run(ctx, reconcile.RunOptions{Logger: log, Notify: r.Notify})
	}
}
