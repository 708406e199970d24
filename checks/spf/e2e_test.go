package spf

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

// TestEndToEnd runs the check through the real caching resolver against
// the shared example.test zone on the in-process DNS server. Its SPF
// record is two character-strings, "v=spf1 ip4:127.0.0.0/8" and " -all",
// which only read as one record when the resolver joins them (RFC 7208
// §3.3); SERVFAIL must reach the library as a temporary *net.DNSError.
func TestEndToEnd(t *testing.T) {
	zone, err := zoneserver.LoadZoneFile("../../testdata/zones/example.test.zone")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := zoneserver.Start("127.0.0.1:0", zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: time.Second, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := New(r, Options{})

	tests := []struct {
		name, ip, helo, from string
		mail, heloRes        string
		detail               string
	}{
		{"pass", "127.0.0.5", "mail.example.test", "alice@example.test", Pass, None,
			"mailfrom example.test: pass (matched ip4); helo mail.example.test: none (no SPF record (§4.5))"},
		{"fail", "192.0.2.1", "mail.example.test", "alice@example.test", Fail, None,
			"mailfrom example.test: fail (matched -all)"},
		{"null sender", "127.0.0.5", "example.test", "", Pass, Pass,
			"null sender, helo example.test: pass (matched ip4)"},
		{"IPv6 client", "2001:db8::5", "mail.example.test", "alice@example.test", Fail, None,
			"example.test: fail (matched -all)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.Run(t.Context(), checks.Input{IP: netip.MustParseAddr(tt.ip), Helo: tt.helo, MailFrom: tt.from})
			checkResult(t, res, tt.mail, tt.heloRes, "example.test")
			if !strings.Contains(res.Detail, tt.detail) {
				t.Errorf("Detail = %q, want it to contain %q", res.Detail, tt.detail)
			}
		})
	}

	t.Run("SERVFAIL", func(t *testing.T) {
		// A name not asked above, so no cached answer hides the fault.
		srv.SetServFail("nxdomain.example.test", true)
		res := c.Run(t.Context(), checks.Input{IP: netip.MustParseAddr("127.0.0.5"), Helo: "mail.example.test", MailFrom: "bob@nxdomain.example.test"})
		checkResult(t, res, Temperror, None, "nxdomain.example.test")
		if want := "temperror (DNS nxdomain.example.test: SERVFAIL)"; !strings.Contains(res.Detail, want) {
			t.Errorf("Detail = %q, want it to contain %q", res.Detail, want)
		}
	})
}
