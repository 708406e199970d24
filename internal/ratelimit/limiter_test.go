package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for Limiter.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestLimiter(store Store, rates map[Kind]Rate) (*Limiter, *clock) {
	c := &clock{t: t0}
	l := New(store, rates)
	l.now = c.now
	return l, c
}

// storeFunc adapts a function to Store.
type storeFunc func(ctx context.Context, key string, limit int, per time.Duration, n int, now time.Time) (bool, time.Duration, error)

func (f storeFunc) Take(ctx context.Context, key string, limit int, per time.Duration, n int, now time.Time) (bool, time.Duration, error) {
	return f(ctx, key, limit, per, n, now)
}

var ctx = context.Background()

func allow(t *testing.T, l *Limiter, kind Kind, ip string, n int) (bool, time.Duration) {
	t.Helper()
	ok, retry, err := l.Allow(ctx, kind, netip.MustParseAddr(ip), n)
	if err != nil {
		t.Fatalf("Allow(%s, %s, %d): %v", kind, ip, n, err)
	}
	return ok, retry
}

func TestLimiterUsesClock(t *testing.T) {
	l, c := newTestLimiter(NewMemory(10), map[Kind]Rate{Connections: {3, time.Second}})
	for range 3 {
		if ok, _ := allow(t, l, Connections, "192.0.2.1", 1); !ok {
			t.Fatal("burst denied")
		}
	}
	ok, retry := allow(t, l, Connections, "192.0.2.1", 1)
	if ok || retry < 333*time.Millisecond || retry > 334*time.Millisecond {
		t.Fatalf("4th = %v, %v; want denied, ≈333ms", ok, retry)
	}
	c.advance(retry)
	if ok, _ := allow(t, l, Connections, "192.0.2.1", 1); !ok {
		t.Fatal("denied after retry-after")
	}
}

func TestLimiterDisabledKinds(t *testing.T) {
	never := storeFunc(func(context.Context, string, int, time.Duration, int, time.Time) (bool, time.Duration, error) {
		t.Fatal("store called for a disabled kind")
		return false, 0, nil
	})
	l, _ := newTestLimiter(never, map[Kind]Rate{
		Connections: {Limit: 0, Per: time.Second},
		Messages:    {Limit: 5, Per: 0},
	})
	for _, k := range []Kind{Connections, Messages, Recipients, "unknown"} {
		if l.Enabled(k) {
			t.Errorf("Enabled(%s) = true", k)
		}
		for range 10 {
			if ok, _ := allow(t, l, k, "192.0.2.1", 1000); !ok {
				t.Fatalf("disabled %s denied", k)
			}
		}
	}
}

func TestLimiterClientGrouping(t *testing.T) {
	tests := []struct {
		name  string
		first string
		other string
		same  bool
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", true},
		{"IPv4 neighbours", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is IPv4", "192.0.2.1", "::ffff:192.0.2.1", true},
		{"same /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"zone ignored", "fe80::1%eth0", "fe80::2%eth1", true},
		{"next /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv4 and its IPv6 twin differ", "192.0.2.1", "::192.0.2.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestLimiter(NewMemory(10), map[Kind]Rate{Messages: {1, time.Hour}})
			if ok, _ := allow(t, l, Messages, tt.first, 1); !ok {
				t.Fatal("first denied")
			}
			ok, _ := allow(t, l, Messages, tt.other, 1)
			if ok == tt.same {
				t.Fatalf("second allowed = %v; want sharing a bucket = %v", ok, tt.same)
			}
		})
	}
}

func TestLimiterKindsIndependent(t *testing.T) {
	l, _ := newTestLimiter(NewMemory(10), map[Kind]Rate{
		Connections: {1, time.Hour},
		Messages:    {1, time.Hour},
		Recipients:  {2, time.Hour},
	})
	if ok, _ := allow(t, l, Connections, "192.0.2.1", 1); !ok {
		t.Fatal("connection denied")
	}
	if ok, _ := allow(t, l, Connections, "192.0.2.1", 1); ok {
		t.Fatal("second connection allowed")
	}
	if ok, _ := allow(t, l, Messages, "192.0.2.1", 1); !ok {
		t.Fatal("message denied after connections ran out")
	}
	if ok, _ := allow(t, l, Recipients, "192.0.2.1", 2); !ok {
		t.Fatal("recipients denied after connections and messages ran out")
	}
}

func TestLimiterNeverForOversizedTake(t *testing.T) {
	l, _ := newTestLimiter(NewMemory(10), map[Kind]Rate{Recipients: {100, time.Minute}})
	if ok, retry := allow(t, l, Recipients, "192.0.2.1", 101); ok || retry != Never {
		t.Fatalf("101 of 100 = %v, %v; want denied, Never", ok, retry)
	}
}

func TestLimiterFailsOpen(t *testing.T) {
	boom := errors.New("store down")
	broken := storeFunc(func(context.Context, string, int, time.Duration, int, time.Time) (bool, time.Duration, error) {
		return false, time.Minute, boom
	})
	tests := []struct {
		name  string
		store Store
		ip    netip.Addr
		n     int
		want  error
	}{
		{"store error", broken, netip.MustParseAddr("192.0.2.1"), 1, boom},
		{"invalid address", NewMemory(1), netip.Addr{}, 1, errInvalidAddr},
		{"negative n", NewMemory(1), netip.MustParseAddr("192.0.2.1"), -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTestLimiter(tt.store, map[Kind]Rate{Messages: {1, time.Second}})
			ok, retry, err := l.Allow(ctx, Messages, tt.ip, tt.n)
			if !ok || retry != 0 || err == nil {
				t.Fatalf("Allow = %v, %v, %v; want allowed with an error", ok, retry, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLimiterStoreKey(t *testing.T) {
	var got string
	spy := storeFunc(func(_ context.Context, key string, _ int, _ time.Duration, _ int, _ time.Time) (bool, time.Duration, error) {
		got = key
		return true, 0, nil
	})
	l, _ := newTestLimiter(spy, map[Kind]Rate{Recipients: {1, time.Second}})
	allow(t, l, Recipients, "2001:db8:1:2::7", 1)
	if want := "recipients:2001:db8:1:2::/64"; got != want {
		t.Fatalf("store key = %q, want %q", got, want)
	}
}

func TestLimiterConcurrentNeverExceeds(t *testing.T) {
	const limit, workers = 10, 100
	l, _ := newTestLimiter(NewMemory(10), map[Kind]Rate{Connections: {limit, time.Second}})
	ip := netip.MustParseAddr("2001:db8::1")
	var taken atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ok, _, err := l.Allow(ctx, Connections, ip, 1)
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
		t.Fatalf("%d of %d allowed at one instant, want exactly %d", got, workers, limit)
	}
}

func TestKey(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:a:b:c:d", "2001:db8:1:2::/64"},
		{"2001:db8::1", "2001:db8::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	}
	for _, tt := range tests {
		if got := Key(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Key(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
	if got := Key(netip.Addr{}); got != "" {
		t.Errorf("Key(invalid) = %q, want \"\"", got)
	}
}

func BenchmarkAllow(b *testing.B) {
	for _, ip := range []string{"192.0.2.1", "2001:db8:1:2::1"} {
		b.Run(ip, func(b *testing.B) {
			l := New(NewMemory(1000), map[Kind]Rate{Recipients: {100, time.Second}})
			addr := netip.MustParseAddr(ip)
			b.ReportAllocs()
			for b.Loop() {
				l.Allow(ctx, Recipients, addr, 1)
			}
		})
	}
	b.Run("parallel distinct clients", func(b *testing.B) {
		l := New(NewMemory(1<<16), map[Kind]Rate{Recipients: {100, time.Second}})
		var next atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			addr := netip.AddrFrom4([4]byte{10, 0, byte(next.Add(1)), 1})
			for pb.Next() {
				l.Allow(ctx, Recipients, addr, 1)
			}
		})
	})
}
