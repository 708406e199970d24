package dnsbl

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/policy"
)

// TestMain fails the package when a goroutine of this package outlives
// the tests (style.md §13).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && checks.Panics.Load() != 0 {
		fmt.Fprintln(os.Stderr, "checks panicked")
		code = 1
	}
	if code == 0 {
		if leaked := waitGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines waits for every goroutine running this package's code
// (the test harness aside) to end, and returns the stacks of those left.
func waitGoroutines(limit time.Duration) string {
	deadline := time.Now().Add(limit)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "checks/dnsbl.") && !strings.Contains(g, "TestMain") && !strings.Contains(g, "waitGoroutines") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a log destination for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLog logs everything, debug included, to a buffer.
func testLog() (*slog.Logger, *syncBuffer) {
	b := &syncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func wp(f float64) *float64 { return &f }

func ans(s string, w *float64, text string) Answer {
	p, err := ParseAnswer(s)
	if err != nil {
		panic(err)
	}
	return Answer{Net: p, Weight: w, Text: text}
}

// addTestPoints makes zone pass its RFC 5782 §5 test.
func addTestPoints(f *resolvertest.Fake, zone string, domain bool) {
	if f.A == nil {
		f.A = map[string][]string{}
	}
	if domain {
		f.A["test."+zone] = []string{"127.0.1.2"}
	} else {
		f.A["2.0.0.127."+zone] = []string{"127.0.0.2"}
	}
}

func mustNew(t *testing.T, r resolver.Resolver, o Options) *DNSBL {
	t.Helper()
	d, err := New(r, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func TestFactsRegistered(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  policy.Kind
		stage policy.Stage
	}{
		{"dnsbl.score", policy.KindNumber, policy.StageConnect},
		{"dnsbl.listed", policy.KindSet, policy.StageConnect},
		{"dnsbl.reason", policy.KindString, policy.StageConnect},
		{"rhsbl.helo.listed", policy.KindSet, policy.StageHelo},
		{"rhsbl.mail_from.listed", policy.KindSet, policy.StageMail},
		{"rhsbl.score", policy.KindNumber, policy.StageMail},
	} {
		d, ok := policy.LookupFact(tc.name)
		if !ok || d.Kind != tc.kind || d.Stage != tc.stage {
			t.Errorf("fact %s: got %+v, %v; want kind %s stage %s", tc.name, d, ok, tc.kind, tc.stage)
		}
	}
}

// setFacts checks that a result's facts fit their kinds.
func setFacts(t *testing.T, r checks.Result) {
	t.Helper()
	v := policy.NewValues()
	for k, val := range r.Facts {
		if err := v.Set(k, val); err != nil {
			t.Errorf("fact %s=%#v: %v", k, val, err)
		}
	}
}

func TestReverseIP(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.99", "99.2.0.192"},
		{"127.0.0.2", "2.0.0.127"},
		{"::ffff:192.0.2.1", "1.2.0.192"},
		// RFC 5782 §2.4's example.
		{"2001:db8:1:2:3:4:567:89ab", "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"},
		{"::ffff:7f00:2", "2.0.0.127"},
		{"::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"},
	} {
		if got := reverseIP(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("reverseIP(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"127.0.0.2", "127.0.0.2/32", ""},
		{"127.0.0.0/24", "127.0.0.0/24", ""},
		{"127.0.0.0/8", "127.0.0.0/8", ""},
		{"127.0.0.1/24", "", "did you mean 127.0.0.0/24"},
		{"10.0.0.1", "", "not inside 127.0.0.0/8"},
		{"0.0.0.0/0", "", "not inside 127.0.0.0/8"},
		{"127.255.255.254", "", "127.255.255.0/24"},
		{"127.255.255.0/25", "", "127.255.255.0/24"},
		{"::1", "", "IPv4"},
		{"::ffff:127.0.0.2", "", "IPv4"},
		{"127.0.0.2%eth0", "", "not an address"},
		{"zen", "", "not an address"},
		{"", "", "not an address"},
		{"127.0.0.0/33", "", "not an address"},
	} {
		got, err := ParseAnswer(tc.in)
		switch {
		case tc.err == "" && (err != nil || got.String() != tc.want):
			t.Errorf("ParseAnswer(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseAnswer(%q) error = %v; want it to say %q", tc.in, err, tc.err)
		}
	}
}

func TestNewValidation(t *testing.T) {
	good := Zone{Zone: "zen.test", Weight: 1}
	for _, tc := range []struct {
		name string
		o    Options
		err  string // "" = valid
	}{
		{"valid", Options{Zones: []Zone{good, {Zone: "wl.test.", Name: "wl", Weight: -2}}}, ""},
		{"empty zone", Options{Zones: []Zone{{Zone: " "}}}, "zones[0]: zone is empty"},
		{"bad zone", Options{Zones: []Zone{{Zone: "zen..test"}}}, "zones[0]: zone is not a domain"},
		{"duplicate name", Options{Zones: []Zone{{Zone: "a.test", Name: "x"}, {Zone: "b.test", Name: "x"}}}, `zones[1] ("x"): name already used by zones[0]`},
		{"duplicate name across kinds", Options{Zones: []Zone{{Zone: "a.test", Name: "x"}},
			Domains: []DomainZone{{Zone: Zone{Zone: "b.test", Name: "x"}, On: []string{"helo"}}}}, "name already used"},
		{"duplicate zone", Options{Zones: []Zone{{Zone: "a.test", Name: "x"}, {Zone: "A.test.", Name: "y"}}}, "same zone as"},
		{"same zone for ip and domain", Options{Zones: []Zone{{Zone: "a.test", Name: "x"}},
			Domains: []DomainZone{{Zone: Zone{Zone: "a.test", Name: "y"}, On: []string{"helo"}}}}, ""},
		{"bad display name", Options{Zones: []Zone{{Zone: "a.test", Name: "zen list"}}}, "name \"zen list\""},
		{"dqs needs name", Options{Zones: []Zone{{Zone: "KEY123.zen.dq.spamhaus.net"}}}, "name is required"},
		{"nan weight", Options{Zones: []Zone{{Zone: "a.test", Weight: nan()}}}, "weight is not a finite"},
		{"answer outside 127/8", Options{Zones: []Zone{{Zone: "a.test", Answers: []Answer{{Net: netip.MustParsePrefix("10.0.0.0/8")}}}}}, "answers[0]: 10.0.0.0/8 is not inside"},
		{"answer not masked", Options{Zones: []Zone{{Zone: "a.test", Answers: []Answer{{Net: netip.PrefixFrom(netip.MustParseAddr("127.0.0.1"), 24)}}}}}, "host bits"},
		{"answer missing", Options{Zones: []Zone{{Zone: "a.test", Answers: []Answer{{}}}}}, "no answer address"},
		{"answer twice", Options{Zones: []Zone{{Zone: "a.test", Answers: []Answer{ans("127.0.0.2", nil, ""), ans("127.0.0.2", nil, "")}}}}, "given twice"},
		{"answer weight nan", Options{Zones: []Zone{{Zone: "a.test", Answers: []Answer{ans("127.0.0.2", wp(nan()), "")}}}}, "answers[0]: weight"},
		{"domain without on", Options{Domains: []DomainZone{{Zone: Zone{Zone: "dbl.test"}}}}, "on: give helo"},
		{"domain bad on", Options{Domains: []DomainZone{{Zone: Zone{Zone: "dbl.test"}, On: []string{"rcpt"}}}}, `"rcpt" is not helo`},
		{"domain on twice", Options{Domains: []DomainZone{{Zone: Zone{Zone: "dbl.test"}, On: []string{"helo", "helo"}}}}, "repeated"},
		{"negative interval", Options{HealthInterval: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(&resolvertest.Fake{}, tc.o)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				d.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New error = %v; want it to say %q", err, tc.err)
			}
			if strings.Contains(strings.ToLower(err.Error()), "key123") {
				t.Errorf("error shows the zone's key: %v", err)
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil resolver) succeeded")
	}
}

func nan() float64 { z := 0.0; return z / z }

// ipCase is one run of the IP check.
type ipCase struct {
	name     string
	zones    []Zone
	a        map[string][]string
	servfail []string
	timeout  []string
	ip       string
	result   string
	score    float64
	listed   []string
	reason   string
	detail   string
}

func TestIPCheck(t *testing.T) {
	zen := Zone{Zone: "zen.test", Name: "zen", Weight: 5}
	spamcop := Zone{Zone: "bl.spamcop.test", Name: "spamcop", Weight: 3}
	wl := Zone{Zone: "wl.test", Name: "wl", Weight: -4}
	zenCodes := Zone{Zone: "zen.test", Name: "zen", Weight: 2, Answers: []Answer{
		ans("127.0.0.2", wp(6), "SBL listed"),
		ans("127.0.0.4", nil, "XBL listed"),
		ans("127.0.0.8/29", wp(1), ""),
		ans("127.0.0.10", wp(0.5), "PBL listed"),
	}}
	for _, tc := range []ipCase{
		{name: "clean", zones: []Zone{zen, spamcop}, ip: "192.0.2.1",
			result: "clean", listed: []string{}, detail: "zen: not listed; spamcop: not listed"},
		{name: "listed default answer set", zones: []Zone{zen, spamcop}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.4"}},
			result: "listed", score: 5, listed: []string{"zen"}, reason: "listed by zen (127.0.0.4)",
			detail: "zen: 127.0.0.4; spamcop: not listed"},
		{name: "listed by two, reason of the heavier", zones: []Zone{spamcop, zen}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.3"}, "1.2.0.192.bl.spamcop.test": {"127.0.0.2"}},
			result: "listed", score: 8, listed: []string{"spamcop", "zen"}, reason: "listed by zen (127.0.0.3)",
			detail: "spamcop: 127.0.0.2; zen: 127.0.0.3"},
		{name: "allow list", zones: []Zone{zen, wl}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.wl.test": {"127.0.10.2"}},
			result: "allowlisted", score: -4, listed: []string{"wl"}, detail: "zen: not listed; wl: 127.0.10.2"},
		{name: "block and allow", zones: []Zone{zen, wl}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.wl.test": {"127.0.10.2"}, "1.2.0.192.zen.test": {"127.0.0.2"}},
			result: "listed", score: 1, listed: []string{"zen", "wl"}, reason: "listed by zen (127.0.0.2)"},
		{name: "answer weight and text", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2"}},
			result: "listed", score: 6, listed: []string{"zen"}, reason: "SBL listed"},
		{name: "answer text, zone weight", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.4"}},
			result: "listed", score: 2, listed: []string{"zen"}, reason: "XBL listed"},
		{name: "most specific answer wins", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.10"}},
			result: "listed", score: 0.5, listed: []string{"zen"}, reason: "PBL listed"},
		{name: "range answer without text", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.11"}},
			result: "listed", score: 1, listed: []string{"zen"}, reason: "listed by zen (127.0.0.11)"},
		{name: "several answers count once, heaviest", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.10", "127.0.0.2", "127.0.0.11"}},
			result: "listed", score: 6, listed: []string{"zen"}, reason: "SBL listed",
			detail: "zen: 127.0.0.2,127.0.0.10,127.0.0.11"},
		{name: "answer outside the set is ignored", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.5"}},
			result: "clean", listed: []string{}, detail: "zen: not listed (127.0.0.5 not counted)"},
		{name: "refused answer is an error", zones: []Zone{zen}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.255.255.254"}},
			result: "temperror", listed: []string{}, detail: "zen: refused (127.255.255.254)"},
		{name: "refused among listings is an error", zones: []Zone{zenCodes}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2", "127.255.255.252"}},
			result: "temperror", listed: []string{}, detail: "zen: refused (127.0.0.2,127.255.255.252)"},
		{name: "answer outside 127/8 is an error", zones: []Zone{zen}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"10.0.0.1"}},
			result: "temperror", listed: []string{}, detail: "zen: bad answer (10.0.0.1)"},
		{name: "servfail fails open", zones: []Zone{zen, spamcop}, ip: "192.0.2.1",
			servfail: []string{"1.2.0.192.zen.test"},
			result:   "temperror", listed: []string{}, detail: "zen: SERVFAIL; spamcop: not listed"},
		{name: "timeout fails open", zones: []Zone{zen, spamcop}, ip: "192.0.2.1",
			timeout: []string{"1.2.0.192.bl.spamcop.test"},
			result:  "temperror", listed: []string{}, detail: "zen: not listed; spamcop: timeout"},
		{name: "a failure does not hide a listing", zones: []Zone{zen, spamcop}, ip: "192.0.2.1",
			a:       map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2"}},
			timeout: []string{"1.2.0.192.bl.spamcop.test"},
			result:  "listed", score: 5, listed: []string{"zen"}, reason: "listed by zen (127.0.0.2)",
			detail: "zen: 127.0.0.2; spamcop: timeout"},
		{name: "IPv6 nibbles", zones: []Zone{zen}, ip: "2001:db8:1:2:3:4:567:89ab",
			a:      map[string][]string{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.test": {"127.0.0.3"}},
			result: "listed", score: 5, listed: []string{"zen"}, reason: "listed by zen (127.0.0.3)"},
		{name: "IPv4-mapped is unmapped", zones: []Zone{zen}, ip: "::ffff:192.0.2.1",
			a:      map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2"}},
			result: "listed", score: 5, listed: []string{"zen"}, reason: "listed by zen (127.0.0.2)"},
		{name: "zero-weight list", zones: []Zone{{Zone: "info.test", Name: "info"}}, ip: "192.0.2.1",
			a:      map[string][]string{"1.2.0.192.info.test": {"127.0.0.2"}},
			result: "listed", listed: []string{"info"}},
		{name: "no address", zones: []Zone{zen}, ip: "",
			result: "none", listed: []string{}, detail: "no client address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &resolvertest.Fake{A: tc.a, ServFail: map[string]bool{}, Timeout: map[string]bool{}}
			for _, n := range tc.servfail {
				f.ServFail[n] = true
			}
			for _, n := range tc.timeout {
				f.Timeout[n] = true
			}
			d := mustNew(t, f, Options{Zones: tc.zones})
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			c := d.IP()
			if c.Name() != "dnsbl" || c.Stage() != policy.StageConnect {
				t.Fatalf("check %s at %s", c.Name(), c.Stage())
			}
			// Timeouts end with the check's deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			r := c.Run(ctx, checks.Input{IP: ip})
			if r.Result != tc.result || r.Score != tc.score {
				t.Errorf("result %s score %v, want %s %v (detail %q)", r.Result, r.Score, tc.result, tc.score, r.Detail)
			}
			if tc.detail != "" && r.Detail != tc.detail {
				t.Errorf("detail %q, want %q", r.Detail, tc.detail)
			}
			want := map[string]any{"dnsbl.score": tc.score, "dnsbl.listed": tc.listed, "dnsbl.reason": tc.reason}
			if !reflect.DeepEqual(r.Facts, want) {
				t.Errorf("facts %#v, want %#v", r.Facts, want)
			}
			setFacts(t, r)
		})
	}
}

// TestBadAnswerCountedAndLogged: an error answer is a warning naming the
// list and the answer, once a minute, and counted.
func TestBadAnswerCountedAndLogged(t *testing.T) {
	log, buf := testLog()
	f := &resolvertest.Fake{A: map[string][]string{
		"1.2.0.192.zen.test": {"127.255.255.254"},
		"2.2.0.192.zen.test": {"127.255.255.254"},
	}}
	d := mustNew(t, f, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen", Weight: 1}}, Log: log})
	for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
		d.IP().Run(context.Background(), checks.Input{IP: netip.MustParseAddr(ip)})
	}
	out := buf.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "list=zen") || !strings.Contains(out, "answer=127.255.255.254") {
		t.Errorf("want one warning naming zen and the answer, got %d:\n%s", n, out)
	}
	if h := d.Health(); h[0].BadAnswers != 2 || !h[0].Healthy {
		t.Errorf("health %+v, want 2 bad answers, still healthy (only probes decide that)", h[0])
	}
}

// TestSecretZone runs a DQS-style zone through every path that shows
// something and checks the key never appears, in any case.
func TestSecretZone(t *testing.T) {
	const zoneKey = "KEY123.zen.dq.spamhaus.net"
	fake := func(testPoint []string, servfail bool) *resolvertest.Fake {
		return &resolvertest.Fake{
			A: map[string][]string{
				"2.0.0.127." + zoneKey:                 testPoint,
				"1.2.0.192." + zoneKey:                 {"127.0.0.4"},
				"2.2.0.192." + zoneKey:                 {"127.255.255.254"},
				"3.2.0.192." + zoneKey:                 {"10.0.0.1"},
				"test.key123.dbl.dq.spamhaus.net":      {"127.0.1.2"},
				"spam.test.key123.dbl.dq.spamhaus.net": {"127.0.1.2"},
			},
			ServFail: map[string]bool{"4.2.0.192." + zoneKey: true, "2.0.0.127." + zoneKey: servfail},
			Timeout:  map[string]bool{"5.2.0.192." + zoneKey: true},
		}
	}
	log, buf := testLog()
	r := &swapResolver{}
	r.cur.Store(fake([]string{"127.0.0.2"}, false))
	dbl := DomainZone{Zone: Zone{Zone: "KEY123.dbl.dq.spamhaus.net", Name: "dbl", Weight: 2}, On: []string{"helo", "mail_from"}}
	d := mustNew(t, r, Options{Zones: []Zone{{Zone: zoneKey, Name: "dqs", Weight: 5}}, Domains: []DomainZone{dbl}, Log: log})
	d.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var shown []any
	for i := 1; i <= 6; i++ {
		shown = append(shown, d.IP().Run(ctx, checks.Input{IP: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i))}))
	}
	in := checks.Input{Helo: "spam.test", MailDomain: "spam.test"}
	shown = append(shown, d.Helo().Run(context.Background(), in), d.MailFrom().Run(context.Background(), in))
	// The probe now fails: unhealthy, logged, and skipped with a reason.
	r.cur.Store(fake(nil, false))
	d.probeAll(context.Background())
	shown = append(shown, d.IP().Run(context.Background(), checks.Input{IP: netip.MustParseAddr("192.0.2.7")}), d.Health())
	r.cur.Store(fake([]string{"127.255.255.254"}, false))
	d.probeAll(context.Background())
	r.cur.Store(fake(nil, true))
	d.probeAll(context.Background())
	shown = append(shown, d.Health())
	_, err := New(r, Options{Zones: []Zone{{Zone: zoneKey, Name: "dqs"}, {Zone: zoneKey, Name: "dqs2"}}})
	shown = append(shown, err)

	all := strings.ToLower(fmt.Sprintf("%+v", shown) + buf.String())
	if strings.Contains(all, "key123") {
		t.Errorf("the zone's key appears:\n%s", all)
	}
	// The test is only worth something if those paths were taken.
	for _, want := range []string{"dqs: 127.0.0.4", "dqs: refused", "dqs: bad answer", "dqs: servfail", "dqs: timeout",
		"skipped (unhealthy: 127.0.0.2 not listed)", "level=warn", "list=dqs", reasonRefused, "error=servfail", "dbl: 127.0.1.2"} {
		if !strings.Contains(all, want) {
			t.Errorf("%q not shown; the test missed a path:\n%s", want, all)
		}
	}
}

// swapResolver answers from the Fake stored last, so a test can change
// the answers between runs without racing with a straggling lookup.
type swapResolver struct {
	resolver.Resolver // nil: this package only calls LookupIP
	cur               atomic.Pointer[resolvertest.Fake]
}

func (s *swapResolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	return s.cur.Load().LookupIP(ctx, network, host)
}

// TestDeadline: the check returns when ctx expires, with the lists still
// out as timeouts, and its lookups end with it.
func TestDeadline(t *testing.T) {
	f := &resolvertest.Fake{Latency: 10 * time.Second}
	d := mustNew(t, f, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen", Weight: 1}, {Zone: "b.test", Name: "b", Weight: 1}}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := d.IP().Run(ctx, checks.Input{IP: netip.MustParseAddr("192.0.2.1")})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run took %v after a 50ms deadline", el)
	}
	if r.Result != "temperror" || r.Detail != "zen: timeout; b: timeout" {
		t.Errorf("got %s %q", r.Result, r.Detail)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if r := d.IP().Run(ctx2, checks.Input{IP: netip.MustParseAddr("192.0.2.1")}); r.Detail != "zen: canceled; b: canceled" {
		t.Errorf("canceled: %q", r.Detail)
	}
}

func TestCache(t *testing.T) {
	f := &resolvertest.Fake{
		A:        map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2"}},
		ServFail: map[string]bool{"3.2.0.192.zen.test": true},
	}
	d := mustNew(t, f, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen", Weight: 1}}})
	now := time.Unix(1e9, 0)
	d.now = func() time.Time { return now }
	run := func(ip string) checks.Result {
		return d.IP().Run(context.Background(), checks.Input{IP: netip.MustParseAddr(ip)})
	}
	for _, step := range []struct {
		ip      string
		advance time.Duration
		result  string
		queries int
	}{
		{"192.0.2.1", 0, "listed", 1},
		{"192.0.2.1", 59 * time.Second, "listed", 1}, // cached
		{"192.0.2.1", 2 * time.Second, "listed", 2},  // expired
		{"192.0.2.2", 0, "clean", 1},                 // NXDOMAIN
		{"192.0.2.2", 0, "clean", 1},                 // cached too
		{"192.0.2.3", 0, "temperror", 1},             // failures
		{"192.0.2.3", 0, "temperror", 2},             // are not cached
	} {
		now = now.Add(step.advance)
		r := run(step.ip)
		q := f.Queries(reverseIP(netip.MustParseAddr(step.ip))+".zen.test.", "A")
		if r.Result != step.result || q != step.queries {
			t.Fatalf("%s after +%v: %s with %d queries, want %s with %d", step.ip, step.advance, r.Result, q, step.result, step.queries)
		}
	}

	c := newCache(8, time.Minute)
	for i := range 100 {
		c.put(cacheKey{0, fmt.Sprint(i)}, outcome{st: stListed}, now)
		if len(c.m) > 8 {
			t.Fatalf("cache holds %d entries, limit 8", len(c.m))
		}
	}
	if _, ok := c.get(cacheKey{0, "99"}, now); !ok {
		t.Error("the newest entry was evicted")
	}
}

func TestNilAndUnconfigured(t *testing.T) {
	var nilD *DNSBL
	nilD.Start(context.Background())
	nilD.Close()
	if nilD.Health() != nil {
		t.Error("nil Health not nil")
	}
	empty := mustNew(t, &resolvertest.Fake{}, Options{Zones: []Zone{{Zone: "zen.test"}}})
	for _, tc := range []struct {
		c     checks.Check
		name  string
		stage policy.Stage
	}{
		{nilD.IP(), "dnsbl", policy.StageConnect},
		{nilD.Helo(), "rhsbl_helo", policy.StageHelo},
		{nilD.MailFrom(), "rhsbl_mail_from", policy.StageMail},
		{empty.Helo(), "rhsbl_helo", policy.StageHelo},
		{empty.MailFrom(), "rhsbl_mail_from", policy.StageMail},
	} {
		r := tc.c.Run(context.Background(), checks.Input{IP: netip.MustParseAddr("192.0.2.1"), Helo: "a.test", MailDomain: "a.test"})
		if tc.c.Name() != tc.name || tc.c.Stage() != tc.stage || r.Result != "none" || r.Facts != nil {
			t.Errorf("%s/%s: %+v", tc.c.Name(), tc.c.Stage(), r)
		}
	}
	if h := empty.Health(); len(h) != 1 || h[0].Name != "zen.test" || !h[0].Healthy {
		t.Errorf("health %+v: the name defaults to the zone, healthy before any probe", h)
	}
}

func TestPublicResolverWarning(t *testing.T) {
	for _, tc := range []struct {
		servers []string
		want    []string // substrings, one per warning
	}{
		{[]string{"127.0.0.1:53", "[::1]:53", "10.255.255.53:53"}, nil},
		{[]string{"8.8.8.8:53"}, []string{"8.8.8.8:53 is a public resolver (Google Public DNS)"}},
		{[]string{"1.1.1.1", "127.0.0.1:53", "9.9.9.9:53"}, []string{"(Cloudflare)", "9.9.9.9:53 is a public resolver (Quad9)"}},
		{[]string{"[2606:4700:4700::1111]:53", "2001:4860:4860::8844"}, []string{"(Cloudflare)", "(Google Public DNS)"}},
		{[]string{"[2620:fe::fe]:53", "149.112.112.112:53", "208.67.222.222:53", "[::ffff:208.67.220.220]:53", "1.0.0.1:853"},
			[]string{"Quad9", "Quad9", "OpenDNS", "OpenDNS", "Cloudflare"}},
		{[]string{"resolver.example:53", ""}, nil},
	} {
		got := PublicResolverWarning(tc.servers)
		if len(got) != len(tc.want) {
			t.Errorf("%v: %q, want %d warnings", tc.servers, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) || !strings.Contains(got[i], "dedicated") {
				t.Errorf("%v: warning %q, want it to say %q", tc.servers, got[i], w)
			}
		}
	}
}
