package greylist

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientKey(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		c    Client
		o    Options
		want string
	}{
		{"SPF pass: organisation of the MAIL FROM domain", Client{IP: ip("203.0.113.5"), SPFPass: true, MailDomain: "bulk.example.com"}, Options{}, "org:example.com"},
		{"SPF pass wins over a PTR", Client{IP: ip("203.0.113.5"), SPFPass: true, MailDomain: "example.com", PTR: "mta.example.net"}, Options{}, "org:example.com"},
		{"co.uk organisation, case and dot", Client{IP: ip("203.0.113.5"), SPFPass: true, MailDomain: "Mail.Example.CO.UK."}, Options{}, "org:example.co.uk"},
		{"a public suffix stays as is", Client{IP: ip("203.0.113.5"), SPFPass: true, MailDomain: "co.uk"}, Options{}, "org:co.uk"},
		{"private suffix: each site is an organisation", Client{IP: ip("203.0.113.5"), SPFPass: true, MailDomain: "a.b.blogspot.com"}, Options{}, "org:b.blogspot.com"},
		{"SPF pass without a domain (null sender)", Client{IP: ip("203.0.113.5"), SPFPass: true}, Options{}, "net:203.0.113.0/24"},
		{"SPF pass with a garbage domain", Client{IP: ip("203.0.113.5"), SPFPass: true, MailDomain: "ex|ample.com"}, Options{}, "net:203.0.113.0/24"},
		{"no SPF pass: the domain is only a claim", Client{IP: ip("203.0.113.5"), MailDomain: "example.com"}, Options{}, "net:203.0.113.0/24"},
		{"confirmed PTR", Client{IP: ip("203.0.113.5"), PTR: "mta1.out.example.net."}, Options{}, "ptr:example.net"},
		{"confirmed PTR under co.uk", Client{IP: ip("203.0.113.5"), PTR: "smtp.Example.co.uk"}, Options{}, "ptr:example.co.uk"},
		{"generic PTR, decimal", Client{IP: ip("198.51.100.7"), PTR: "198-51-100-7.dyn.isp.example"}, Options{}, "net:198.51.100.0/24"},
		{"generic PTR, reversed and padded", Client{IP: ip("198.51.100.7"), PTR: "host007.100.51.198.cable.isp.example"}, Options{}, "net:198.51.100.0/24"},
		{"generic PTR, hex", Client{IP: ip("91.12.29.46"), PTR: "p5b0c1d2e.dip0.t-ipconnect.de"}, Options{}, "net:91.12.29.0/24"},
		{"generic PTR, IPv6", Client{IP: ip("2001:db8:1:2::5:a6"), PTR: "2001-db8-1-2-0-0-5-a6.v6.isp.example"}, Options{}, "net:2001:db8:1:2::/64"},
		{"PTR with small numbers of its own", Client{IP: ip("198.51.100.7"), PTR: "mx2.example.net"}, Options{}, "ptr:example.net"},
		{"garbage PTR", Client{IP: ip("198.51.100.7"), PTR: "not a name"}, Options{}, "net:198.51.100.0/24"},
		{"IPv4 /24", Client{IP: ip("192.0.2.77")}, Options{}, "net:192.0.2.0/24"},
		{"IPv4-mapped IPv6 is IPv4", Client{IP: ip("::ffff:192.0.2.77")}, Options{}, "net:192.0.2.0/24"},
		{"IPv6 /64", Client{IP: ip("2001:db8:1:2:3:4:5:6")}, Options{}, "net:2001:db8:1:2::/64"},
		{"IPv6 zone dropped", Client{IP: ip("fe80::1%eth0")}, Options{}, "net:fe80::/64"},
		{"configured prefixes", Client{IP: ip("192.0.2.77")}, Options{PrefixV4: 16, PrefixV6: 48}, "net:192.0.0.0/16"},
		{"configured IPv6 prefix", Client{IP: ip("2001:db8:1:2::1")}, Options{PrefixV4: 16, PrefixV6: 48}, "net:2001:db8:1::/48"},
		{"out-of-range prefix is clamped", Client{IP: ip("192.0.2.77")}, Options{PrefixV4: 40}, "net:192.0.2.77/32"},
		{"no address, no authentication", Client{MailDomain: "example.com"}, Options{}, ""},
		{"no address but SPF", Client{SPFPass: true, MailDomain: "example.com"}, Options{}, "org:example.com"},
	}
	for _, tt := range tests {
		if got := ClientKey(tt.c, tt.o); got != tt.want {
			t.Errorf("%s: ClientKey(%+v) = %q, want %q", tt.name, tt.c, got, tt.want)
		}
	}
}

func TestTripletKey(t *testing.T) {
	tests := []struct {
		t    Triplet
		want string
	}{
		{Triplet{"org:example.com", "news@example.com", "a@rcpt.example"}, "org:example.com|news@example.com|a@rcpt.example"},
		{Triplet{"net:192.0.2.0/24", "", "a@rcpt.example"}, "net:192.0.2.0/24||a@rcpt.example"},
		{Triplet{"net:2001:db8::/64", "a|b@x", "c"}, "net:2001:db8::/64|a%7Cb@x|c"},
		{Triplet{"c", "a", "b|"}, "c|a|b%7C"},
		{Triplet{"c", "100%@x", "\"a b\"@x"}, "c|100%25@x|\"a%20b\"@x"},
		{Triplet{"c", "jörg@x", "a\r\n@x"}, "c|j%C3%B6rg@x|a%0D%0A@x"},
	}
	for _, tt := range tests {
		if got := tt.t.Key(); got != tt.want {
			t.Errorf("%+v.Key() = %q, want %q", tt.t, got, tt.want)
		}
		if n := strings.Count(tt.t.Key(), "|"); n != 2 {
			t.Errorf("%+v.Key() has %d separators", tt.t, n)
		}
	}
	// Fields that differ only in where '|' falls must not collide.
	if a, b := (Triplet{"c", "a|b", "d"}).Key(), (Triplet{"c", "a", "b|d"}).Key(); a == b {
		t.Errorf("keys collide: %q", a)
	}
}
