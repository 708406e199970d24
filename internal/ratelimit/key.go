package ratelimit

import "net/netip"

// Key returns the client key of an address: IPv4 as is (IPv4-mapped
// unmapped), IPv6 as its /64 prefix string. Exported for tests and the
// shared store. The zone is ignored; the invalid Addr has key "".
//
//	192.0.2.1, ::ffff:192.0.2.1 → "192.0.2.1"
//	2001:db8:1:2:a:b:c:d        → "2001:db8:1:2::/64"
func Key(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return string(appendKey(nil, ip))
}

// appendKey appends Key(ip) to b; ip must be valid.
func appendKey(b []byte, ip netip.Addr) []byte {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.AppendTo(b)
	}
	p, _ := ip.Prefix(64) // cannot fail for a valid IPv6 address; drops the zone
	return p.AppendTo(b)
}
