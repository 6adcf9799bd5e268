package local

import (
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/elafros/elafros/internal/store"
)

// TestSecondOpenIsRefused: a second process (here a second open of the
// file) gets ErrLocked within the lock timeout instead of hanging.
func TestSecondOpenIsRefused(t *testing.T) {
	_, path := open(t)
	start := time.Now()
	s, err := Open(path, WithNoSync(), WithLockTimeout(200*time.Millisecond))
	if err == nil {
		_ = s.Close()
		t.Fatal("a second Open of a store in use succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want ErrLocked naming %s", err, path)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}
}

// setLayout rewrites the layout key of a closed store (nil removes it,
// as a store written before versioning has none).
func setLayout(t *testing.T, path string, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if v == nil {
			return tx.Bucket(metaBucket).Delete(layoutKey)
		}
		return tx.Bucket(metaBucket).Put(layoutKey, v)
	}); err != nil {
		t.Fatal(err)
	}
}

func readLayout(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	_ = db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(metaBucket).Get(layoutKey))
		return nil
	})
	return v
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stored  []byte // nil: none, as before versioning
		wantErr string
		// wantAfter is the layout on disk after Open.
		wantAfter string
	}{
		{name: "pre-versioning store is stamped and read", stored: nil, wantAfter: "1"},
		{name: "current layout", stored: []byte("1"), wantAfter: "1"},
		{name: "newer layout is refused and left alone", stored: []byte("2"), wantErr: `data layout "2"`, wantAfter: "2"},
		{name: "unreadable layout is refused", stored: []byte("x7"), wantErr: `data layout "x7"`, wantAfter: "x7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := open(t)
			if _, err := s.Create(t.Context(), config("kept", "img:1")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			setLayout(t, path, tc.stored)
			s2, err := Open(path, WithNoSync())
			if tc.wantErr != "" {
				var le *LayoutError
				if err == nil {
					_ = s2.Close()
				}
				if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "elafros serve --reset --yes") {
					t.Fatalf("Open: err = %v, want a LayoutError with %s and what to do", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if _, err := s2.Get(t.Context(), store.KindConfiguration, "default", "kept"); err != nil {
					t.Errorf("the stored configuration: %v", err)
				}
				_ = s2.Close()
			}
			if got := readLayout(t, path); got != tc.wantAfter {
				t.Errorf("layout on disk = %q, want %q", got, tc.wantAfter)
			}
		})
	}
}
