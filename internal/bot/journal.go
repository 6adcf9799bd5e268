package bot

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Entry is one accepted delivery in the journal.
type Entry struct {
	Delivery   string          `json:"delivery"`
	Event      string          `json:"event"`
	Payload    json.RawMessage `json:"payload"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Done       bool            `json:"done"`
	Outcome    string          `json:"outcome,omitempty"`
}

// Journal records accepted deliveries durably: an entry is written (and
// synced) before the delivery is answered, and marked done when its
// command has been carried out. Pending entries are replayed at start, so
// a command acknowledged just before a crash still runs; a delivery id
// seen before is never applied twice.
type Journal interface {
	// Record stores e unless its delivery is known; it says whether it
	// was new.
	Record(e Entry) (bool, error)
	// Finish marks a delivery done with its outcome.
	Finish(delivery, outcome string) error
	// Pending are the entries not done, oldest first.
	Pending() ([]Entry, error)
	// Seen says a delivery id is known (pending or done).
	Seen(delivery string) (bool, error)
	// Prune forgets done entries received before t (GitHub keeps
	// deliveries for 3 days: older ones cannot come back).
	Prune(t time.Time) (int, error)
	Close() error
}

var bucket = []byte("deliveries")

// BoltJournal is the Journal in a bbolt file (the local backend, one
// replica).
type BoltJournal struct{ db *bolt.DB }

// OpenBoltJournal opens (or creates) the journal file at path.
func OpenBoltJournal(path string) (*BoltJournal, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("bot journal %s: %w (is another bot using it?)", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	// A lone write waits this long for company before it commits; under
	// load the next batch gathers while a commit syncs anyway.
	db.MaxBatchDelay = 2 * time.Millisecond
	return &BoltJournal{db: db}, nil
}

// Record implements Journal.
func (j *BoltJournal) Record(e Entry) (bool, error) {
	if e.Delivery == "" {
		return false, errors.New("journal: a delivery without X-GitHub-Delivery cannot be recorded")
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	isNew := false
	// Batch: deliveries arriving together share one synced commit instead
	// of queueing for a commit (two fsyncs) each; fn may run again if the
	// batch is retried, so it sets isNew afresh.
	err = j.db.Batch(func(tx *bolt.Tx) error {
		isNew = false
		bk := tx.Bucket(bucket)
		if bk.Get([]byte(e.Delivery)) != nil {
			return nil
		}
		isNew = true
		return bk.Put([]byte(e.Delivery), b)
	})
	return isNew, err
}

// Finish implements Journal.
func (j *BoltJournal) Finish(delivery, outcome string) error {
	return j.db.Batch(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		v := bk.Get([]byte(delivery))
		if v == nil {
			return fmt.Errorf("journal: delivery %s is not recorded", delivery)
		}
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		e.Done, e.Outcome = true, outcome
		e.Payload = nil // done: the payload is no longer needed
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return bk.Put([]byte(delivery), b)
	})
}

// Pending implements Journal.
func (j *BoltJournal) Pending() ([]Entry, error) {
	all, err := j.Entries()
	return slices.DeleteFunc(all, func(e Entry) bool { return e.Done }), err
}

// Entries are all the entries, done or not, oldest first (what the
// journal holds, for tests and inspection).
func (j *BoltJournal) Entries() ([]Entry, error) {
	var out []Entry
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	sortEntries(out)
	return out, err
}

// Seen implements Journal.
func (j *BoltJournal) Seen(delivery string) (bool, error) {
	seen := false
	err := j.db.View(func(tx *bolt.Tx) error {
		seen = tx.Bucket(bucket).Get([]byte(delivery)) != nil
		return nil
	})
	return seen, err
}

// Prune implements Journal.
func (j *BoltJournal) Prune(t time.Time) (int, error) {
	n := 0
	err := j.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		var old [][]byte
		if err := bk.ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e.Done && e.ReceivedAt.Before(t) {
				old = append(old, slices.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// Close implements Journal.
func (j *BoltJournal) Close() error { return j.db.Close() }

func sortEntries(es []Entry) {
	slices.SortStableFunc(es, func(a, b Entry) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
}
