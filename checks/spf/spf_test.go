package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/policy"
)

// TestMain fails the package when a check panicked, even where the panic
// was recovered into a temperror (style.md §12).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && checks.Panics.Load() != 0 {
		fmt.Fprintln(os.Stderr, "checks panicked")
		code = 1
	}
	os.Exit(code)
}

// fakeDNS is the zone of the unit tests. Senders are at *.test, HELO
// names at *.helo.test; clients are 192.0.2.0/24 and 2001:db8::/32.
func fakeDNS() *resolvertest.Fake {
	return &resolvertest.Fake{
		TXT: map[string][]string{
			"ip4.test":         {"v=spf1 ip4:192.0.2.0/24 -all"},
			"a.test":           {"unrelated TXT record", "v=spf1 a -all"},
			"mx.test":          {"v=spf1 mx -all"},
			"include.test":     {"v=spf1 include:ip4.test -all"},
			"fail.test":        {"v=spf1 ip4:198.51.100.0/24 -all"},
			"softfail.test":    {"v=spf1 ~all"},
			"neutral.test":     {"v=spf1 ?all"},
			"default.test":     {"v=spf1 ip4:198.51.100.1"},
			"norecord.test":    {"google-site-verification=abc"},
			"servfail.test":    {"v=spf1 +all"},
			"timeout.test":     {"v=spf1 +all"},
			"badip4.test":      {"v=spf1 ip4:192.0.2.300 -all"},
			"two.test":         {"v=spf1 -all", "v=spf1 +all"},
			"loop.test":        {"v=spf1 include:loop.test -all"},
			"void.test":        {"v=spf1 a:nx1.test a:nx2.test a:nx3.test -all"},
			"nxinclude.test":   {"v=spf1 include:nx.test -all"},
			"incservfail.test": {"v=spf1 include:servfail.test -all"},
			"macro.test":       {"v=spf1 exists:%{z}.test -all"},
			"ip6.test":         {"v=spf1 ip6:2001:db8::/32 -all"},
			"redirect.test":    {"v=spf1 redirect=ip4.test"},
			"local.test":       {"v=spf1 exists:%{l}.local.test -all"},
			"pass.helo.test":   {"v=spf1 ip4:192.0.2.0/24 -all"},
			"fail.helo.test":   {"v=spf1 -all"},
		},
		A: map[string][]string{
			"a.test":                {"192.0.2.10"},
			"mx1.mx.test":           {"198.51.100.9"},
			"mx2.mx.test":           {"192.0.2.20"},
			"postmaster.local.test": {"127.0.0.2"},
		},
		MX: map[string][]*net.MX{
			"mx.test": {{Host: "mx2.mx.test", Pref: 20}, {Host: "mx1.mx.test", Pref: 10}},
		},
		ServFail: map[string]bool{"servfail.test": true},
		Timeout:  map[string]bool{"timeout.test": true},
	}
}

// mailAuth and heloAuth are the Authentication-Results entries expected.
func mailAuth(v authres.ResultValue, from, helo string) *authres.SPFResult {
	return &authres.SPFResult{Value: v, From: from, Helo: helo}
}

func heloAuth(v authres.ResultValue, helo string) *authres.SPFResult {
	return &authres.SPFResult{Value: v, Helo: helo}
}

func TestRun(t *testing.T) {
	const helo = "pass.helo.test"
	tests := []struct {
		name           string
		ip, helo, from string
		mail, heloRes  string
		domain         string // "" = spf.domain unset
		detail         []string
		auth           []authres.Result
	}{
		{
			name: "pass ip4", ip: "192.0.2.1", helo: helo, from: "alice@ip4.test",
			mail: Pass, heloRes: Pass, domain: "ip4.test",
			detail: []string{"mailfrom ip4.test: pass (matched ip4); helo pass.helo.test: pass (matched ip4)"},
			auth:   []authres.Result{mailAuth(authres.ResultPass, "alice@ip4.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "pass a", ip: "192.0.2.10", helo: helo, from: "alice@a.test",
			mail: Pass, heloRes: Pass, domain: "a.test", detail: []string{"a.test: pass (matched a)"},
		},
		{
			name: "pass mx, second by preference", ip: "192.0.2.20", helo: helo, from: "alice@mx.test",
			mail: Pass, heloRes: Pass, domain: "mx.test", detail: []string{"mx.test: pass (matched mx)"},
		},
		{
			name: "pass include", ip: "192.0.2.1", helo: helo, from: "alice@include.test",
			mail: Pass, heloRes: Pass, domain: "include.test", detail: []string{"include.test: pass (matched ip4)"},
		},
		{
			name: "pass redirect", ip: "192.0.2.1", helo: helo, from: "alice@redirect.test",
			mail: Pass, heloRes: Pass, domain: "redirect.test", detail: []string{"redirect.test: pass (matched ip4)"},
		},
		{
			name: "pass ip6", ip: "2001:db8::5", helo: helo, from: "alice@ip6.test",
			mail: Pass, heloRes: Fail, domain: "ip6.test",
			detail: []string{"ip6.test: pass (matched ip6)", "helo pass.helo.test: fail (matched -all)"},
			auth:   []authres.Result{mailAuth(authres.ResultPass, "alice@ip6.test", helo), heloAuth(authres.ResultFail, helo)},
		},
		{
			name: "IPv4-mapped client is unmapped", ip: "::ffff:192.0.2.1", helo: helo, from: "alice@ip4.test",
			mail: Pass, heloRes: Pass, domain: "ip4.test", detail: []string{"ip4.test: pass (matched ip4)"},
		},
		{
			name: "fail", ip: "192.0.2.1", helo: helo, from: "alice@fail.test",
			mail: Fail, heloRes: Pass, domain: "fail.test",
			detail: []string{"mailfrom fail.test: fail (matched -all); helo pass.helo.test: pass (matched ip4)"},
			auth:   []authres.Result{mailAuth(authres.ResultFail, "alice@fail.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "softfail", ip: "192.0.2.1", helo: helo, from: "alice@softfail.test",
			mail: Softfail, heloRes: Pass, domain: "softfail.test", detail: []string{"softfail (matched ~all)"},
			auth: []authres.Result{mailAuth(authres.ResultSoftFail, "alice@softfail.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "neutral", ip: "192.0.2.1", helo: helo, from: "alice@neutral.test",
			mail: Neutral, heloRes: Pass, domain: "neutral.test", detail: []string{"neutral (matched ?all)"},
			auth: []authres.Result{mailAuth(authres.ResultNeutral, "alice@neutral.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "neutral by default", ip: "192.0.2.1", helo: helo, from: "alice@default.test",
			mail: Neutral, heloRes: Pass, domain: "default.test", detail: []string{"neutral (no mechanism matched (§4.7))"},
		},
		{
			name: "none: no SPF among the TXT records", ip: "192.0.2.1", helo: helo, from: "alice@norecord.test",
			mail: None, heloRes: Pass, domain: "norecord.test", detail: []string{"norecord.test: none (no SPF record (§4.5))"},
			auth: []authres.Result{mailAuth(authres.ResultNone, "alice@norecord.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "none: NXDOMAIN", ip: "192.0.2.1", helo: helo, from: "alice@nx.test",
			mail: None, heloRes: Pass, domain: "nx.test", detail: []string{"nx.test: none (no SPF record"},
		},
		{
			name: "temperror: SERVFAIL", ip: "192.0.2.1", helo: helo, from: "alice@servfail.test",
			mail: Temperror, heloRes: Pass, domain: "servfail.test",
			detail: []string{"servfail.test: temperror (DNS servfail.test: SERVFAIL)"},
			auth:   []authres.Result{mailAuth(authres.ResultTempError, "alice@servfail.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "temperror: SERVFAIL behind an include", ip: "192.0.2.99", helo: helo, from: "alice@incservfail.test",
			mail: Temperror, heloRes: Pass, domain: "incservfail.test", detail: []string{"temperror (DNS servfail.test: SERVFAIL)"},
		},
		{
			name: "permerror: bad ip4", ip: "192.0.2.1", helo: helo, from: "alice@badip4.test",
			mail: Permerror, heloRes: Pass, domain: "badip4.test", detail: []string{"permerror (syntax error: invalid ip4 or ip6 address"},
			auth: []authres.Result{mailAuth(authres.ResultPermError, "alice@badip4.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "permerror: two records", ip: "192.0.2.1", helo: helo, from: "alice@two.test",
			mail: Permerror, heloRes: Pass, domain: "two.test", detail: []string{"permerror (more than one SPF record (§4.5))"},
		},
		{
			name: "permerror: include loop hits the lookup limit", ip: "192.0.2.1", helo: helo, from: "alice@loop.test",
			mail: Permerror, heloRes: Pass, domain: "loop.test",
			detail: []string{"permerror (lookup limit reached (10 DNS lookups, RFC 7208 §4.6.4))"},
		},
		{
			name: "permerror: three void lookups", ip: "192.0.2.1", helo: helo, from: "alice@void.test",
			mail: Permerror, heloRes: Pass, domain: "void.test", detail: []string{"permerror (void lookup limit reached (2, §4.6.4))"},
		},
		{
			name: "permerror: include of a domain without a record", ip: "192.0.2.1", helo: helo, from: "alice@nxinclude.test",
			mail: Permerror, heloRes: Pass, domain: "nxinclude.test", detail: []string{"included or redirected domain has no SPF record"},
		},
		{
			name: "permerror: bad macro", ip: "192.0.2.1", helo: helo, from: "alice@macro.test",
			mail: Permerror, heloRes: Pass, domain: "macro.test", detail: []string{"syntax error: invalid macro (§7.1)"},
		},
		{
			name: "no local-part is postmaster", ip: "192.0.2.1", helo: helo, from: "@local.test",
			mail: Pass, heloRes: Pass, domain: "local.test", detail: []string{"local.test: pass (matched exists)"},
			auth: []authres.Result{mailAuth(authres.ResultPass, "postmaster@local.test", helo), heloAuth(authres.ResultPass, helo)},
		},
		{
			name: "null sender is postmaster@helo, checked once", ip: "192.0.2.1", helo: helo, from: "",
			mail: Pass, heloRes: Pass, domain: "pass.helo.test",
			detail: []string{"null sender, helo pass.helo.test: pass (matched ip4)"},
			auth:   []authres.Result{mailAuth(authres.ResultPass, "postmaster@pass.helo.test", helo)},
		},
		{
			name: "null sender, HELO fails", ip: "192.0.2.1", helo: "Fail.Helo.Test.", from: "",
			mail: Fail, heloRes: Fail, domain: "fail.helo.test",
			detail: []string{"null sender, helo Fail.Helo.Test.: fail (matched -all)"},
			auth:   []authres.Result{mailAuth(authres.ResultFail, "postmaster@Fail.Helo.Test.", "Fail.Helo.Test.")},
		},
		{
			name: "null sender, HELO literal", ip: "192.0.2.1", helo: "[192.0.2.1]", from: "",
			mail: None, heloRes: None,
			detail: []string{"null sender, helo [192.0.2.1]: none (HELO is not a domain)"},
			auth:   []authres.Result{mailAuth(authres.ResultNone, "postmaster@[192.0.2.1]", "[192.0.2.1]")},
		},
		{
			name: "null sender, single-label HELO", ip: "192.0.2.1", helo: "localhost", from: "",
			mail: None, heloRes: None, detail: []string{"none (HELO is not a domain)"},
		},
		{
			name: "HELO identity has its own result", ip: "192.0.2.1", helo: "fail.helo.test", from: "alice@ip4.test",
			mail: Pass, heloRes: Fail, domain: "ip4.test",
			detail: []string{"mailfrom ip4.test: pass (matched ip4); helo fail.helo.test: fail (matched -all)"},
			auth:   []authres.Result{mailAuth(authres.ResultPass, "alice@ip4.test", "fail.helo.test"), heloAuth(authres.ResultFail, "fail.helo.test")},
		},
		{
			name: "HELO without a record", ip: "192.0.2.1", helo: "none.helo.test", from: "alice@ip4.test",
			mail: Pass, heloRes: None, domain: "ip4.test", detail: []string{"helo none.helo.test: none (no SPF record (§4.5))"},
		},
		{
			name: "HELO literal is not checked", ip: "192.0.2.1", helo: "[192.0.2.1]", from: "alice@ip4.test",
			mail: Pass, heloRes: None, domain: "ip4.test",
			detail: []string{"mailfrom ip4.test: pass (matched ip4); helo [192.0.2.1]: none (HELO is not a domain)"},
			auth:   []authres.Result{mailAuth(authres.ResultPass, "alice@ip4.test", "[192.0.2.1]")},
		},
		{
			name: "sender address literal", ip: "192.0.2.1", helo: helo, from: "alice@[192.0.2.1]",
			mail: None, heloRes: Pass, detail: []string{"mailfrom [192.0.2.1]: none (sender domain is not a domain name)"},
		},
		{
			name: "no client address", helo: helo, from: "alice@ip4.test",
			mail: None, heloRes: None, domain: "ip4.test", detail: []string{"none (no client address)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			r := New(fakeDNS(), Options{}).Run(t.Context(), checks.Input{IP: ip, Helo: tt.helo, MailFrom: tt.from})
			checkResult(t, r, tt.mail, tt.heloRes, tt.domain)
			for _, d := range tt.detail {
				if !strings.Contains(r.Detail, d) {
					t.Errorf("Detail = %q, want it to contain %q", r.Detail, d)
				}
			}
			if tt.auth != nil && !reflect.DeepEqual(r.Auth, tt.auth) {
				t.Errorf("Auth = %s, want %s", authString(r.Auth), authString(tt.auth))
			}
		})
	}
}

// checkResult asserts what every result must satisfy, and the values.
func checkResult(t *testing.T, r checks.Result, mail, helo, domain string) {
	t.Helper()
	if r.Name != "spf" || r.Result != mail || r.Facts["spf"] != mail || r.Facts["spf.helo"] != helo {
		t.Errorf("Name, Result, spf, spf.helo = %q, %q, %v, %v; want spf, %s, %s, %s (detail %q)",
			r.Name, r.Result, r.Facts["spf"], r.Facts["spf.helo"], mail, mail, helo, r.Detail)
	}
	if d, ok := r.Facts["spf.domain"]; domain == "" && ok || domain != "" && d != domain {
		t.Errorf("spf.domain = %v (set %v), want %q", d, ok, domain)
	}
	if len(r.Auth) == 0 || r.Auth[0].(*authres.SPFResult).Value != authValue(mail) {
		t.Errorf("Auth = %s, want a first value of %s", authString(r.Auth), mail)
	}
}

func authString(rs []authres.Result) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%+v", r))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestQueries: for the null sender the MAIL FROM and HELO identities are
// one check (RFC 7208 §2.4), so one TXT query; with a sender, each
// identity is asked once; an address literal costs no query at all.
func TestQueries(t *testing.T) {
	dns := fakeDNS()
	c := New(dns, Options{})
	ip := netip.MustParseAddr("192.0.2.1")
	c.Run(t.Context(), checks.Input{IP: ip, Helo: "pass.helo.test"})
	if n := dns.Queries("pass.helo.test", "TXT"); n != 1 {
		t.Errorf("null sender: %d TXT queries for the HELO name, want 1", n)
	}
	c.Run(t.Context(), checks.Input{IP: ip, Helo: "fail.helo.test", MailFrom: "alice@ip4.test"})
	if a, b := dns.Queries("fail.helo.test", "TXT"), dns.Queries("ip4.test", "TXT"); a != 1 || b != 1 {
		t.Errorf("sender: %d TXT queries for the HELO name and %d for the sender's, want 1 and 1", a, b)
	}
	c.Run(t.Context(), checks.Input{IP: ip, Helo: "[192.0.2.1]"})
	if n := dns.Queries("[192.0.2.1]", "TXT") + dns.Queries("192.0.2.1", "TXT"); n != 0 {
		t.Errorf("HELO literal: %d TXT queries, want none", n)
	}
}

// TestTimeout: the budget of Options.Timeout and the caller's deadline
// both end a check that DNS never answers, well before the fake's own
// resolvertest.TimeoutAfter, with temperror.
func TestTimeout(t *testing.T) {
	in := checks.Input{IP: netip.MustParseAddr("192.0.2.1"), Helo: "pass.helo.test", MailFrom: "alice@timeout.test"}
	tests := []struct {
		name    string
		opts    Options
		ctxWait time.Duration // 0 = no deadline on the caller's context
	}{
		{name: "Options.Timeout", opts: Options{Timeout: 100 * time.Millisecond}},
		{name: "caller's deadline", ctxWait: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.ctxWait > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxWait)
				defer cancel()
			}
			start := time.Now()
			r := New(fakeDNS(), tt.opts).Run(ctx, in)
			if took := time.Since(start); took >= resolvertest.TimeoutAfter {
				t.Errorf("took %v: the deadline was not honoured", took)
			}
			checkResult(t, r, Temperror, Pass, "timeout.test")
			if want := "temperror (DNS timeout.test: timeout)"; !strings.Contains(r.Detail, want) {
				t.Errorf("Detail = %q, want it to contain %q", r.Detail, want)
			}
		})
	}
}

func TestFactsRegistered(t *testing.T) {
	for name, kind := range map[string]policy.Kind{"spf": policy.KindString, "spf.helo": policy.KindString, "spf.domain": policy.KindDomain} {
		d, ok := policy.LookupFact(name)
		if !ok || d.Kind != kind || d.Stage != policy.StageRcpt {
			t.Errorf("fact %s: %+v, %v; want kind %s at stage %s", name, d, ok, kind, policy.StageRcpt)
		}
	}
	c := New(nil, Options{})
	if c.Name() != "spf" || c.Stage() != policy.StageRcpt || c.timeout != DefaultTimeout {
		t.Errorf("Name, Stage, timeout = %s, %s, %v", c.Name(), c.Stage(), c.timeout)
	}
}

func TestIsDomainName(t *testing.T) {
	tests := map[string]bool{
		"example.test":                    true,
		"Mail.Example.Test.":              true,
		"_spf.example.test":               true,
		"a.b":                             true,
		strings.Repeat("a", 63) + ".test": true,
		strings.Repeat("a", 64) + ".test": false,
		strings.Repeat("a.", 126) + "ab":  false, // 254 octets
		"":                                false,
		".":                               false,
		"localhost":                       false,
		"a..b":                            false,
		".example.test":                   false,
		"example.test..":                  false,
		"[192.0.2.1]":                     false,
		"[IPv6:2001:db8::1]":              false,
		"192.0.2.1":                       false,
		"2001:db8::1":                     false,
		"exa mple.test":                   false,
		"exämple.test":                    false,
		"%{l}.test":                       false,
	}
	for s, want := range tests {
		if got := isDomainName(s); got != want {
			t.Errorf("isDomainName(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestExplain covers the diagnostics the zone of TestRun does not produce.
func TestExplain(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		res  spf.Result
		err  error
		ip   netip.Addr
		want string
	}{
		{spf.Pass, spf.ErrMatchedIP, v6, "matched ip6"},
		{spf.Fail, spf.ErrMatchedIP, v4, "matched -ip4"},
		{spf.SoftFail, spf.ErrMatchedMX, v4, "matched ~mx"},
		{spf.Neutral, spf.ErrMatchedPTR, v4, "matched ?ptr"},
		{spf.Pass, fmt.Errorf("wrapped: %w", spf.ErrMatchedExists), v4, "matched exists"},
		{spf.PermError, spf.ErrTooManyMXRecords, v4, "more than 10 MX records (§4.6.4)"},
		{spf.PermError, spf.ErrInvalidMask, v4, "syntax error: invalid CIDR length (§5.6)"},
		{spf.PermError, spf.ErrUnknownField, v4, "syntax error: unknown mechanism (§4.6.1)"},
		{spf.PermError, spf.ErrInvalidDomain, v4, "syntax error: invalid domain-spec or repeated redirect (§4.6.1, §6)"},
		{spf.PermError, spf.ErrInvalidIPAddress, netip.Addr{}, "invalid client address"},
		{spf.PermError, &net.DNSError{Err: "unrecognized address", Name: "x.test."}, v4, "DNS x.test: unrecognized address"},
		{spf.TempError, &net.DNSError{Err: "i/o timeout", Name: "x.test", Server: "192.0.2.53:53", IsTimeout: true, IsTemporary: true}, v4, "DNS x.test: timeout"},
		{spf.TempError, &net.DNSError{Err: "REFUSED", Server: "192.0.2.53:53", IsTemporary: true}, v4, "DNS REFUSED"},
		{spf.PermError, errors.New(strings.Repeat("x", 300)), v4, strings.Repeat("x", maxDetailName) + "..."},
		{spf.None, nil, v4, ""},
	}
	for _, tt := range tests {
		if got := explain(tt.res, tt.err, tt.ip); got != tt.want {
			t.Errorf("explain(%s, %v, %v) = %q, want %q", tt.res, tt.err, tt.ip, got, tt.want)
		}
	}
}
