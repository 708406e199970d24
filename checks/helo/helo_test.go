package helo

import (
	"context"
	"net/netip"
	"testing"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/policy"
)

func TestRun(t *testing.T) {
	c := New(Options{
		Hostname: "MX.Example.TEST.",
		LocalIPs: []netip.Addr{
			netip.MustParseAddr("192.0.2.25"),
			netip.MustParseAddr("2001:db8::25"),
			netip.MustParseAddr("::ffff:198.51.100.25"),
			netip.MustParseAddr("127.0.0.1"),
			netip.IPv6Unspecified(),
		},
	})
	const v4, v6 = "203.0.113.7", "2001:db8:1::7"
	// Each want lists the facts that hold; the others must be false.
	tests := []struct {
		helo, client string
		result       string
		want         []string
		detail       string
	}{
		{"mail.sender.test", v4, "pass", nil, ""},
		{"mail.sender.test.", v4, "pass", nil, ""},
		{"[203.0.113.7]", v4, "pass", nil, ""},
		{"[203.0.113.7]", "::ffff:203.0.113.7", "pass", nil, ""},
		{"[IPv6:2001:db8:1::7]", v6, "pass", nil, ""},
		{"[ipv6:2001:DB8:1:0::7]", v6, "pass", nil, ""},
		{"[2001:db8:1::7]", v6, "pass", nil, ""}, // untagged: malformed, still the client's own
		{"[203.0.113.7", v4, "pass", nil, ""},    // malformed: helo.valid's business
		{"[not.an.address]", v4, "pass", nil, ""},

		{"203.0.113.7", v4, "bare_ip", []string{"bare_ip"}, "bare_ip: 203.0.113.7 without brackets"},
		{"203.0.113.7.", v4, "bare_ip", []string{"bare_ip"}, "bare_ip: 203.0.113.7. without brackets"},
		{"2001:db8:1::7", v6, "bare_ip", []string{"bare_ip"}, "bare_ip: 2001:db8:1::7 without brackets"},
		{"::ffff:203.0.113.7", v4, "bare_ip", []string{"bare_ip"}, "bare_ip: ::ffff:203.0.113.7 without brackets"},

		{"[198.51.100.9]", v4, "literal_mismatch", []string{"literal_mismatch"}, "literal_mismatch: [198.51.100.9] is not the client 203.0.113.7"},
		{"[IPv6:2001:db8:1::8]", v6, "literal_mismatch", []string{"literal_mismatch"}, "literal_mismatch: [IPv6:2001:db8:1::8] is not the client 2001:db8:1::7"},
		{"[203.0.113.7]", v6, "literal_mismatch", []string{"literal_mismatch"}, "literal_mismatch: [203.0.113.7] is not the client 2001:db8:1::7"},
		{"[IPv6:::ffff:203.0.113.7]", v4, "pass", nil, ""}, // mapped: the same address

		{"mx.example.test", v4, "ours", []string{"ours"}, "ours: our hostname mx.example.test"},
		{"MX.EXAMPLE.TEST.", v4, "ours", []string{"ours"}, "ours: our hostname mx.example.test"},
		{"[192.0.2.25]", v4, "literal_mismatch", []string{"literal_mismatch", "ours"}, "literal_mismatch: [192.0.2.25] is not the client 203.0.113.7; ours: our address 192.0.2.25"},
		{"[IPv6:2001:DB8::25]", v6, "literal_mismatch", []string{"literal_mismatch", "ours"}, "literal_mismatch: [IPv6:2001:DB8::25] is not the client 2001:db8:1::7; ours: our address 2001:db8::25"},
		{"[198.51.100.25]", v4, "literal_mismatch", []string{"literal_mismatch", "ours"}, "literal_mismatch: [198.51.100.25] is not the client 203.0.113.7; ours: our address 198.51.100.25"},
		{"192.0.2.25", v4, "bare_ip", []string{"bare_ip", "ours"}, "bare_ip: 192.0.2.25 without brackets; ours: our address 192.0.2.25"},
		{"127.0.0.1", v4, "bare_ip", []string{"bare_ip", "ours"}, "bare_ip: 127.0.0.1 without brackets; ours: our address 127.0.0.1"},
		{"mx.example.test", "192.0.2.25", "pass", nil, ""}, // ourselves, not a stranger
		{"[127.0.0.1]", "127.0.0.1", "pass", nil, ""},      // a local health check
		{"[::]", v6, "literal_mismatch", []string{"literal_mismatch"}, "literal_mismatch: [::] is not the client 2001:db8:1::7"}, // a wildcard listener is not "ours"

		{"localhost", v4, "dotless", []string{"dotless"}, "dotless: localhost is not fully qualified"},
		{"localhost.", v4, "dotless", []string{"dotless"}, "dotless: localhost. is not fully qualified"},
		{"WORKSTATION", v4, "dotless", []string{"dotless"}, "dotless: WORKSTATION is not fully qualified"},
		{"mx", "", "dotless", []string{"dotless"}, "dotless: mx is not fully qualified"},
		{"[192.0.2.1]", "", "pass", nil, ""}, // no client address: no mismatch to tell
	}
	for _, tt := range tests {
		t.Run(tt.helo+"/"+tt.client, func(t *testing.T) {
			var ip netip.Addr
			if tt.client != "" {
				ip = netip.MustParseAddr(tt.client)
			}
			r := c.Run(context.Background(), checks.Input{IP: ip, Helo: tt.helo})
			if r.Result != tt.result || r.Detail != tt.detail {
				t.Errorf("Run = %q, %q; want %q, %q", r.Result, r.Detail, tt.result, tt.detail)
			}
			checkFacts(t, r.Facts, tt.want)
		})
	}
}

// checkFacts checks that exactly the facts in want hold, that every
// problem is set, and that the policy accepts the values.
func checkFacts(t *testing.T, facts map[string]any, want []string) {
	t.Helper()
	holds := map[string]bool{}
	for _, w := range want {
		holds["helo."+w] = true
	}
	v := policy.NewValues()
	for _, p := range problems {
		name := "helo." + p.name
		if got, ok := facts[name]; !ok || got != holds[name] {
			t.Errorf("%s = %v (set %v), want %v", name, got, ok, holds[name])
		}
		if err := v.Set(name, facts[name]); err != nil {
			t.Errorf("Set(%q): %v", name, err)
		}
	}
	if len(facts) != len(problems) {
		t.Errorf("facts = %v, want only the %d problems", facts, len(problems))
	}
}

func TestEmpty(t *testing.T) {
	for _, h := range []string{"", "  "} {
		r := New(Options{Hostname: "mx.example.test"}).Run(context.Background(),
			checks.Input{IP: netip.MustParseAddr("192.0.2.1"), Helo: h})
		if r.Result != "none" || r.Detail != "no HELO" || len(r.Facts) != 0 {
			t.Errorf("Run(%q) = %q, %q, %v; want none, no HELO, no facts", h, r.Result, r.Detail, r.Facts)
		}
	}
}

func TestNoHostname(t *testing.T) {
	r := New(Options{}).Run(context.Background(), checks.Input{IP: netip.MustParseAddr("192.0.2.1"), Helo: "."})
	if r.Result != "dotless" {
		t.Errorf("Run(\".\") = %q, want dotless", r.Result)
	}
}

func TestFactsRegistered(t *testing.T) {
	for _, p := range problems {
		d, ok := policy.LookupFact("helo." + p.name)
		if !ok || d.Kind != policy.KindBool || d.Stage != policy.StageHelo {
			t.Errorf("LookupFact(helo.%s) = %+v, %v; want bool, helo", p.name, d, ok)
		}
	}
}
