package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// step is one Take at t0+at and what it must return.
type step struct {
	at     time.Duration
	n      int
	ok     bool
	retry  time.Duration
	reason string
}

func TestMemoryGCRA(t *testing.T) {
	// 3 per second: T = 333_333_334 ns (rounded up), τ = 3T.
	const T = 333_333_334 * time.Nanosecond
	tests := []struct {
		name  string
		limit int
		per   time.Duration
		steps []step
	}{
		{"burst then exact retry", 3, time.Second, []step{
			{0, 1, true, 0, "burst 1"},
			{0, 1, true, 0, "burst 2"},
			{0, 1, true, 0, "burst 3"},
			{0, 1, false, T, "4th at once waits one interval"},
			{T - time.Nanosecond, 1, false, time.Nanosecond, "1 ns early"},
			{T, 1, true, 0, "exactly at retry-after"},
			{T, 1, false, T, "and no more"},
			{2 * T, 1, true, 0, "steady: one per interval"},
			{3 * T, 1, true, 0, "steady"},
			{3 * T, 1, false, T, "steady: never two at once"},
			{4 * T, 1, true, 0, "steady"},
		}},
		{"refills fully after idle", 3, time.Second, []step{
			{0, 3, true, 0, "burst"},
			{10 * time.Second, 3, true, 0, "full again"},
			{10 * time.Second, 1, false, T, "empty"},
		}},
		{"n > 1 (recipients)", 10, time.Minute, []step{
			// T = 6 s, τ = 60 s.
			{0, 4, true, 0, "4 of 10"},
			{0, 4, true, 0, "8 of 10"},
			{0, 4, false, 12 * time.Second, "12 of 10: two intervals short"},
			{0, 2, true, 0, "a smaller take still fits"},
			{0, 1, false, 6 * time.Second, "full"},
			{12 * time.Second, 2, true, 0, "two refilled"},
		}},
		{"n > limit never", 3, time.Second, []step{
			{0, 4, false, Never, "more than a burst"},
			{time.Hour, 4, false, Never, "not even when idle"},
			{time.Hour, 3, true, 0, "the denial took nothing"},
		}},
		{"n = 0 is always allowed", 1, time.Second, []step{
			{0, 1, true, 0, "take the one"},
			{0, 0, true, 0, "zero fits an empty bucket"},
			{0, 1, false, time.Second, "zero took nothing"},
		}},
		{"wall clock steps back", 3, time.Second, []step{
			{time.Hour, 3, true, 0, "burst an hour later"},
			{0, 1, false, T, "after an hour step back, wait one interval, not an hour"},
			{T, 1, true, 0, "allowed at retry-after"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(10)
			for i, s := range tt.steps {
				ok, retry, err := m.Take(context.Background(), "k", tt.limit, tt.per, s.n, t0.Add(s.at))
				if err != nil || ok != s.ok || retry != s.retry {
					t.Fatalf("step %d (%s): Take(n=%d, t0+%v) = %v, %v, %v; want %v, %v, nil",
						i, s.reason, s.n, s.at, ok, retry, err, s.ok, s.retry)
				}
			}
		})
	}
}

func TestMemoryRetryAfterIsAbout333ms(t *testing.T) {
	m := NewMemory(1)
	ctx := context.Background()
	for range 3 {
		m.Take(ctx, "k", 3, time.Second, 1, t0)
	}
	ok, retry, _ := m.Take(ctx, "k", 3, time.Second, 1, t0)
	if ok || retry < 333*time.Millisecond || retry > 334*time.Millisecond {
		t.Fatalf("4th take = %v, %v; want denied, ≈333ms", ok, retry)
	}
}

func TestMemoryInvalidArguments(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		per   time.Duration
		n     int
	}{
		{"zero limit", 0, time.Second, 1},
		{"negative limit", -1, time.Second, 1},
		{"zero per", 1, 0, 1},
		{"negative per", 1, -time.Second, 1},
		{"absurd per", 1, 100 * 365 * 24 * time.Hour, 1},
		{"negative n", 1, time.Second, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, _, err := NewMemory(1).Take(context.Background(), "k", tt.limit, tt.per, tt.n, t0)
			if err == nil || ok {
				t.Fatalf("Take = %v, %v; want an error", ok, err)
			}
		})
	}
}

func TestMemoryEvictionForgets(t *testing.T) {
	m := NewMemory(2)
	ctx := context.Background()
	take := func(key string) bool {
		ok, _, err := m.Take(ctx, key, 1, time.Hour, 1, t0)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, k := range []string{"a", "b"} {
		if !take(k) || take(k) {
			t.Fatalf("%s: want one take, then denied", k)
		}
	}
	// b was touched last, so c evicts a.
	if !take("c") {
		t.Fatal("c denied")
	}
	if n := m.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	if !take("a") {
		t.Fatal("evicted a still limited; eviction must fail open")
	}
	if take("c") {
		t.Fatal("c forgotten too early")
	}
}

func TestNewMemoryPanicsOnZero(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewMemory(0) did not panic")
		}
	}()
	NewMemory(0)
}

func TestMemoryConcurrentNeverExceeds(t *testing.T) {
	const limit, workers = 10, 100
	m := NewMemory(10)
	var taken atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ok, _, err := m.Take(context.Background(), "k", limit, time.Second, 1, t0)
			if err != nil {
				t.Error(err)
			}
			if ok {
				taken.Add(1)
			}
		})
	}
	wg.Wait()
	if got := taken.Load(); got != limit {
		t.Fatalf("%d of %d concurrent takes allowed at one instant, want exactly %d", got, workers, limit)
	}
}
