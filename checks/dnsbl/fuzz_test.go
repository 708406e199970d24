package dnsbl

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// FuzzParseAnswer: whatever ParseAnswer accepts is a masked IPv4 prefix
// that can be a listing, and reads back to itself.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "127.0.0.0/24", "127.0.0.1/24", "127.255.255.254", "10.0.0.1", "::1", "0.0.0.0/0", "127.0.0.2%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAnswer(s)
		if err != nil {
			if p.IsValid() {
				t.Fatalf("ParseAnswer(%q) returned %v with error %v", s, p, err)
			}
			return
		}
		if !p.Addr().Is4() || p != p.Masked() || !loopback8.Overlaps(p) || p.Bits() < 8 {
			t.Fatalf("ParseAnswer(%q) = %v: not a masked prefix inside 127/8", s, p)
		}
		if refused24.Bits() <= p.Bits() && refused24.Contains(p.Addr()) {
			t.Fatalf("ParseAnswer(%q) = %v: inside the refused range", s, p)
		}
		again, err := ParseAnswer(p.String())
		if err != nil || again != p {
			t.Fatalf("ParseAnswer(%q) = %v, but ParseAnswer(%q) = %v, %v", s, p, p.String(), again, err)
		}
		// What classify relies on: every answer a prefix accepts is one.
		if _, err := New(&resolvertest.Fake{}, Options{Zones: []Zone{{Zone: "z.test", Answers: []Answer{{Net: p}}}}}); err != nil {
			t.Fatalf("New rejects what ParseAnswer accepted (%v): %v", p, err)
		}
	})
}

// FuzzQueryDomain: a name that is looked up is a lower-case LDH domain of
// two or more labels that fits a query, never an address, and is stable.
func FuzzQueryDomain(f *testing.F) {
	for _, s := range []string{"Mail.Example.ORG.", "[192.0.2.1]", "192.0.2.1", "localhost", "a.123", "xn--mnchen-3ya.example", "münchen.example", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, ok := queryDomain(s)
		if !ok {
			if q != "" {
				t.Fatalf("queryDomain(%q) = %q but not ok", s, q)
			}
			return
		}
		if len(q) > maxName || strings.Count(q, ".") < 1 || q != strings.ToLower(q) || strings.HasSuffix(q, ".") {
			t.Fatalf("queryDomain(%q) = %q", s, q)
		}
		if _, err := netip.ParseAddr(q); err == nil {
			t.Fatalf("queryDomain(%q) = %q, an address", s, q)
		}
		if !validZone(q) {
			t.Fatalf("queryDomain(%q) = %q, not a valid name", s, q)
		}
		if again, ok := queryDomain(q); !ok || again != q {
			t.Fatalf("queryDomain(%q) = %q, then %q, %v", s, q, again, ok)
		}
	})
}
