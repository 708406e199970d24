package spf

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// fuzzDNS answers for the fuzzed identities: records whose macros expand
// the client's address, the HELO name and the sender (RFC 7208 §7), so
// odd input reaches the library's macro expansion and its lookups.
var fuzzDNS = &resolvertest.Fake{
	TXT: map[string][]string{
		"example.test":       {"v=spf1 ip4:192.0.2.0/24 mx ptr exists:%{ir}.%{v}.%{l}.x.example.test include:%{h} ~all"},
		"mail.example.test":  {"v=spf1 a -all"},
		"macro.example.test": {"v=spf1 a:%{s}.example.test exists:%{o}.%{d2}.%{H} redirect=%{l1r-}.example.test"},
	},
	A:  map[string][]string{"mail.example.test": {"192.0.2.25"}},
	MX: map[string][]*net.MX{"example.test": {{Host: "mail.example.test", Pref: 10}}},
}

// FuzzRun: whatever the client's address, HELO and MAIL FROM, Run never
// panics, every result is one of the seven (RFC 7208 §2.6), and the
// facts, detail and Authentication-Results agree with one another.
func FuzzRun(f *testing.F) {
	c := New(fuzzDNS, Options{})
	seven := []string{None, Neutral, Pass, Fail, Softfail, Temperror, Permerror}
	f.Fuzz(func(t *testing.T, ip, helo, from string) {
		addr, _ := netip.ParseAddr(ip) // the zero Addr is a case too
		in := checks.Input{IP: addr, Helo: helo, MailFrom: from}
		r := c.Run(t.Context(), in)
		mail, _ := r.Facts["spf"].(string)
		heloRes, _ := r.Facts["spf.helo"].(string)
		if !slices.Contains(seven, mail) || !slices.Contains(seven, heloRes) || r.Result != mail {
			t.Fatalf("Run(%q, %q, %q): Result %q, spf %q, spf.helo %q", ip, helo, from, r.Result, mail, heloRes)
		}
		if from == "" && heloRes != mail {
			t.Fatalf("null sender: spf %q but spf.helo %q", mail, heloRes)
		}
		if d, ok := r.Facts["spf.domain"].(string); ok && (!isDomainName(d) || d != canonical(d)) {
			t.Fatalf("spf.domain = %q", d)
		}
		if len(r.Auth) == 0 || len(r.Auth) > 2 || r.Detail == "" {
			t.Fatalf("Auth %s, Detail %q", authString(r.Auth), r.Detail)
		}
		if v := r.Auth[0].(*authres.SPFResult).Value; v != authValue(mail) {
			t.Fatalf("Auth value %q for result %q", v, mail)
		}
		if checks.Panics.Load() != 0 {
			t.Fatalf("Run(%q, %q, %q) panicked", ip, helo, from)
		}
	})
}
