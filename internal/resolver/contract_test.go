package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

// These tests run the same questions against the real client (on the
// shared zones, served on loopback) and against resolvertest.Fake (set up
// with the same data), and demand the same answers and the same errors:
// the unit tests of every check trust the Fake to behave like production.

// errClass names how blitiri.com.ar/go/spf, go-msgauth's dkim and dmarc
// classify an error: they type-assert *net.DNSError and read its flags.
type errClass string

const (
	ok        errClass = ""
	notFound  errClass = "not found" // SPF: void lookup / none
	temporary errClass = "temporary" // SPF: temperror
	timeout   errClass = "timeout"   // SPF: temperror
	invalid   errClass = "invalid"   // neither: a caller's mistake
	canceled  errClass = "canceled"  // temporary, and Is context.Canceled
)

// classify applies the libraries' test: a type assertion, no unwrapping.
func classify(t *testing.T, err error) errClass {
	t.Helper()
	if err == nil {
		return ok
	}
	de, isDNS := err.(*net.DNSError)
	if !isDNS {
		t.Fatalf("%T %v: not a bare *net.DNSError; SPF would call it permerror", err, err)
	}
	var viaAs *net.DNSError
	if !errors.As(err, &viaAs) || viaAs != de {
		t.Fatalf("errors.As disagrees with the type assertion")
	}
	switch {
	case de.IsNotFound && !de.IsTemporary && !de.IsTimeout && de.Err == "no such host":
		return notFound
	case de.IsTimeout && de.IsTemporary && !de.IsNotFound && de.Temporary():
		return timeout
	case de.IsTemporary && !de.IsTimeout && !de.IsNotFound && errors.Is(err, context.Canceled):
		return canceled
	case de.IsTemporary && !de.IsTimeout && !de.IsNotFound && de.Temporary():
		return temporary
	case !de.IsTemporary && !de.IsTimeout && !de.IsNotFound:
		return invalid
	}
	t.Fatalf("inconsistent flags: %+v", de)
	return ""
}

// fake holds what the shared zones hold, for the names the cases use.
func fake() *resolvertest.Fake {
	return &resolvertest.Fake{
		A: map[string][]string{
			"mail.example.test":   {"127.0.0.5"},
			"Forged.Example.Test": {"127.0.0.99"},
			"ns.example.test.":    {"127.0.0.53"},
			"2.0.0.127.bl.test":   {"127.0.0.2"},
		},
		AAAA: map[string][]string{"mail.example.test": {"2001:db8::5"}},
		TXT: map[string][]string{
			"example.test":      {"v=spf1 ip4:127.0.0.0/8 -all"},
			"2.0.0.127.bl.test": {"Listed in bl.test: 127.0.0.2"},
		},
		MX: map[string][]*net.MX{"example.test": {
			{Host: "backup.example.test", Pref: 20}, {Host: "mail.example.test.", Pref: 10},
		}},
		PTR: map[string][]string{
			"127.0.0.5":              {"mail.example.test"},
			"6.0.0.127.in-addr.arpa": {"forged.example.test."},
			"2001:db8::5":            {"mail.example.test."},
		},
		ServFail: map[string]bool{"servfail.example.test": true},
		Timeout:  map[string]bool{"timeout.example.test": true},
	}
}

type lookupCase struct {
	name string
	do   func(context.Context, resolver.Resolver) (string, error)
	want string
	err  errClass
}

func render(v any, err error) (string, error) {
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case []*net.MX:
		var parts []string
		for _, mx := range v {
			parts = append(parts, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
		}
		return strings.Join(parts, ", "), nil
	case []net.IPAddr:
		var parts []string
		for _, a := range v {
			parts = append(parts, a.IP.String())
		}
		return strings.Join(parts, ", "), nil
	case []net.IP:
		var parts []string
		for _, ip := range v {
			parts = append(parts, fmt.Sprintf("%s/%d", ip, len(ip)))
		}
		return strings.Join(parts, ", "), nil
	case []string:
		return strings.Join(v, " | "), nil
	}
	return fmt.Sprint(v), nil
}

func txt(name string) func(context.Context, resolver.Resolver) (string, error) {
	return func(ctx context.Context, r resolver.Resolver) (string, error) { return render(r.LookupTXT(ctx, name)) }
}
func mx(name string) func(context.Context, resolver.Resolver) (string, error) {
	return func(ctx context.Context, r resolver.Resolver) (string, error) { return render(r.LookupMX(ctx, name)) }
}
func ipaddr(name string) func(context.Context, resolver.Resolver) (string, error) {
	return func(ctx context.Context, r resolver.Resolver) (string, error) {
		return render(r.LookupIPAddr(ctx, name))
	}
}
func ip(network, name string) func(context.Context, resolver.Resolver) (string, error) {
	return func(ctx context.Context, r resolver.Resolver) (string, error) {
		return render(r.LookupIP(ctx, network, name))
	}
}
func ptr(addr string) func(context.Context, resolver.Resolver) (string, error) {
	return func(ctx context.Context, r resolver.Resolver) (string, error) { return render(r.LookupAddr(ctx, addr)) }
}

// sharedCases hold for the client and the Fake alike.
var sharedCases = []lookupCase{
	{"TXT joins character-strings", txt("example.test"), "v=spf1 ip4:127.0.0.0/8 -all", ok},
	{"TXT without final dot, any case", txt("EXAMPLE.test."), "v=spf1 ip4:127.0.0.0/8 -all", ok},
	{"TXT of a DNSBL listing", txt("2.0.0.127.bl.test"), "Listed in bl.test: 127.0.0.2", ok},
	{"TXT NODATA", txt("mail.example.test"), "", notFound},
	{"TXT NXDOMAIN", txt("nxdomain.example.test"), "", notFound},
	{"MX sorted, absolute", mx("example.test"), "10 mail.example.test., 20 backup.example.test.", ok},
	{"MX NODATA", mx("mail.example.test"), "", notFound},
	{"IPAddr both families", ipaddr("mail.example.test"), "127.0.0.5, 2001:db8::5", ok},
	{"IPAddr A only", ipaddr("ns.example.test"), "127.0.0.53", ok},
	{"IPAddr NXDOMAIN", ipaddr("nxdomain.example.test"), "", notFound},
	{"IPAddr literal", ipaddr("192.0.2.1"), "192.0.2.1", ok},
	{"IP ip4", ip("ip4", "mail.example.test"), "127.0.0.5/4", ok},
	{"IP ip6", ip("ip6", "mail.example.test"), "2001:db8::5/16", ok},
	{"IP ip", ip("ip", "mail.example.test"), "127.0.0.5/4, 2001:db8::5/16", ok},
	{"IP ip6 NODATA", ip("ip6", "ns.example.test"), "", notFound},
	{"IP DNSBL listed", ip("ip4", "2.0.0.127.bl.test"), "127.0.0.2/4", ok},
	{"IP DNSBL not listed", ip("ip4", "1.0.0.127.bl.test"), "", notFound},
	{"IP unknown network", ip("tcp", "mail.example.test"), "", invalid},
	{"IP literal of the other family", ip("ip6", "127.0.0.1"), "", notFound},
	{"PTR v4", ptr("127.0.0.5"), "mail.example.test.", ok},
	{"PTR v4 not confirmed", ptr("127.0.0.6"), "forged.example.test.", ok},
	{"PTR v4 none", ptr("127.0.0.7"), "", notFound},
	{"PTR v6", ptr("2001:db8::5"), "mail.example.test.", ok},
	{"PTR v4-mapped is the v4 name", ptr("::ffff:127.0.0.5"), "mail.example.test.", ok},
	{"PTR bad address", ptr("not-an-ip"), "", invalid},
	{"SERVFAIL", txt("servfail.example.test"), "", temporary},
	{"SERVFAIL fails IPAddr", ipaddr("servfail.example.test"), "", temporary},
	{"timeout", txt("timeout.example.test"), "", timeout},
}

// wireCases need a real DNS answer (CNAMEs, wildcards, REFUSED).
var wireCases = []lookupCase{
	{"CNAME one hop", ip("ip4", "www.example.test"), "127.0.0.5/4", ok},
	{"CNAME two hops", ipaddr("alias.example.test"), "127.0.0.5, 2001:db8::5", ok},
	{"CNAME to NXDOMAIN", ip("ip4", "dangling.example.test"), "", notFound},
	{"CNAME target without the type", txt("www.example.test"), "", notFound},
	{"wildcard", ip("ip4", "anything.wild.example.test"), "127.0.0.9/4", ok},
	{"wildcard TXT", txt("x.y.wild.example.test"), "wildcard", ok},
	{"empty non-terminal", ip("ip4", "wild.example.test"), "", notFound},
	{"REFUSED outside the zones", txt("example.invalid"), "", temporary},
	{"large TXT over TCP", func(ctx context.Context, r resolver.Resolver) (string, error) {
		recs, err := r.LookupTXT(ctx, "big.example.test")
		return fmt.Sprint(len(recs)), err
	}, "12", ok},
}

func runCases(t *testing.T, r resolver.Resolver, cases []lookupCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			got, err := tc.do(ctx, r)
			if class := classify(t, err); class != tc.err {
				t.Fatalf("error %v: %q, want %q", err, class, tc.err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClientContract(t *testing.T) {
	zones, err := zoneserver.LoadZoneDir("../../testdata/zones")
	if err != nil {
		t.Fatal(err)
	}
	s, err := zoneserver.Start("127.0.0.1:0", zones...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetServFail("servfail.example.test", true)
	s.SetDrop("timeout.example.test", true)
	c, err := resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: 100 * time.Millisecond, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	runCases(t, c, sharedCases)
	runCases(t, c, wireCases)
	t.Run("canceled", func(t *testing.T) { checkCanceled(t, c) })
}

func TestFakeContract(t *testing.T) {
	f := fake()
	runCases(t, f, sharedCases)
	t.Run("canceled", func(t *testing.T) { checkCanceled(t, f) })
}

func checkCanceled(t *testing.T, r resolver.Resolver) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := r.LookupTXT(ctx, "uncached.example.test")
	if class := classify(t, err); class != canceled {
		t.Errorf("cancelled context: %v (%s), want %s", err, class, canceled)
	}
}
