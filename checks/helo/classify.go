package helo

import (
	"net/netip"
	"strings"
)

// classify returns the problems of the argument h from client ip, each
// with a note for the detail.
func (c *Check) classify(h string, client netip.Addr) map[string]string {
	found := map[string]string{}
	addr, literal := parseLiteral(h)
	if !literal {
		// "192.0.2.1." is the same claim as "192.0.2.1".
		if a, err := netip.ParseAddr(strings.TrimSuffix(h, ".")); err == nil {
			addr = normAddr(a)
			found["bare_ip"] = h + " without brackets"
		}
	}
	if literal && client.IsValid() && addr != client {
		found["literal_mismatch"] = h + " is not the client " + client.String()
	}
	// The gateway talking to itself (a local health check) is not a
	// stranger using our identity.
	if !c.local[client] {
		switch {
		case addr.IsValid() && c.local[addr]:
			found["ours"] = "our address " + addr.String()
		case c.hostname != "" && normName(h) == c.hostname:
			found["ours"] = "our hostname " + c.hostname
		}
	}
	if !addr.IsValid() && !strings.HasPrefix(h, "[") && !strings.Contains(strings.TrimSuffix(h, "."), ".") {
		found["dotless"] = h + " is not fully qualified"
	}
	return found
}

// parseLiteral parses an address literal, "[192.0.2.1]" or
// "[IPv6:2001:db8::1]", and reports whether h is one. It is lenient on
// purpose: the tag is matched in any case (RFC 5321's ABNF strings are
// case-insensitive), and an IPv6 address without the tag, or an IPv4 one
// with it, still counts as the claim it plainly is; whether the literal is
// well formed is helo.valid's business.
func parseLiteral(h string) (netip.Addr, bool) {
	inner, ok := strings.CutPrefix(h, "[")
	if !ok {
		return netip.Addr{}, false
	}
	if inner, ok = strings.CutSuffix(inner, "]"); !ok {
		return netip.Addr{}, false
	}
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		inner = inner[5:]
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return normAddr(a), true
}
