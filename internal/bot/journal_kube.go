package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// The journal's ConfigMaps carry JournalLabel with the entry's state
// (JournalPending or JournalDone), so that Pending is one list by label
// and "kubectl get cm -l elafros.dev/bot-journal" shows the journal.
const (
	JournalLabel   = "elafros.dev/bot-journal"
	OutcomeLabel   = "elafros.dev/bot-outcome"
	JournalPending = "pending"
	JournalDone    = "done"
)

// maxPayload keeps an entry under the API server's 1 MiB object limit
// with room for metadata. The bot records only issue_comment and
// pull_request deliveries, which are tens of kilobytes (a comment is at
// most 65,536 characters).
const maxPayload = 900 << 10

// journalTimeout bounds one journal call: Record runs before the webhook
// is answered, and GitHub waits 10 s for that answer.
const journalTimeout = 5 * time.Second

// KubeJournal is the Journal as ConfigMaps in the bot's namespace, one per
// delivery, named after the delivery id. Every replica records into it;
// the API server's Create is the agreement between replicas that a
// delivery is new (the second Create of a name answers AlreadyExists), and
// a Create that succeeded is in etcd, so it is durable before the 202.
type KubeJournal struct {
	cs kubernetes.Interface
	ns string
}

// NewKubeJournal keeps the journal in namespace ns (the bot's own).
func NewKubeJournal(cs kubernetes.Interface, ns string) (*KubeJournal, error) {
	if ns == "" {
		return nil, errors.New("journal: the namespace of the bot's journal must not be empty")
	}
	return &KubeJournal{cs: cs, ns: ns}, nil
}

var plainDelivery = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?$`)

// JournalName is the ConfigMap name of a delivery: GitHub's GUIDs as they
// are (readable in kubectl), anything else hashed into a valid name.
func JournalName(delivery string) string {
	if plainDelivery.MatchString(delivery) {
		return "bot-delivery-" + delivery
	}
	sum := sha256.Sum256([]byte(delivery))
	return "bot-delivery-sha-" + hex.EncodeToString(sum[:20])
}

func (j *KubeJournal) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), journalTimeout)
}

// Record implements Journal.
func (j *KubeJournal) Record(e Entry) (bool, error) {
	if e.Delivery == "" {
		return false, errors.New("journal: a delivery without X-GitHub-Delivery cannot be recorded")
	}
	if len(e.Payload) > maxPayload {
		return false, fmt.Errorf("journal: delivery %s: payload of %d bytes is over the %d a ConfigMap entry holds", e.Delivery, len(e.Payload), maxPayload)
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = time.Now()
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: JournalName(e.Delivery), Namespace: j.ns,
			Labels: map[string]string{JournalLabel: JournalPending, "app.kubernetes.io/part-of": "elafros"},
		},
		Data: map[string]string{
			"delivery":   e.Delivery,
			"event":      e.Event,
			"receivedAt": e.ReceivedAt.UTC().Format(time.RFC3339Nano),
			"payload":    string(e.Payload),
		},
	}
	ctx, cancel := j.ctx()
	defer cancel()
	_, err := j.cs.CoreV1().ConfigMaps(j.ns).Create(ctx, cm, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("journal: recording delivery %s in namespace %s: %w", e.Delivery, j.ns, err)
	}
	return true, nil
}

// Finish implements Journal. The payload goes with it: a done entry only
// has to say that its delivery was seen.
func (j *KubeJournal) Finish(delivery, outcome string) error {
	ctx, cancel := j.ctx()
	defer cancel()
	cms := j.cs.CoreV1().ConfigMaps(j.ns)
	for {
		cm, err := cms.Get(ctx, JournalName(delivery), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("journal: delivery %s is not recorded", delivery)
		}
		if err != nil {
			return fmt.Errorf("journal: delivery %s: %w", delivery, err)
		}
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels[JournalLabel] = JournalDone
		cm.Labels[OutcomeLabel] = outcome
		delete(cm.Data, "payload")
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // written meanwhile (by nothing of ours today): read again
		}
		if err != nil {
			return fmt.Errorf("journal: finishing delivery %s: %w", delivery, err)
		}
		return nil
	}
}

func (j *KubeJournal) list(state string) ([]Entry, []string, error) {
	ctx, cancel := j.ctx()
	defer cancel()
	sel := labels.SelectorFromSet(labels.Set{JournalLabel: state}).String()
	l, err := j.cs.CoreV1().ConfigMaps(j.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, nil, fmt.Errorf("journal: listing %s entries in namespace %s: %w", state, j.ns, err)
	}
	out := make([]Entry, 0, len(l.Items))
	names := make([]string, 0, len(l.Items))
	for _, cm := range l.Items {
		e, err := entryOf(&cm)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, e)
		names = append(names, cm.Name)
	}
	return out, names, nil
}

func entryOf(cm *corev1.ConfigMap) (Entry, error) {
	at, err := time.Parse(time.RFC3339Nano, cm.Data["receivedAt"])
	if err != nil {
		return Entry{}, fmt.Errorf("journal: ConfigMap %s: receivedAt %q: want an RFC 3339 time", cm.Name, cm.Data["receivedAt"])
	}
	e := Entry{Delivery: cm.Data["delivery"], Event: cm.Data["event"], ReceivedAt: at,
		Done: cm.Labels[JournalLabel] == JournalDone, Outcome: cm.Labels[OutcomeLabel]}
	if p := cm.Data["payload"]; p != "" {
		e.Payload = []byte(p)
	}
	return e, nil
}

// Pending implements Journal.
func (j *KubeJournal) Pending() ([]Entry, error) {
	es, _, err := j.list(JournalPending)
	sortEntries(es)
	return es, err
}

// Seen implements Journal.
func (j *KubeJournal) Seen(delivery string) (bool, error) {
	ctx, cancel := j.ctx()
	defer cancel()
	_, err := j.cs.CoreV1().ConfigMaps(j.ns).Get(ctx, JournalName(delivery), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("journal: delivery %s: %w", delivery, err)
	}
	return true, nil
}

// Prune implements Journal.
func (j *KubeJournal) Prune(t time.Time) (int, error) {
	es, names, err := j.list(JournalDone)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	for i, e := range es {
		if !e.ReceivedAt.Before(t) {
			continue
		}
		err := j.cs.CoreV1().ConfigMaps(j.ns).Delete(ctx, names[i], metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err): // another replica pruned it first
		case err != nil:
			return n, fmt.Errorf("journal: pruning delivery %s: %w", e.Delivery, err)
		default:
			n++
		}
	}
	return n, nil
}

// Changes signals, until ctx ends, each time an entry becomes pending (in
// whichever replica recorded it), so that the leader carries out what a
// follower accepted at once rather than at its next look. Signals
// coalesce: one may stand for several entries. A watch that cannot be
// made is reported to failed and tried again, backing off to 30s; the
// leader's periodic look covers the gap.
func (j *KubeJournal) Changes(ctx context.Context, failed func(error)) <-chan struct{} {
	ch := make(chan struct{}, 1)
	sel := labels.SelectorFromSet(labels.Set{JournalLabel: JournalPending}).String()
	go func() {
		wait := time.Second
		for ctx.Err() == nil {
			w, err := j.cs.CoreV1().ConfigMaps(j.ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				failed(fmt.Errorf("journal: watching namespace %s: %w", j.ns, err))
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				wait = min(2*wait, 30*time.Second)
				continue
			}
			wait = time.Second
			for ev := range w.ResultChan() {
				if ev.Type == watch.Added {
					select {
					case ch <- struct{}{}:
					default: // one is waiting already
					}
				}
			}
			w.Stop()
		}
	}()
	return ch
}

// Close implements Journal; the cluster keeps the journal.
func (j *KubeJournal) Close() error { return nil }
