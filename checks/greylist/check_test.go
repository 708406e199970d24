package greylist

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
)

const (
	minute = time.Minute
	hour   = time.Hour
	day    = 24 * time.Hour
)

// Clients of the scenarios.
var (
	// plain has no SPF pass and no PTR: keyed by its /24.
	plain = Client{IP: netip.MustParseAddr("192.0.2.10"), MailDomain: "sender.example"}
	// bulk1 and bulk2 are two addresses of one SPF-authorised pool.
	bulk1 = Client{IP: netip.MustParseAddr("203.0.113.5"), SPFPass: true, MailDomain: "bulk.example.com"}
	bulk2 = Client{IP: netip.MustParseAddr("198.51.100.9"), SPFPass: true, MailDomain: "bulk.example.com"}
)

// step is one event of a scenario: a Check at t0+at (when do is nil), or
// an operator action.
type step struct {
	at     time.Duration
	do     func(g *Greylist) error
	c      Client
	sender string
	rcpt   string
	want   State
}

// check is a Check step.
func check(at time.Duration, c Client, sender, rcpt string, want State) step {
	return step{at: at, c: c, sender: sender, rcpt: rcpt, want: want}
}

// act is an operator step.
func act(at time.Duration, do func(g *Greylist) error) step { return step{at: at, do: do} }

func allow(what string, d time.Duration) func(*Greylist) error {
	return func(g *Greylist) error { return g.Allow(context.Background(), what, d) }
}

func release(ref string) func(*Greylist) error {
	return func(g *Greylist) error {
		ok, err := g.Release(context.Background(), ref)
		if err == nil && !ok {
			err = errors.New("nothing released")
		}
		return err
	}
}

type scenario struct {
	name  string
	o     Options
	steps []step
}

// runScenarios runs each scenario on a map store, on one that replays
// Update callbacks (which must not change any decision), and on
// greystore's memory store.
func runScenarios(t *testing.T, tests []scenario) {
	t.Helper()
	stores := []struct {
		name string
		new  func() greystore.Store
	}{
		{"map", func() greystore.Store { return newMemStore() }},
		{"replay", func() greystore.Store { st := newMemStore(); st.replay = true; return st }},
		{"greystore", func() greystore.Store { return greystore.NewMemory(1000) }},
	}
	for _, tt := range tests {
		for _, st := range stores {
			t.Run(tt.name+"/"+st.name, func(t *testing.T) {
				clk := newClock()
				o := tt.o
				o.Now = clk.Now
				g := New(st.new(), o)
				for i, s := range tt.steps {
					clk.at(s.at)
					if s.do != nil {
						if err := s.do(g); err != nil {
							t.Fatalf("step %d (+%v): %v", i, s.at, err)
						}
						continue
					}
					d, err := g.Check(context.Background(), s.c, s.sender, s.rcpt, "ref"+string(rune('a'+i)))
					if err != nil || d.State != s.want {
						t.Fatalf("step %d (+%v): Check(%v, %q, %q) = %s, %v; want %s", i, s.at, s.c, s.sender, s.rcpt, d.State, err, s.want)
					}
				}
			})
		}
	}
}

// TestStateMachine walks the states with a fake clock.
func TestStateMachine(t *testing.T) {
	const a, b = "a@rcpt.example", "b@rcpt.example"
	runScenarios(t, []scenario{
		{name: "new, early, passed, then the client is allowed", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(1*minute, plain, "s@sender.example", a, StateEarly),
			check(6*minute, plain, "s@sender.example", a, StatePassed),
			check(7*minute, plain, "other@sender.example", b, StateAllowed),
		}},
		{name: "a retry from another sender or recipient is new", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(6*minute, plain, "t@sender.example", a, StateNew),
			check(6*minute, plain, "s@sender.example", b, StateNew),
		}},
		{name: "expired after the retry window", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(48*hour, plain, "s@sender.example", a, StateNew),
			check(48*hour+1*minute, plain, "s@sender.example", a, StateEarly),
		}},
		{name: "early retries do not extend the window", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(1*minute, plain, "s@sender.example", a, StateEarly),
			check(4*minute, plain, "s@sender.example", a, StateEarly),
			check(48*hour+2*minute, plain, "s@sender.example", a, StateNew),
		}},
		{name: "retry at the last moment of the window passes", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(48*hour-time.Second, plain, "s@sender.example", a, StatePassed),
		}},
		{name: "the allowance expires after AllowFor", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(6*minute, plain, "s@sender.example", a, StatePassed),
			check(6*minute+35*day-time.Second, plain, "s@sender.example", b, StateAllowed),
			check(6*minute+35*day, plain, "s@sender.example", b, StateNew),
		}},
		{name: "a later pass renews a lapsed allowance", o: Options{AllowFor: hour}, steps: []step{
			check(0, plain, "s@sender.example", a, StateNew),
			check(1*minute, plain, "s@sender.example", b, StateNew),
			check(6*minute, plain, "s@sender.example", a, StatePassed),
			check(66*minute, plain, "s@sender.example", b, StatePassed),
			check(66*minute+59*minute, plain, "x@sender.example", "c@rcpt.example", StateAllowed),
		}},
		{name: "a released triplet passes before the delay", steps: []step{
			check(0, plain, "s@sender.example", a, StateNew), // ref "refa"
			act(1*minute, release("refa")),
			check(2*minute, plain, "s@sender.example", a, StatePassed),
		}},
		{name: "operator allows an address", steps: []step{
			act(0, allow("192.0.2.10", day)),
			check(1*minute, plain, "s@sender.example", a, StateAllowed),
			check(1*minute, Client{IP: netip.MustParseAddr("192.0.2.11")}, "s@sender.example", a, StateNew),
		}},
		{name: "operator allows a range, whatever the client's key", steps: []step{
			act(0, allow("203.0.113.0/24", day)),
			check(1*minute, bulk1, "s@bulk.example.com", a, StateAllowed),
			check(1*minute, bulk2, "s@bulk.example.com", a, StateNew),
		}},
		{name: "operator allows a domain, with or without SPF", steps: []step{
			act(0, allow("example.com", day)),
			check(1*minute, bulk2, "s@bulk.example.com", a, StateAllowed),
			check(1*minute, Client{IP: netip.MustParseAddr("192.0.2.99"), MailDomain: "codes.example.com"}, "otp@codes.example.com", a, StateAllowed),
			check(1*minute, plain, "s@sender.example", a, StateNew),
		}},
		{name: "operator allowance expires", steps: []step{
			act(0, allow("192.0.2.0/24", hour)),
			check(59*minute, plain, "s@sender.example", a, StateAllowed),
			check(60*minute, plain, "s@sender.example", a, StateNew),
		}},
		{name: "a pass does not allow forgers of the sender's domain", steps: []step{
			check(0, bulk1, "s@bulk.example.com", a, StateNew),
			check(6*minute, bulk1, "s@bulk.example.com", a, StatePassed),
			check(7*minute, bulk2, "t@bulk.example.com", b, StateAllowed),
			check(7*minute, Client{IP: netip.MustParseAddr("192.0.2.99"), MailDomain: "bulk.example.com"}, "t@bulk.example.com", b, StateNew),
		}},
		{name: "a tagged retry matches", steps: []step{
			check(0, plain, "prvs=1123abcdef=S+x@Sender.example", a, StateNew),
			check(6*minute, plain, "prvs=1130fedcba=s+y@sender.example", strings.ToUpper(a), StatePassed),
		}},
	})
}

// TestPoolKeys: retries from other addresses of the same sender share the
// triplet when the evidence says they are the same sender, and only then.
func TestPoolKeys(t *testing.T) {
	const rcpt = "user@rcpt.example"
	ptr1 := Client{IP: netip.MustParseAddr("203.0.113.5"), PTR: "mta1.out.example.net"}
	ptr2 := Client{IP: netip.MustParseAddr("198.51.100.9"), PTR: "mta2.out.example.net."}
	runScenarios(t, []scenario{
		{name: "SPF-authorised pool", steps: []step{
			check(0, bulk1, "news@bulk.example.com", rcpt, StateNew),
			check(6*minute, bulk2, "news@bulk.example.com", rcpt, StatePassed),
		}},
		{name: "unauthenticated, different /24s", steps: []step{
			check(0, Client{IP: bulk1.IP, MailDomain: "bulk.example.com"}, "news@bulk.example.com", rcpt, StateNew),
			check(6*minute, Client{IP: bulk2.IP, MailDomain: "bulk.example.com"}, "news@bulk.example.com", rcpt, StateNew),
		}},
		{name: "unauthenticated, one /24", steps: []step{
			check(0, Client{IP: netip.MustParseAddr("192.0.2.1")}, "s@sender.example", rcpt, StateNew),
			check(6*minute, Client{IP: netip.MustParseAddr("192.0.2.200")}, "s@sender.example", rcpt, StatePassed),
		}},
		{name: "unauthenticated IPv6, one /64", steps: []step{
			check(0, Client{IP: netip.MustParseAddr("2001:db8:1:2::25")}, "s@sender.example", rcpt, StateNew),
			check(6*minute, Client{IP: netip.MustParseAddr("2001:db8:1:2:ffff::1")}, "s@sender.example", rcpt, StatePassed),
		}},
		{name: "PTR-confirmed, one organisation", steps: []step{
			check(0, ptr1, "s@sender.example", rcpt, StateNew),
			check(6*minute, ptr2, "s@sender.example", rcpt, StatePassed),
		}},
		{name: "SPF pool with per-message VERP", steps: []step{
			check(0, bulk1, "bounces-1234-5678@bulk.example.com", rcpt, StateNew),
			check(6*minute, bulk2, "bounces-1234-5699@bulk.example.com", rcpt, StatePassed),
		}},
	})
}

// TestDecisionFields: the decision carries the triplet's times, its key
// and the reference given first, and the store gets the documented TTLs.
func TestDecisionFields(t *testing.T) {
	g, st, clk := newTest(Options{})
	ctx := context.Background()
	d, err := g.Check(ctx, plain, "S@Sender.example", "A@Rcpt.example", "q1")
	want := Decision{State: StateNew, Key: "net:192.0.2.0/24|s@sender.example|a@rcpt.example", FirstSeen: t0, PassAt: t0.Add(5 * minute), Ref: "q1"}
	if err != nil || d != want {
		t.Fatalf("first: %+v, %v; want %+v", d, err, want)
	}
	if _, ttl, _ := st.value("t:" + d.Key); ttl != 48*hour {
		t.Errorf("triplet TTL %v, want 48h", ttl)
	}
	writes := st.writeCount()
	clk.at(2 * minute)
	d, err = g.Check(ctx, plain, "s@sender.example", "a@rcpt.example", "q2")
	if want.State = StateEarly; err != nil || d != want {
		t.Fatalf("early: %+v, %v; want %+v", d, err, want)
	}
	if st.writeCount() != writes {
		t.Errorf("an early retry wrote to the store")
	}
	clk.at(10 * minute)
	d, err = g.Check(ctx, plain, "s@sender.example", "a@rcpt.example", "q3")
	if want.State = StatePassed; err != nil || d != want {
		t.Fatalf("passed: %+v, %v; want %+v", d, err, want)
	}
	if _, ttl, _ := st.value("t:" + d.Key); ttl != 48*hour-10*minute {
		t.Errorf("passed triplet TTL %v, want its remaining window", ttl)
	}
	v, ttl, ok := st.value("a:net:192.0.2.0/24")
	if !ok || ttl != 35*day || !strings.Contains(v, `"v":1`) || !strings.Contains(v, `"source":"pass"`) {
		t.Errorf("allow entry %s (TTL %v, present %v)", v, ttl, ok)
	}
	if d, _ := g.Check(ctx, plain, "s@sender.example", "b@rcpt.example", "q4"); d.State != StateAllowed || d.Key == "" || d.Ref != "" {
		t.Errorf("allowed: %+v", d)
	}
}

// TestPassRefreshes: a pass while the client key is still allowed (a
// concurrent session, another gateway) extends the allowance from now
// and counts; an operator's longer allowance is not shortened.
func TestPassRefreshes(t *testing.T) {
	g, st, clk := newTest(Options{})
	ctx := context.Background()
	for i, at := range []time.Duration{0, 10 * day} {
		clk.at(at)
		if err := g.recordPass(ctx, "org:example.com", clk.Now()); err != nil {
			t.Fatal(err)
		}
		r, ok, err := decodeAllow(mustValue(t, st, "a:org:example.com"))
		if !ok || err != nil || !r.Expires.Equal(t0.Add(at+35*day)) || r.Passes != i+1 || !r.First.Equal(t0) {
			t.Fatalf("after pass %d: %+v", i+1, r)
		}
	}
	if err := g.Allow(ctx, "example.com", 100*day); err != nil {
		t.Fatal(err)
	}
	clk.at(11 * day)
	if err := g.recordPass(ctx, "org:example.com", clk.Now()); err != nil {
		t.Fatal(err)
	}
	r, _, _ := decodeAllow(mustValue(t, st, "a:org:example.com"))
	if !r.Expires.Equal(t0.Add(110*day)) || r.Source != sourceOperator || r.Passes != 3 {
		t.Errorf("operator entry after a pass: %+v", r)
	}
}

func mustValue(t *testing.T, st *memStore, key string) []byte {
	t.Helper()
	v, _, ok := st.value(key)
	if !ok {
		t.Fatalf("no %s", key)
	}
	return []byte(v)
}

// TestStoreErrors: whatever the store does, Check answers State error
// with the error (the session fails open), and never panics.
func TestStoreErrors(t *testing.T) {
	tests := []struct {
		name string
		fail string
		seed map[string]string // records present before the Check
	}{
		{name: "get fails", fail: "get"},
		{name: "update fails", fail: "update"},
		{name: "newer triplet", seed: map[string]string{"t:net:192.0.2.0/24|s@sender.example|a@rcpt.example": `{"v":2,"x":1}`}},
		{name: "newer allow entry", seed: map[string]string{"a:net:192.0.2.0/24": `{"v":2}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, st, _ := newTest(Options{})
			if tt.fail != "" {
				st.fail = map[string]error{tt.fail: errBroken}
			}
			for k, v := range tt.seed {
				st.set(k, v, hour)
			}
			d, err := g.Check(context.Background(), plain, "s@sender.example", "a@rcpt.example", "r")
			if d.State != StateError || err == nil {
				t.Fatalf("%+v, %v; want state error", d, err)
			}
			if tt.fail != "" && !errors.Is(err, errBroken) {
				t.Errorf("error %v does not wrap the store's", err)
			}
			for k, v := range tt.seed {
				if got, _, _ := st.value(k); got != v {
					t.Errorf("%s rewritten: %s", k, got)
				}
			}
		})
	}
}

// TestPassThenStoreFails: a pass whose allow entry cannot be written is
// still reported as an error, so the failure is visible.
func TestPassThenStoreFails(t *testing.T) {
	g, st, clk := newTest(Options{})
	ctx := context.Background()
	if d, _ := g.Check(ctx, plain, "s@sender.example", "a@rcpt.example", "r"); d.State != StateNew {
		t.Fatal(d.State)
	}
	st.set("a:net:192.0.2.0/24", `{"v":3}`, hour) // read by allowed as an error too
	clk.at(6 * minute)
	if d, err := g.Check(ctx, plain, "s@sender.example", "a@rcpt.example", "r"); d.State != StateError || err == nil {
		t.Fatalf("%+v, %v", d, err)
	}
}

// TestCorruptRecords are overwritten, not obeyed and not fatal.
func TestCorruptRecords(t *testing.T) {
	for _, v := range []string{`garbage`, `{}`, `{"v":1}`, `{"v":"1"}`, `null`, `{"v":1,"expires":"yesterday"}`} {
		g, st, _ := newTest(Options{})
		key := "t:net:192.0.2.0/24|s@sender.example|a@rcpt.example"
		st.set(key, v, hour)
		st.set("a:net:192.0.2.0/24", v, hour)
		d, err := g.Check(context.Background(), plain, "s@sender.example", "a@rcpt.example", "r")
		if err != nil || d.State != StateNew {
			t.Errorf("record %s: %+v, %v; want new", v, d, err)
		}
		if got, _, _ := st.value(key); !strings.Contains(got, `"v":1,`) {
			t.Errorf("record %s not replaced: %s", v, got)
		}
	}
}

// TestIncompleteTriplet: a v1 triplet without its times is not obeyed
// (a zero pass_at would pass at once).
func TestIncompleteTriplet(t *testing.T) {
	g, st, _ := newTest(Options{})
	st.set("t:net:192.0.2.0/24|s@sender.example|a@rcpt.example", `{"v":1,"expires":"2026-03-02T00:00:00Z","released":true}`, hour)
	if d, err := g.Check(context.Background(), plain, "s@sender.example", "a@rcpt.example", "r"); err != nil || d.State != StateNew {
		t.Errorf("%+v, %v; want new", d, err)
	}
}

// TestSkipped: without a valid address or an authenticated name there is
// no key, and greylisting does not apply.
func TestSkipped(t *testing.T) {
	g, st, _ := newTest(Options{})
	d, err := g.Check(context.Background(), Client{MailDomain: "sender.example"}, "s@sender.example", "a@rcpt.example", "r")
	if err != nil || d.State != StateSkipped || st.writeCount() != 0 {
		t.Errorf("%+v, %v, %d writes", d, err, st.writeCount())
	}
}

// TestConcurrentFirstAttempts: fifty sessions offering the same triplet
// at once create it exactly once; the others see it and are early.
func TestConcurrentFirstAttempts(t *testing.T) {
	for name, st := range map[string]greystore.Store{"map": newMemStore(), "greystore": greystore.NewMemory(1000)} {
		t.Run(name, func(t *testing.T) {
			g := New(st, Options{Now: newClock().Now})
			const n = 50
			states := make([]State, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					d, err := g.Check(context.Background(), bulk1, "news@bulk.example.com", "a@rcpt.example", "r")
					if err != nil {
						t.Error(err)
					}
					states[i] = d.State
				}()
			}
			close(start)
			wg.Wait()
			count := map[State]int{}
			for _, s := range states {
				count[s]++
			}
			if count[StateNew] != 1 || count[StateEarly] != n-1 {
				t.Errorf("states %v; want 1 new and %d early", count, n-1)
			}
		})
	}
}

// TestAllowCache: an allow entry found in the store is remembered for up
// to allowCacheTTL (never past its own expiry), so an allowed client costs
// no store lookup per recipient; a missing entry is not remembered, so an
// entry another gateway writes counts at once.
func TestAllowCache(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := newMemStore()
	g := New(st, Options{Now: clk.Now})
	checkAs := func(c Client, want State) {
		t.Helper()
		d, err := g.Check(ctx, c, "a@sender.example", "b@ours.example", "ref")
		if err != nil || (d.State == StateAllowed) != (want == StateAllowed) {
			t.Fatalf("+%v: Check = %s, %v; want %s", clk.Now().Sub(newClock().Now()), d.State, err, want)
		}
	}
	const notAllowed = State("(not allowed)")
	gets := func() int { st.mu.Lock(); defer st.mu.Unlock(); return st.gets }

	// Not allowed: looked up every time, never remembered.
	checkAs(plain, notAllowed)
	// Another gateway lets the client through: it counts at once.
	other := New(st, Options{Now: clk.Now})
	if err := other.Allow(ctx, "192.0.2.0/24", 30*minute); err != nil {
		t.Fatal(err)
	}
	checkAs(plain, StateAllowed)
	n := gets()
	checkAs(plain, StateAllowed)
	if d := gets() - n; d != 0 {
		t.Errorf("an allowed client cost %d store lookups within the cache time", d)
	}
	// Deleted elsewhere: still trusted here within allowCacheTTL...
	if ok, err := other.Delete(ctx, "192.0.2.0/24"); err != nil || !ok {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	clk.at(allowCacheTTL - time.Second)
	checkAs(plain, StateAllowed)
	// ...and not after it.
	clk.at(allowCacheTTL + time.Second)
	checkAs(plain, notAllowed)

	// An entry that expires before allowCacheTTL is not trusted past its
	// expiry.
	if err := g.Allow(ctx, "198.51.100.0/24", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	short := Client{IP: netip.MustParseAddr("198.51.100.7"), MailDomain: "sender.example"}
	checkAs(short, StateAllowed)
	clk.at(allowCacheTTL + 32*time.Second)
	checkAs(short, notAllowed)

	// A delete in this process counts at once.
	if err := g.Allow(ctx, "198.51.100.0/24", 30*minute); err != nil {
		t.Fatal(err)
	}
	checkAs(short, StateAllowed)
	if ok, err := g.Delete(ctx, "198.51.100.0/24"); err != nil || !ok {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	checkAs(short, notAllowed)
}
