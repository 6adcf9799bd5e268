package serve_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/elafros/elafros/internal/local"
	"github.com/elafros/elafros/internal/local/serve"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startIn(dir string) (*serve.Server, error) {
	return serve.Start(context.Background(), serve.Options{DataDir: dir, APIAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		RegistryAddr: "127.0.0.1:0", NoSync: true, Logger: quiet()})
}

// TestLayoutZeroIsMigrated: a data directory from before layouts (a
// store without a version, the old registry's blobs/) starts: the blobs,
// unreachable without the manifests that were never kept, are removed.
func TestLayoutZeroIsMigrated(t *testing.T) {
	dir := t.TempDir()
	srv, err := startIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	setStoreLayout(t, filepath.Join(dir, "elafros.db"), nil)
	blob := filepath.Join(dir, "blobs", "sha256", "0123")
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err = startIn(dir)
	if err != nil {
		t.Fatalf("a layout-0 data directory: %v", err)
	}
	srv.Close()
	if _, err := os.Stat(filepath.Join(dir, "blobs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blobs/ of layout 0 is still there: %v", err)
	}
}

// TestUnknownLayoutIsRefusedThenReset: a data directory of a layout this
// build does not read is refused, unchanged, with what to do; Reset
// starts over.
func TestUnknownLayoutIsRefusedThenReset(t *testing.T) {
	dir := t.TempDir()
	srv, err := startIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	keep := filepath.Join(dir, "notes.txt") // not elafros': Reset leaves it
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "elafros.db")
	setStoreLayout(t, db, []byte("9"))
	_, err = startIn(dir)
	var le *local.LayoutError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "--reset --yes") {
		t.Fatalf("Start on layout 9: err = %v, want a LayoutError saying what to do", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "registry")); err != nil {
		t.Errorf("the refused start changed the data directory: %v", err)
	}
	if err := serve.Reset(dir, quiet()); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	for _, e := range []string{"elafros.db", "registry", "images", "logs", "builds", "run"} {
		if _, err := os.Stat(filepath.Join(dir, e)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Reset %s is still there (%v)", e, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("Reset removed a file that is not elafros': %v", err)
	}
	srv, err = startIn(dir)
	if err != nil {
		t.Fatalf("Start after Reset: %v", err)
	}
	srv.Close()
}

// TestResetRefusesWhileInUse: Reset does not pull the data directory
// from under a running serve.
func TestResetRefusesWhileInUse(t *testing.T) {
	dir := t.TempDir()
	srv, err := startIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := serve.Reset(dir, quiet()); !errors.Is(err, serve.ErrInUse) {
		t.Fatalf("Reset while serving: err = %v, want ErrInUse", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "elafros.db")); err != nil {
		t.Errorf("the refused Reset removed the store: %v", err)
	}
}

// setStoreLayout rewrites the store's layout version (nil: none).
func setStoreLayout(t *testing.T, path string, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if v == nil {
			return tx.Bucket([]byte("meta")).Delete([]byte("layout"))
		}
		return tx.Bucket([]byte("meta")).Put([]byte("layout"), v)
	}); err != nil {
		t.Fatal(err)
	}
}
