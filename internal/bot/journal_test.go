package bot

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBoltJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := OpenBoltJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i, d := range []string{"b", "a", "c"} {
		isNew, err := j.Record(Entry{Delivery: d, Event: "issue_comment", Payload: json.RawMessage(`{"n":1}`), ReceivedAt: t0.Add(time.Duration(i) * time.Minute)})
		if err != nil || !isNew {
			t.Fatalf("Record(%s) = %v, %v", d, isNew, err)
		}
	}
	if isNew, err := j.Record(Entry{Delivery: "a", ReceivedAt: t0.Add(time.Hour)}); err != nil || isNew {
		t.Errorf("a second Record of a: %v, %v; want not new", isNew, err)
	}
	if _, err := j.Record(Entry{}); err == nil {
		t.Error("a delivery without an id was recorded")
	}
	if err := j.Finish("a", "moved"); err != nil {
		t.Fatal(err)
	}
	if err := j.Finish("zzz", "moved"); err == nil {
		t.Error("finished an unknown delivery")
	}
	// Durable: what is pending survives a reopen, in arrival order.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = OpenBoltJournal(path); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	pending, err := j.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range pending {
		got = append(got, e.Delivery+":"+string(e.Payload))
	}
	if diff := cmp.Diff([]string{`b:{"n":1}`, `c:{"n":1}`}, got); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}
	for d, want := range map[string]bool{"a": true, "b": true, "nope": false} {
		if seen, err := j.Seen(d); err != nil || seen != want {
			t.Errorf("Seen(%s) = %v, %v", d, seen, err)
		}
	}
	// Prune forgets done entries only.
	if n, err := j.Prune(t0.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("Prune = %d, %v; want 1 (a)", n, err)
	}
	if seen, _ := j.Seen("a"); seen {
		t.Error("a pruned entry is still seen")
	}
	if seen, _ := j.Seen("b"); !seen {
		t.Error("a pending entry was pruned")
	}
}
