package iplist

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/mxgate/mxgate/checks"
)

func TestLists(t *testing.T) {
	c := New([]List{
		{Name: "partners", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}},
		{Name: "deny", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}},
	})
	for ip, want := range map[string][]string{
		"192.0.2.1": {"partners"}, "192.0.2.200": {"partners", "deny"}, "::ffff:192.0.2.200": {"partners", "deny"},
		"2001:db8::1": {"partners"}, "198.51.100.1": nil,
	} {
		r := c.Run(context.Background(), checks.Input{IP: netip.MustParseAddr(ip)})
		got, _ := r.Facts["client.iplists"].([]string)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", ip, got, want)
		}
		if (r.Result == "listed") != (len(want) > 0) {
			t.Errorf("%s: result %q", ip, r.Result)
		}
	}
}
