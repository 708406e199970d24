package dnsbl

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		domain  bool
		answers []Answer
		a       map[string][]string
		fail    []string // SERVFAIL
		healthy bool
		reason  string
	}{
		{name: "ip healthy", a: map[string][]string{"2.0.0.127.z.test": {"127.0.0.2"}}, healthy: true},
		{name: "ip test point not listed", healthy: false, reason: "127.0.0.2 not listed"},
		{name: "ip test point answer outside the set", answers: []Answer{ans("127.0.0.2", nil, "")},
			a:       map[string][]string{"2.0.0.127.z.test": {"127.0.0.9"}},
			healthy: false, reason: "127.0.0.2 not listed"},
		{name: "ip lists everything", a: map[string][]string{"2.0.0.127.z.test": {"127.0.0.2"}, "1.0.0.127.z.test": {"127.0.0.2"}},
			healthy: false, reason: "127.0.0.1 listed"},
		{name: "ip refused", a: map[string][]string{"2.0.0.127.z.test": {"127.255.255.254"}},
			healthy: false, reason: reasonRefused},
		{name: "ip hijacked", a: map[string][]string{"2.0.0.127.z.test": {"127.0.0.2"}, "1.0.0.127.z.test": {"198.51.100.7"}},
			healthy: false, reason: reasonRefused},
		{name: "ipv6-only list passes by its test points", a: map[string][]string{
			"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.z.test": {"127.0.0.2"}}, healthy: true},
		{name: "ipv6 test points do not excuse listing 127.0.0.1", a: map[string][]string{
			"1.0.0.127.z.test": {"127.0.0.2"},
			"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.z.test": {"127.0.0.2"}},
			healthy: false, reason: "127.0.0.1 listed"},
		{name: "ipv6-only list listing everything", a: map[string][]string{
			"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.z.test": {"127.0.0.2"},
			"1.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.z.test": {"127.0.0.2"}},
			healthy: false, reason: "127.0.0.2 not listed"},
		{name: "ip servfail keeps healthy", fail: []string{"2.0.0.127.z.test"}, healthy: true},
		{name: "domain healthy", domain: true, a: map[string][]string{"test.z.test": {"127.0.1.2"}}, healthy: true},
		{name: "domain test not listed", domain: true, healthy: false, reason: "test not listed"},
		{name: "domain invalid listed", domain: true, a: map[string][]string{"test.z.test": {"127.0.1.2"}, "invalid.z.test": {"127.0.1.2"}},
			healthy: false, reason: "invalid listed"},
		{name: "domain refused", domain: true, a: map[string][]string{"test.z.test": {"127.255.255.252"}},
			healthy: false, reason: reasonRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &resolvertest.Fake{A: tc.a, ServFail: map[string]bool{}}
			for _, n := range tc.fail {
				f.ServFail[n] = true
			}
			z := Zone{Zone: "z.test", Name: "z", Weight: 1, Answers: tc.answers}
			o := Options{Zones: []Zone{z}}
			if tc.domain {
				o = Options{Domains: []DomainZone{{Zone: z, On: []string{"helo"}}}}
			}
			d := mustNew(t, f, o)
			d.Start(context.Background())
			h := d.Health()[0]
			if h.Healthy != tc.healthy || h.Reason != tc.reason {
				t.Errorf("health %+v, want healthy=%v reason %q", h, tc.healthy, tc.reason)
			}
			if len(tc.fail) == 0 && h.Checked.IsZero() || len(tc.fail) > 0 && !h.Checked.IsZero() {
				t.Errorf("checked %v: set only by a probe that got answers", h.Checked)
			}
		})
	}
}

// TestHealthTransitions: unhealthy lists are skipped without a query,
// failed probes keep the state, recovery puts a list back, and each change
// is logged once.
func TestHealthTransitions(t *testing.T) {
	log, buf := testLog()
	r := &swapResolver{}
	r.cur.Store(&resolvertest.Fake{A: map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2"}}})
	d := mustNew(t, r, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen", Weight: 1}}, Log: log})
	ctx := context.Background()
	run := func() checks.Result {
		return d.IP().Run(ctx, checks.Input{IP: netip.MustParseAddr("192.0.2.1")})
	}
	d.Start(ctx)
	d.probeAll(ctx) // the same state again: no second warning
	if r := run(); r.Result != "clean" || r.Detail != "zen: skipped (unhealthy: 127.0.0.2 not listed)" {
		t.Errorf("unhealthy: %s %q", r.Result, r.Detail)
	}
	if q := r.cur.Load().Queries("1.2.0.192.zen.test", "A"); q != 0 {
		t.Errorf("an unhealthy list was queried %d times", q)
	}
	r.cur.Store(&resolvertest.Fake{ServFail: map[string]bool{"2.0.0.127.zen.test": true}})
	d.probeAll(ctx)
	d.probeAll(ctx)
	if h := d.Health()[0]; h.Healthy || h.Reason != "127.0.0.2 not listed" || h.Errors != 2 {
		t.Errorf("after failed probes: %+v, want the state kept and 2 errors", h)
	}
	healthy := &resolvertest.Fake{A: map[string][]string{"1.2.0.192.zen.test": {"127.0.0.2"}}}
	addTestPoints(healthy, "zen.test", false)
	r.cur.Store(healthy)
	d.probeAll(ctx)
	if h := d.Health()[0]; !h.Healthy || h.Reason != "" {
		t.Errorf("after recovery: %+v", h)
	}
	if r := run(); r.Result != "listed" {
		t.Errorf("recovered list: %s %q", r.Result, r.Detail)
	}
	out := buf.String()
	for _, want := range []string{
		"level=WARN msg=\"dnsbl: list fails its RFC 5782 test; skipped until it passes\" list=zen reason=\"127.0.0.2 not listed\"",
		"level=WARN msg=\"dnsbl: health probe got no answer; the list keeps its state\" list=zen error=SERVFAIL healthy=false",
		"level=INFO msg=\"dnsbl: health probe answered again\" list=zen",
		"level=INFO msg=\"dnsbl: list passes its test again; back in use\" list=zen",
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want once: %s\nlog:\n%s", want, out)
		}
	}
}

// countingResolver counts probes of the RFC 5782 test point.
type countingResolver struct {
	resolver.Resolver
	probes atomic.Int64
}

func (c *countingResolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	if strings.HasPrefix(host, "2.0.0.127.") {
		c.probes.Add(1)
	}
	return c.Resolver.LookupIP(ctx, network, host)
}

// TestProber: with an interval the lists are probed again until Close,
// and not after.
func TestProber(t *testing.T) {
	f := &resolvertest.Fake{}
	addTestPoints(f, "zen.test", false)
	c := &countingResolver{Resolver: f}
	d, err := New(c, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen"}}, HealthInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Start(context.Background())
	d.Start(context.Background()) // no second prober
	deadline := time.Now().Add(5 * time.Second)
	for c.probes.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	d.Close()
	n := c.probes.Load()
	if n < 4 {
		t.Fatalf("%d probes in 5s at a 5ms interval", n)
	}
	time.Sleep(30 * time.Millisecond)
	if m := c.probes.Load(); m != n {
		t.Errorf("%d probes after Close", m-n)
	}
	d.Close() // twice is fine

	// Close before Start: Start probes once and starts no prober.
	d2, _ := New(c, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen"}}, HealthInterval: time.Millisecond})
	d2.Close()
	d2.Start(context.Background())
	if d2.cancel != nil {
		t.Error("a prober started after Close")
	}
}

// TestStartBounded: Start returns when its ctx expires even if the
// resolver does not answer, and Close waits for the probes.
func TestStartBounded(t *testing.T) {
	f := &resolvertest.Fake{Latency: time.Hour}
	d := mustNew(t, f, Options{Zones: []Zone{{Zone: "zen.test", Name: "zen"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	d.Start(ctx)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Start took %v", el)
	}
	if h := d.Health()[0]; !h.Healthy {
		t.Errorf("a list that did not answer its probe was switched off: %+v", h)
	}
}

func TestRHSBL(t *testing.T) {
	dbl := DomainZone{Zone: Zone{Zone: "dbl.test", Name: "dbl", Weight: 4}, On: []string{"helo", "mail_from"}}
	mailOnly := DomainZone{Zone: Zone{Zone: "uribl.test", Name: "uribl", Weight: 2}, On: []string{"mail_from"}}
	heloOnly := DomainZone{Zone: Zone{Zone: "hbl.test", Name: "hbl", Weight: 1, Answers: []Answer{ans("127.0.1.0/24", nil, "")}}, On: []string{"helo"}}
	a := map[string][]string{
		"spammer.test.dbl.test":    {"127.0.1.2"},
		"spammer.test.uribl.test":  {"127.0.0.2"},
		"spammer.test.hbl.test":    {"127.0.1.3"},
		"bad.example.hbl.test":     {"127.0.1.3"},
		"odd.example.hbl.test":     {"127.0.0.2"}, // outside hbl's answers
		"refused.example.dbl.test": {"127.255.255.254"},
	}
	for _, tc := range []struct {
		name       string
		helo, mail string
		heloResult string
		heloListed []string
		mailResult string
		mailListed []string
		score      float64
		heloDetail string
		mailDetail string
	}{
		{name: "clean", helo: "mx.example", mail: "example.org",
			heloResult: "clean", heloListed: []string{}, mailResult: "clean", mailListed: []string{},
			heloDetail: "dbl: not listed; hbl: not listed",
			mailDetail: "mail_from dbl: not listed; mail_from uribl: not listed; helo dbl: not listed; helo hbl: not listed"},
		{name: "same name counts once per list", helo: "Spammer.Test.", mail: "spammer.test",
			heloResult: "listed", heloListed: []string{"dbl", "hbl"}, mailResult: "listed", mailListed: []string{"dbl", "uribl"}, score: 7,
			mailDetail: "helo+mail_from dbl: 127.0.1.2; mail_from uribl: 127.0.0.2; helo hbl: 127.0.1.3"},
		{name: "helo listed, sender clean", helo: "bad.example", mail: "example.org",
			heloResult: "listed", heloListed: []string{"hbl"}, mailResult: "listed", mailListed: []string{}, score: 1},
		{name: "answer outside the set", helo: "odd.example", mail: "",
			heloResult: "clean", heloListed: []string{}, mailResult: "clean", mailListed: []string{},
			mailDetail: "mail_from: no domain to look up; helo dbl: not listed; helo hbl: not listed (127.0.0.2 not counted)"},
		{name: "address literal and null sender", helo: "[127.0.0.1]", mail: "",
			heloResult: "none", heloListed: []string{}, mailResult: "none", mailListed: []string{},
			heloDetail: "HELO name is not a domain name: not looked up", mailDetail: "mail_from: no domain to look up"},
		{name: "refused", helo: "refused.example", mail: "refused.example",
			heloResult: "temperror", heloListed: []string{}, mailResult: "temperror", mailListed: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &resolvertest.Fake{A: a}
			d := mustNew(t, f, Options{Domains: []DomainZone{dbl, mailOnly, heloOnly}})
			in := checks.Input{Helo: tc.helo, MailDomain: tc.mail}
			h := d.Helo().Run(context.Background(), in)
			if h.Result != tc.heloResult || !reflect.DeepEqual(h.Facts, map[string]any{"rhsbl.helo.listed": tc.heloListed}) {
				t.Errorf("helo: %s %v (%q), want %s %v", h.Result, h.Facts, h.Detail, tc.heloResult, tc.heloListed)
			}
			if tc.heloDetail != "" && h.Detail != tc.heloDetail {
				t.Errorf("helo detail %q, want %q", h.Detail, tc.heloDetail)
			}
			m := d.MailFrom().Run(context.Background(), in)
			want := map[string]any{"rhsbl.mail_from.listed": tc.mailListed, "rhsbl.score": tc.score}
			if m.Result != tc.mailResult || m.Score != tc.score || !reflect.DeepEqual(m.Facts, want) {
				t.Errorf("mail: %s %v %v (%q), want %s %v", m.Result, m.Score, m.Facts, m.Detail, tc.mailResult, want)
			}
			if tc.mailDetail != "" && m.Detail != tc.mailDetail {
				t.Errorf("mail detail %q, want %q", m.Detail, tc.mailDetail)
			}
			setFacts(t, h)
			setFacts(t, m)
			if d.Helo().Name() != "rhsbl_helo" || d.MailFrom().Name() != "rhsbl_mail_from" {
				t.Error("check names")
			}
		})
	}
}

// TestRHSBLQueries: names are looked up lower-case under the zone, once
// per minute, and junk is never sent.
func TestRHSBLQueries(t *testing.T) {
	rec := &recorder{Resolver: &resolvertest.Fake{}}
	dbl := DomainZone{Zone: Zone{Zone: "DBL.test.", Name: "dbl", Weight: 1}, On: []string{"helo", "mail_from"}}
	d := mustNew(t, rec, Options{Domains: []DomainZone{dbl}})
	for _, helo := range []string{"Mail.Example.ORG.", "mail.example.org", "localhost", "192.0.2.1", "[192.0.2.1]",
		"[IPv6:2001:db8::1]", "foo_bar.example", "-a.example", "a..example", "1.2.3", "münchen.example", strings.Repeat("a.", 130) + "test"} {
		d.Helo().Run(context.Background(), checks.Input{Helo: helo})
		d.MailFrom().Run(context.Background(), checks.Input{Helo: helo, MailDomain: helo})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []string{"ip4 mail.example.org.dbl.test."}; !reflect.DeepEqual(rec.hosts, want) {
		t.Errorf("queries %q, want %q", rec.hosts, want)
	}
}

// recorder records the names looked up.
type recorder struct {
	resolver.Resolver
	mu    sync.Mutex
	hosts []string
}

func (r *recorder) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	r.mu.Lock()
	r.hosts = append(r.hosts, network+" "+host)
	r.mu.Unlock()
	return r.Resolver.LookupIP(ctx, network, host)
}

func TestQueryDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Mail.Example.ORG.", "mail.example.org"},
		{" example.com ", "example.com"},
		{"xn--mnchen-3ya.example", "xn--mnchen-3ya.example"},
		{"a-b.c9.example", "a-b.c9.example"},
		{"localhost", ""},
		{"192.0.2.1", ""},
		{"2001:db8::1", ""},
		{"[192.0.2.1]", ""},
		{"a.123", ""},
		{"a_b.example", ""},
		{"a.-b.example", ""},
		{".example", ""},
		{"", ""},
		{"münchen.example", ""},
		{strings.Repeat("a", 64) + ".example", ""},
	} {
		got, ok := queryDomain(tc.in)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("queryDomain(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}
