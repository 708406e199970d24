package greylist

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// maxExpandBits bounds the entries one Allow writes to 1<<maxExpandBits:
// a range wider than 256 client networks (a /16 of /24s) belongs in a
// policy rule (skip_greylist on client.ip), which costs no store entries.
const maxExpandBits = 8

// allowKeys parses what Allow takes into client keys.
func (g *Greylist) allowKeys(what string) ([]string, error) {
	w := asciiLower(strings.TrimSpace(what))
	for _, kind := range []string{orgKey, ptrKey} {
		if name, ok := strings.CutPrefix(w, kind); ok {
			d, err := parseDomain(name)
			if err != nil {
				return nil, err
			}
			return []string{kind + orgDomain(d)}, nil
		}
	}
	w, isNet := strings.CutPrefix(w, netKey)
	if a, err := netip.ParseAddr(w); err == nil {
		p, _ := hostNet(a)
		return g.netKeys(p)
	}
	if p, err := netip.ParsePrefix(w); err == nil {
		return g.netKeys(p)
	}
	if isNet {
		return nil, fmt.Errorf("greylist: %q is not an IP address or CIDR range", what)
	}
	d, err := parseDomain(w)
	if err != nil {
		return nil, fmt.Errorf("greylist: %q is not an IP address, a CIDR range or a domain", what)
	}
	return []string{orgKey + orgDomain(d)}, nil
}

// parseDomain takes a domain as an operator types it: maybe with a
// leading "@" or a trailing dot, maybe in U-labels. It must have two
// labels or more and a TLD that is not numeric (RFC 3696 §2), so a typo
// ("examplecom") or a mistyped address ("192.0.2") is refused rather than
// allowed as a name no sender has.
func parseDomain(s string) (string, error) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "@"), ".")
	if !isASCIIString(s) {
		// Only non-ASCII goes through IDNA: its STD3 rules would refuse
		// ASCII names that exist ("_spf" labels).
		a, err := idna.Lookup.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("greylist: bad domain %q: %w", s, err)
		}
		s = a
	}
	d, ok := normDomain(s)
	dot := strings.LastIndexByte(d, '.')
	if !ok || dot < 0 || strings.Trim(d[dot+1:], "0123456789") == "" {
		return "", fmt.Errorf("greylist: bad domain %q", s)
	}
	return d, nil
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// netKeys expands a range into the "net:" keys Check looks up: client
// networks of the configured size, or single addresses when the range is
// narrower than one.
func (g *Greylist) netKeys(p netip.Prefix) ([]string, error) {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	unit := g.o.PrefixV4
	if p.Addr().Is6() {
		unit = g.o.PrefixV6
	}
	if p.Bits() > unit {
		unit = p.Addr().BitLen()
	}
	n := unit - p.Bits()
	if n > maxExpandBits {
		return nil, fmt.Errorf("greylist: %s covers more than %d /%d ranges; allow wide ranges with a skip_greylist rule on client.ip", p, 1<<maxExpandBits, unit)
	}
	out := make([]string, 0, 1<<n)
	a := p.Addr()
	for i := range 1 << n {
		out = append(out, netKey+netip.PrefixFrom(a, unit).String())
		if i+1 < 1<<n {
			a = nextNet(a, unit)
		}
	}
	return out, nil
}

// nextNet is the start of the network of size bits after a's.
func nextNet(a netip.Addr, bits int) netip.Addr {
	b := a.AsSlice()
	inc := uint(1) << (7 - (bits-1)%8)
	for i := (bits - 1) / 8; i >= 0; i-- {
		s := uint(b[i]) + inc
		b[i] = byte(s)
		if s < 256 {
			break
		}
		inc = 1
	}
	next, _ := netip.AddrFromSlice(b)
	return next
}
