package greystore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/greystore/greystoretest"
)

func TestMemoryConformance(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	greystoretest.Run(t, func(t *testing.T) greystore.Store {
		return greystore.NewMemory(10_000)
	})
}

// TestMemoryBound: a full store forgets the entry least recently used, and
// reading an entry counts as a use.
func TestMemoryBound(t *testing.T) {
	ctx := context.Background()
	m := greystore.NewMemory(3)
	defer m.Close()
	put := func(k string) {
		t.Helper()
		err := m.Update(ctx, k, func([]byte) ([]byte, time.Duration, error) { return []byte(k), time.Hour, nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	present := func(k string) bool {
		t.Helper()
		_, ok, err := m.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	put("a")
	put("b")
	put("c")
	present("a") // a is now more recent than b
	put("d")     // evicts b
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if got := present(k); got != want {
			t.Errorf("%s present = %v, want %v", k, got, want)
		}
	}
	if n := m.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
}

// TestMemoryDropsExpired: an expired entry is removed when it is come
// across, so it stops taking a place.
func TestMemoryDropsExpired(t *testing.T) {
	ctx := context.Background()
	m := greystore.NewMemory(100)
	defer m.Close()
	for i := range 10 {
		k := fmt.Sprint(i)
		err := m.Update(ctx, k, func([]byte) ([]byte, time.Duration, error) { return []byte("v"), 50 * time.Millisecond, nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := m.Len(); n != 10 {
		t.Fatalf("Len before anything saw them = %d, want 10", n)
	}
	if err := m.Scan(ctx, "", func(string, []byte) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if n := m.Len(); n != 0 {
		t.Errorf("Len after Scan = %d, want 0", n)
	}
}

func TestNewMemoryDefaultBound(t *testing.T) {
	for _, n := range []int{0, -1} {
		m := greystore.NewMemory(n)
		if err := m.Update(context.Background(), "k", func([]byte) ([]byte, time.Duration, error) {
			return []byte("v"), time.Hour, nil
		}); err != nil {
			t.Errorf("NewMemory(%d): Update: %v", n, err)
		}
		m.Close()
	}
}
