package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

// TestMain fails the package when goroutines of ours outlive the tests:
// flights are detached from callers, so they must still end on their own.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var leaked []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if leaked = ourGoroutines(); len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "goroutine leak:\n\n%s\n", strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// ourGoroutines returns the stacks of goroutines running code of this
// module or of the DNS libraries, except the caller's own. The runtime,
// os/signal (started by -fuzz) and testing have goroutines of their own.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	var out []string
	for _, s := range stacks[1:] { // the first is this goroutine
		if strings.Contains(s, "github.com/mxgate/") || strings.Contains(s, "github.com/miekg/dns") ||
			strings.Contains(s, "singleflight") {
			out = append(out, s)
		}
	}
	return out
}

// clock is a settable time source for stepping over TTLs without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func serve(t testing.TB, zones ...zoneserver.Zone) *zoneserver.Server {
	t.Helper()
	s, err := zoneserver.Start("127.0.0.1:0", zones...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func serveTestdata(t testing.TB) *zoneserver.Server {
	t.Helper()
	zones, err := zoneserver.LoadZoneDir("../../testdata/zones")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, zones...)
}

// client returns a Client on the given servers with short timeouts and a
// fake clock.
func client(t testing.TB, cfg Config, servers ...string) (*Client, *clock) {
	t.Helper()
	cfg.Servers = servers
	if cfg.Timeout == 0 {
		cfg.Timeout = 300 * time.Millisecond
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 1
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	c.now = clk.Now
	return c, clk
}

func dnsErr(t *testing.T, err error) *net.DNSError {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	de, ok := err.(*net.DNSError) // the contract: unwrapped, so this works
	if !ok {
		t.Fatalf("error %T %v is not a bare *net.DNSError", err, err)
	}
	return de
}

const ttlZone = `$ORIGIN ttl.test.
@      300 SOA ns.ttl.test. hm.ttl.test. 1 7200 900 1209600 2
@      300 NS  ns.ttl.test.
one    1   TXT "one second"
mixed  5   TXT "five"
mixed  2   TXT "two"
zero   0   TXT "zero"
long   86400 TXT "a day"
cn     1   CNAME long.ttl.test.
`

// TestTTL checks positive caching: the smallest TTL of the records used
// (CNAMEs included), clamped to [MinTTL, MaxTTL].
func TestTTL(t *testing.T) {
	s := serve(t, zoneserver.Zone{Text: ttlZone})
	tests := []struct {
		name     string
		min, max time.Duration
		lives    time.Duration // still cached just before, gone just after
	}{
		{"one.ttl.test", 100 * time.Millisecond, time.Hour, time.Second},
		{"mixed.ttl.test", 100 * time.Millisecond, time.Hour, 2 * time.Second}, // smallest of the RRset
		{"zero.ttl.test", 100 * time.Millisecond, time.Hour, 100 * time.Millisecond},
		{"zero.ttl.test", 10 * time.Second, time.Hour, 10 * time.Second}, // MinTTL clamps up
		{"long.ttl.test", 100 * time.Millisecond, time.Hour, time.Hour},  // MaxTTL clamps down
		{"cn.ttl.test", 100 * time.Millisecond, time.Hour, time.Second},  // the CNAME's TTL counts
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.name, tt.min), func(t *testing.T) {
			c, clk := client(t, Config{MinTTL: tt.min, MaxTTL: tt.max}, s.Addr())
			ctx := t.Context()
			lookup := func() {
				t.Helper()
				if _, err := c.LookupTXT(ctx, tt.name); err != nil {
					t.Fatal(err)
				}
			}
			q0 := s.Queries()
			lookup()
			clk.Add(tt.lives - time.Millisecond)
			lookup()
			if got := s.Queries() - q0; got != 1 {
				t.Fatalf("%d queries within the TTL, want 1", got)
			}
			clk.Add(2 * time.Millisecond)
			lookup()
			if got := s.Queries() - q0; got != 2 {
				t.Fatalf("%d queries after the TTL, want 2", got)
			}
			st := c.Stats()
			if st.CacheHits != 1 || st.CacheMisses != 2 || st.Queries != 2 {
				t.Errorf("stats %+v, want 1 hit, 2 misses, 2 queries", st)
			}
		})
	}
}

// TestTTLRealClock is TestTTL's first case on the wall clock, once, so
// the production time source is exercised too.
func TestTTLRealClock(t *testing.T) {
	s := serve(t, zoneserver.Zone{Text: ttlZone})
	c, _ := client(t, Config{MinTTL: 100 * time.Millisecond}, s.Addr())
	c.now = time.Now
	for range 2 {
		if _, err := c.LookupTXT(t.Context(), "one.ttl.test"); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Queries(); got != 1 {
		t.Fatalf("%d queries, want 1", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := c.LookupTXT(t.Context(), "one.ttl.test"); err != nil {
		t.Fatal(err)
	}
	if got := s.Queries(); got != 2 {
		t.Fatalf("%d queries after the TTL, want 2", got)
	}
}

// TestNegativeCaching: NXDOMAIN and NODATA are cached for min(SOA TTL,
// SOA MINIMUM) (RFC 2308 §5): example.test's SOA has TTL 3600, MINIMUM 300.
func TestNegativeCaching(t *testing.T) {
	s := serveTestdata(t)
	tests := []struct {
		what  string
		name  string
		qtype uint16
	}{
		{"NXDOMAIN", "nxdomain.example.test", dns.TypeTXT},
		{"NODATA", "mail.example.test", dns.TypeTXT},
		{"NODATA at an empty non-terminal", "ent.example.test", dns.TypeA},
		{"NXDOMAIN after a CNAME", "dangling.example.test", dns.TypeA},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			c, clk := client(t, Config{MinTTL: time.Second, MaxTTL: time.Hour}, s.Addr())
			q0 := s.Queries()
			for _, step := range []time.Duration{0, 299 * time.Second, 2 * time.Second} {
				clk.Add(step)
				_, err := c.lookup(t.Context(), tt.name, tt.qtype)
				if de := dnsErr(t, err); !de.IsNotFound || de.IsTemporary || de.Err != "no such host" {
					t.Fatalf("error %+v, want not found", de)
				}
			}
			if got := s.Queries() - q0; got != 2 {
				t.Errorf("%d queries at 0s, 299s, 301s; want 2 (cached for 300s)", got)
			}
		})
	}
}

// TestEntryFrom covers answers a zone server would not send: no SOA,
// out-of-order chains, foreign records.
func TestEntryFrom(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name   string
		answer []string
		ns     []string
		want   []string // TXT rdata of the entry; nil = negative
		ttl    time.Duration
	}{
		{"chain out of order", []string{
			`b.test. 50 IN TXT "end"`, `q.test. 40 IN CNAME a.test.`, `a.test. 60 IN CNAME b.test.`,
		}, nil, []string{`"end"`}, 40 * time.Second},
		{"records of other names ignored", []string{
			`other.test. 5 IN TXT "no"`, `q.test. 100 IN TXT "yes"`,
		}, nil, []string{`"yes"`}, 100 * time.Second},
		{"chain without the final records is NODATA", []string{
			`q.test. 30 IN CNAME gone.test.`,
		}, []string{`test. 900 IN SOA a. b. 1 2 3 4 600`}, nil, 30 * time.Second},
		{"negative: min of SOA TTL and MINIMUM", nil,
			[]string{`test. 900 IN SOA a. b. 1 2 3 4 600`}, nil, 600 * time.Second},
		{"negative: SOA TTL lower", nil,
			[]string{`test. 120 IN SOA a. b. 1 2 3 4 600`}, nil, 120 * time.Second},
		{"negative without SOA: MinTTL", nil, nil, nil, 10 * time.Second},
		{"negative clamped to MaxTTL", nil,
			[]string{`test. 86400 IN SOA a. b. 1 2 3 4 86400`}, nil, time.Hour},
		{"CNAME loop", []string{
			`q.test. 30 IN CNAME r.test.`, `r.test. 30 IN CNAME q.test.`,
		}, nil, nil, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := client(t, Config{}, "127.0.0.1:1")
			m := new(dns.Msg)
			for _, s := range tt.answer {
				m.Answer = append(m.Answer, rr(s))
			}
			for _, s := range tt.ns {
				m.Ns = append(m.Ns, rr(s))
			}
			e := c.entryFrom(m, "q.test.", dns.TypeTXT)
			var got []string
			for _, r := range e.rrs {
				got = append(got, strings.SplitN(r.String(), "\t", 5)[4])
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("records %q, want %q", got, tt.want)
			}
			if d := e.expires.Sub(clk.Now()); d != tt.ttl {
				t.Errorf("cached for %v, want %v", d, tt.ttl)
			}
		})
	}
}

func TestServFailIsTemporaryAndNotCached(t *testing.T) {
	s := serveTestdata(t)
	s.SetServFail("example.test", true)
	c, _ := client(t, Config{}, s.Addr())
	for i := 1; i <= 2; i++ {
		_, err := c.LookupTXT(t.Context(), "example.test")
		de := dnsErr(t, err)
		if !de.IsTemporary || de.IsNotFound || de.IsTimeout || de.Err != "SERVFAIL" || de.Server != s.Addr() {
			t.Fatalf("error %+v, want temporary SERVFAIL from %s", de, s.Addr())
		}
		if got := s.Queries(); got != i {
			t.Fatalf("lookup %d: %d queries, want %d (no caching of SERVFAIL)", i, got, i)
		}
	}
	s.SetServFail("example.test", false)
	if txt, err := c.LookupTXT(t.Context(), "example.test"); err != nil || len(txt) != 1 {
		t.Fatalf("after recovery: %q, %v", txt, err)
	}
	if st := c.Stats(); st.Errors != 2 {
		t.Errorf("Stats.Errors = %d, want 2", st.Errors)
	}
}

func TestRefusedIsTemporary(t *testing.T) {
	s := serveTestdata(t)
	c, _ := client(t, Config{}, s.Addr())
	_, err := c.LookupTXT(t.Context(), "outside.invalid")
	if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound || de.Err != "REFUSED" {
		t.Fatalf("error %+v, want temporary REFUSED", de)
	}
}

func TestDropTimesOut(t *testing.T) {
	s := serveTestdata(t)
	s.SetDrop("example.test", true)
	c, _ := client(t, Config{Timeout: 150 * time.Millisecond, Attempts: 2}, s.Addr())
	t0 := time.Now()
	_, err := c.LookupTXT(t.Context(), "example.test")
	elapsed := time.Since(t0)
	if de := dnsErr(t, err); !de.IsTimeout || !de.IsTemporary || de.IsNotFound {
		t.Fatalf("error %+v, want a timeout", de)
	}
	if got := s.Queries(); got != 2 {
		t.Errorf("%d queries, want 2 attempts", got)
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("took %v, want about 2 × 150ms", elapsed)
	}
}

// TestContextDeadlineHonoured: the caller's deadline wins over a longer
// per-attempt timeout.
func TestContextDeadlineHonoured(t *testing.T) {
	s := serveTestdata(t)
	s.SetDrop("example.test", true)
	c, _ := client(t, Config{Timeout: 2 * time.Second}, s.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := c.LookupTXT(ctx, "example.test")
	if d := time.Since(t0); d > time.Second {
		t.Errorf("returned after %v, deadline was 100ms", d)
	}
	de := dnsErr(t, err)
	if !de.IsTimeout || !de.IsTemporary || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %+v, want a timeout that Is context.DeadlineExceeded", de)
	}
}

func TestRetryAcrossServers(t *testing.T) {
	good := serveTestdata(t)
	dropping := serveTestdata(t)
	dropping.SetDrop("example.test", true)
	dropping.SetDrop("mail.example.test", true)
	servfail := serveTestdata(t)
	servfail.SetServFail("example.test", true)
	servfail.SetServFail("mail.example.test", true)

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close() // nothing listens: ICMP port unreachable, "connection refused"

	tests := []struct {
		name  string
		first string
		bad   *zoneserver.Server // nil for the closed port
	}{
		{"closed port", closed, nil},
		{"dropping server", dropping.Addr(), dropping},
		{"SERVFAIL server", servfail.Addr(), servfail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := client(t, Config{Timeout: 200 * time.Millisecond, Attempts: 2}, tt.first, good.Addr())
			badBefore := 0
			if tt.bad != nil {
				badBefore = tt.bad.Queries()
			}
			if _, err := c.LookupTXT(t.Context(), "example.test"); err != nil {
				t.Fatalf("first lookup: %v", err)
			}
			// The server that answered is now tried first.
			if _, err := c.LookupIP(t.Context(), "ip4", "mail.example.test"); err != nil {
				t.Fatalf("second lookup: %v", err)
			}
			if tt.bad != nil {
				if got := tt.bad.Queries() - badBefore; got != 1 {
					t.Errorf("bad server asked %d times, want once", got)
				}
			}
			if st := c.Stats(); st.Queries != 3 {
				t.Errorf("Stats.Queries = %d, want 3", st.Queries)
			}
		})
	}
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	s := serveTestdata(t)
	c, _ := client(t, Config{}, s.Addr())
	txt, err := c.LookupTXT(t.Context(), "big.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(txt) != 12 {
		t.Fatalf("%d records, want 12", len(txt))
	}
	for i, r := range slices.Sorted(slices.Values(txt)) {
		if want := fmt.Sprintf("record %02d ", i+1); !strings.HasPrefix(r, want) || len(r) != 200 {
			t.Errorf("record %d = %q…, want %q… of 200 bytes", i, r[:min(len(r), 20)], want)
		}
	}
	if got := s.Queries(); got != 2 {
		t.Errorf("%d queries, want 2 (UDP truncated, then TCP)", got)
	}
}

func TestDeduplication(t *testing.T) {
	s := serveTestdata(t)
	s.SetDelay("example.test", 200*time.Millisecond) // all 100 arrive while the query is out
	c, _ := client(t, Config{}, s.Addr())
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			txt, err := c.LookupTXT(t.Context(), "Example.Test") // spelling does not matter
			if err == nil && (len(txt) != 1 || txt[0] != "v=spf1 ip4:127.0.0.0/8 -all") {
				err = fmt.Errorf("got %q", txt)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Queries(); got != 1 {
		t.Errorf("%d server queries for %d concurrent lookups, want 1", got, n)
	}
	st := c.Stats()
	if st.CacheMisses != n || st.Deduplicated != n-1 || st.Queries != 1 {
		t.Errorf("stats %+v, want %d misses, %d deduplicated, 1 query", st, n, n-1)
	}
}

// TestCancelledWaiterDoesNotFailOthers: the first caller starts the query
// and gives up; the second, joined to the same flight, still gets the
// answer, and the answer is cached.
func TestCancelledWaiterDoesNotFailOthers(t *testing.T) {
	s := serveTestdata(t)
	s.SetDelay("example.test", 300*time.Millisecond)
	c, _ := client(t, Config{Timeout: 2 * time.Second}, s.Addr())

	ctxA, cancelA := context.WithCancel(t.Context())
	errA := make(chan error, 1)
	go func() {
		_, err := c.LookupTXT(ctxA, "example.test")
		errA <- err
	}()
	for s.Queries() == 0 { // A's query is at the server
		time.Sleep(time.Millisecond)
	}
	resB := make(chan error, 1)
	go func() {
		txt, err := c.LookupTXT(t.Context(), "example.test")
		if err == nil && len(txt) != 1 {
			err = fmt.Errorf("got %q", txt)
		}
		resB <- err
	}()
	time.Sleep(50 * time.Millisecond) // B has joined the flight
	cancelA()

	err := <-errA
	de := dnsErr(t, err)
	if !de.IsTemporary || de.IsNotFound || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %+v, want temporary and Is context.Canceled", de)
	}
	if err := <-resB; err != nil {
		t.Errorf("other waiter failed: %v", err)
	}
	if _, err := c.LookupTXT(t.Context(), "example.test"); err != nil {
		t.Fatal(err)
	}
	if got := s.Queries(); got != 1 {
		t.Errorf("%d server queries, want 1", got)
	}
	if st := c.Stats(); st.Deduplicated != 1 || st.CacheHits != 1 {
		t.Errorf("stats %+v, want 1 deduplicated, 1 hit", st)
	}
}

// TestCancelledAloneStillCaches: the only caller leaves; the query runs on
// and the next caller is served from the cache.
func TestCancelledAloneStillCaches(t *testing.T) {
	s := serveTestdata(t)
	s.SetDelay("example.test", 100*time.Millisecond)
	c, _ := client(t, Config{Timeout: 2 * time.Second}, s.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.LookupTXT(ctx, "example.test"); err == nil {
		t.Fatal("no error after 20ms with a 100ms server delay")
	}
	deadline := time.Now().Add(2 * time.Second)
	for c.cache.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.LookupTXT(t.Context(), "example.test"); err != nil {
		t.Fatal(err)
	}
	if got := s.Queries(); got != 1 {
		t.Errorf("%d server queries, want 1", got)
	}
}

func TestCacheKeyIgnoresSpelling(t *testing.T) {
	s := serveTestdata(t)
	c, _ := client(t, Config{}, s.Addr())
	for _, name := range []string{"mail.example.test", "MAIL.example.TEST.", "Mail.Example.Test"} {
		ips, err := c.LookupIP(t.Context(), "ip4", name)
		if err != nil || len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 5)) {
			t.Fatalf("%s: %v, %v", name, ips, err)
		}
	}
	if got := s.Queries(); got != 1 {
		t.Errorf("%d queries for three spellings, want 1", got)
	}
}

// TestResultsAreCopies: callers may modify what they get without changing
// the cache.
func TestResultsAreCopies(t *testing.T) {
	s := serveTestdata(t)
	c, _ := client(t, Config{}, s.Addr())
	ips, err := c.LookupIP(t.Context(), "ip4", "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	ips[0][0] = 10
	mx, _ := c.LookupMX(t.Context(), "example.test")
	mx[0].Host = "evil."
	ips, _ = c.LookupIP(t.Context(), "ip4", "mail.example.test")
	mx, _ = c.LookupMX(t.Context(), "example.test")
	if ips[0].String() != "127.0.0.5" || mx[0].Host != "mail.example.test." {
		t.Errorf("cache modified through results: %v %v", ips, mx[0])
	}
}

// TestIPAddrHalfAnswerFails: A answered (here from the cache), AAAA
// SERVFAIL: the lookup fails as temporary rather than returning only the
// IPv4 address, which would let SPF conclude "fail" for an IPv6 client.
func TestIPAddrHalfAnswerFails(t *testing.T) {
	s := serveTestdata(t)
	c, _ := client(t, Config{}, s.Addr())
	if _, err := c.LookupIP(t.Context(), "ip4", "mail.example.test"); err != nil {
		t.Fatal(err)
	}
	s.SetServFail("mail.example.test", true)
	_, err := c.LookupIPAddr(t.Context(), "mail.example.test")
	if de := dnsErr(t, err); !de.IsTemporary || de.IsNotFound || de.Err != "SERVFAIL" {
		t.Fatalf("error %+v, want temporary SERVFAIL", de)
	}
	// Not found in one family is no failure: ns has only an A record.
	ips, err := c.LookupIPAddr(t.Context(), "ns.example.test")
	if err != nil || len(ips) != 1 {
		t.Fatalf("A-only host: %v, %v", ips, err)
	}
}
