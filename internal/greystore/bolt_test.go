package greystore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/greystore/greystoretest"
	bolterrors "go.etcd.io/bbolt/errors"
)

func openBolt(t testing.TB, path string, opt greystore.BoltOptions) *greystore.Bolt {
	t.Helper()
	b, err := greystore.OpenBolt(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBoltConformance(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	greystoretest.Run(t, func(t *testing.T) greystore.Store {
		// A short GCInterval, so the collector runs during the suite.
		return openBolt(t, filepath.Join(t.TempDir(), "grey.db"), greystore.BoltOptions{GCInterval: 50 * time.Millisecond})
	})
}

func boltSet(t *testing.T, s greystore.Store, key, value string, ttl time.Duration) {
	t.Helper()
	err := s.Update(context.Background(), key, func([]byte) ([]byte, time.Duration, error) {
		return []byte(value), ttl, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltSurvivesRestart: what is written before Close is there after
// reopening the file; what expired meanwhile is not.
func TestBoltSurvivesRestart(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "grey.db")
	b := openBolt(t, path, greystore.BoltOptions{})
	boltSet(t, b, "kept", "v", time.Hour)
	boltSet(t, b, "expiring", "v", 100*time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	b = openBolt(t, path, greystore.BoltOptions{})
	if v, ok, err := b.Get(ctx, "kept"); err != nil || !ok || string(v) != "v" {
		t.Errorf("Get(kept) after reopen = %q, %v, %v; want v", v, ok, err)
	}
	if _, ok, err := b.Get(ctx, "expiring"); err != nil || ok {
		t.Errorf("Get(expiring) after reopen: ok %v, err %v; want absent", ok, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}
}

// TestBoltLocked: a second gateway on the same file fails after the lock
// timeout, saying why, instead of hanging; once the first closes, it can
// open.
func TestBoltLocked(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	path := filepath.Join(t.TempDir(), "grey.db")
	first := openBolt(t, path, greystore.BoltOptions{})
	start := time.Now()
	second, err := greystore.OpenBolt(path, greystore.BoltOptions{Timeout: 300 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second OpenBolt on a locked file succeeded")
	}
	if elapsed > 2*time.Second {
		t.Errorf("second OpenBolt took %v, want about the 300ms timeout", elapsed)
	}
	if !errors.Is(err, bolterrors.ErrTimeout) || !strings.Contains(err.Error(), "locked by another process") ||
		!strings.Contains(err.Error(), path) {
		t.Errorf("error %q should say the file %s is locked (and wrap bbolt's ErrTimeout)", err, path)
	}
	t.Logf("locked: %v (after %v)", err, elapsed.Round(time.Millisecond))

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openBolt(t, path, greystore.BoltOptions{Timeout: 300 * time.Millisecond})
}

func TestBoltOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing directory", filepath.Join(dir, "nope", "grey.db"), "does not exist"},
		{"parent is a file", filepath.Join(notDir, "grey.db"), "is not a directory"},
		{"not a bbolt file", garbage, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := greystore.OpenBolt(tt.path, greystore.BoltOptions{})
			if err == nil {
				b.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q should name %s and contain %q", err, tt.path, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Error("OpenBolt created the missing directory")
	}
}

// TestBoltCollector: the background collector deletes expired entries,
// across several batches, and leaves live ones.
func TestBoltCollector(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	b := openBolt(t, filepath.Join(t.TempDir(), "grey.db"), greystore.BoltOptions{GCInterval: 100 * time.Millisecond})
	// Interleaved in key order, so every batch holds both kinds.
	if err := greystore.BoltFill(b, "a", 2500, 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := greystore.BoltFill(b, "b", 1200, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := greystore.BoltFill(b, "c", 2500, 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := greystore.BoltRawCount(b)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries in the file after 5s, want the 1200 live ones", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	live := 0
	err := b.Scan(context.Background(), "", func(k string, _ []byte) bool {
		if !strings.HasPrefix(k, "b") {
			t.Errorf("Scan found %q, which expired", k)
		}
		live++
		return true
	})
	if err != nil || live != 1200 {
		t.Errorf("Scan: %d live entries, err %v; want 1200", live, err)
	}
}

// TestBoltCollectBatches runs one collection directly: it reports what it
// deleted, whatever the number of batches.
func TestBoltCollectBatches(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "grey.db"), greystore.BoltOptions{GCInterval: -1})
	tests := []struct {
		expired, live int
	}{
		{0, 0},
		{1, 0},
		{0, 5},
		{999, 1},
		{1000, 0},
		{1001, 1},
		{3456, 789},
	}
	for _, tt := range tests {
		if err := greystore.BoltFill(b, "x", tt.expired, time.Nanosecond); err != nil {
			t.Fatal(err)
		}
		if err := greystore.BoltFill(b, "y", tt.live, time.Hour); err != nil {
			t.Fatal(err)
		}
		n, err := greystore.BoltCollect(b)
		if err != nil || n != tt.expired {
			t.Errorf("%+v: collect deleted %d, err %v; want %d", tt, n, err, tt.expired)
		}
		if got, _ := greystore.BoltRawCount(b); got != tt.live {
			t.Errorf("%+v: %d entries left, want %d", tt, got, tt.live)
		}
		if err := b.Scan(context.Background(), "", func(k string, _ []byte) bool {
			return b.Delete(context.Background(), k) == nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBoltCloseStopsCollector: Close returns promptly and the collector's
// goroutine is gone (CheckGoroutines), even with a collection due.
func TestBoltCloseStopsCollector(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	for range 5 {
		b, err := greystore.OpenBolt(filepath.Join(t.TempDir(), "grey.db"), greystore.BoltOptions{GCInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := greystore.BoltFill(b, "x", 5000, time.Nanosecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		start := time.Now()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Close took %v", d)
		}
	}
}
