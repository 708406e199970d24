package greylist

import (
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Client describes who is sending, for the key.
type Client struct {
	// IP is the client's address.
	IP netip.Addr
	// SPFPass is true when SPF passed for the MAIL FROM domain.
	SPFPass bool
	// MailDomain is the MAIL FROM domain, lower-case A-label ("" for the
	// null sender).
	MailDomain string
	// PTR is the client's forward-confirmed PTR name, "" when there is no
	// confirmed one.
	PTR string
}

// Client key prefixes.
const (
	orgKey = "org:"
	ptrKey = "ptr:"
	netKey = "net:"
)

// ClientKey is the client part of a triplet, the most stable identity the
// evidence supports (the package comment says why):
//
//   - "org:example.com" when SPF passed and MailDomain is a domain: the
//     organisational domain of MailDomain;
//   - else "ptr:example.net" when PTR is a domain that does not embed the
//     client's address: its organisational domain;
//   - else "net:192.0.2.0/24" or "net:2001:db8:1:2::/64": the client's
//     network of the configured size, IPv4-mapped addresses as IPv4.
//
// It is "" when none applies (no valid IP and no authenticated name).
func ClientKey(c Client, o Options) string {
	o = o.withDefaults()
	if c.SPFPass {
		if d, ok := normDomain(c.MailDomain); ok {
			return orgKey + orgDomain(d)
		}
	}
	if d, ok := normDomain(c.PTR); ok && !embedsAddr(d, c.IP) {
		return ptrKey + orgDomain(d)
	}
	if p, ok := clientNet(c.IP, o); ok {
		return netKey + p.String()
	}
	return ""
}

// clientNet is ip's network of the configured size. Out-of-range sizes
// are clamped so that ClientKey, which takes Options unvalidated, cannot
// fail on them.
func clientNet(ip netip.Addr, o Options) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap().WithZone("")
	bits := min(max(o.PrefixV4, 0), 32)
	if ip.Is6() {
		bits = min(max(o.PrefixV6, 0), 128)
	}
	return netip.PrefixFrom(ip, bits).Masked(), true
}

// hostNet is ip as a single-address network (/32 or /128), the form an
// operator's allow entry for one address takes.
func hostNet(ip netip.Addr) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap().WithZone("")
	return netip.PrefixFrom(ip, ip.BitLen()), true
}

// normDomain lower-cases d and drops a trailing dot. ok is false for what
// is not a host name in A-label form, so a garbage MAIL FROM domain or PTR
// never becomes a key (and never carries '|' into a triplet key).
func normDomain(d string) (string, bool) {
	d = asciiLower(strings.TrimSuffix(d, "."))
	if d == "" || len(d) > 253 {
		return "", false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' && c != '_' {
				return "", false
			}
		}
	}
	return d, true
}

// orgDomain is the organisational domain of a normalised name: the public
// suffix plus one label (RFC 7489 §3.2's definition, private suffixes
// included, so each blogspot.com site is its own organisation). A public
// suffix itself (co.uk) or a single label is its own organisation.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// embedsAddr reports whether the host part of a PTR name (the labels left
// of its organisational domain) spells the client's address, as access
// networks' generic names do: "1-2-3-4.dyn.isp.example",
// "host4.3.2.1.isp.example", "p01020304.dip.isp.example" (hex), or the
// last two groups of an IPv6 address. Those name a customer line, not an
// MTA, so they must not key an organisation.
func embedsAddr(name string, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	host := strings.TrimSuffix(name, orgDomain(name))
	if host == "" {
		return false
	}
	ip = ip.Unmap()
	b := ip.AsSlice()
	if ip.Is4() {
		if strings.Contains(host, hexBytes(b)) {
			return true
		}
		runs := decimalRuns(host)
		return runs[int(b[2])] && runs[int(b[3])]
	}
	if strings.Contains(host, hexBytes(b[12:])) {
		return true
	}
	g7 := strconv.FormatUint(uint64(b[12])<<8|uint64(b[13]), 16)
	g8 := strconv.FormatUint(uint64(b[14])<<8|uint64(b[15]), 16)
	tokens := hexTokens(host)
	return tokens[g7] && tokens[g8]
}

// hexBytes is b in lower-case hex, two digits a byte.
func hexBytes(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// decimalRuns is the set of values of the runs of one to three digits in
// s ("dsl-010-002" has 10 and 2): zero-padded octets are common.
func decimalRuns(s string) map[int]bool {
	out := map[int]bool{}
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == i {
			i++
			continue
		}
		if j-i <= 3 {
			n, _ := strconv.Atoi(s[i:j])
			out[n] = true
		}
		i = j
	}
	return out
}

// hexTokens is the set of hex runs in s with leading zeros dropped, as
// IPv6 groups are written.
func hexTokens(s string) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isHex(s[j]) {
			j++
		}
		if j == i {
			i++
			continue
		}
		t := strings.TrimLeft(s[i:j], "0")
		if t == "" {
			t = "0"
		}
		out[t] = true
		i = j
	}
	return out
}

// Triplet is what greylisting remembers: who sent, from which envelope
// sender, to which recipient.
type Triplet struct {
	// Client is the ClientKey.
	Client string
	// Sender is the normalised envelope sender (NormalizeSender).
	Sender string
	// Rcpt is the recipient as given, lower-cased.
	Rcpt string
}

// Key encodes the triplet as "client|sender|rcpt" with '%', '|', spaces,
// controls and non-ASCII bytes percent-encoded (as %7C, %25, ...): '|'
// may occur in a local part, and encoding it keeps the three fields
// unambiguous while the key stays readable in `greylist list` and in the
// store.
func (t Triplet) Key() string {
	return escapeField(t.Client) + "|" + escapeField(t.Sender) + "|" + escapeField(t.Rcpt)
}

// escapeField percent-encodes the bytes Key must not leave bare.
func escapeField(s string) string {
	const digits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c == '|' || c <= ' ' || c >= 0x7f {
			b.WriteByte('%')
			b.WriteByte(digits[c>>4])
			b.WriteByte(digits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' }
func isAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' }

// asciiLower lower-cases ASCII letters only. Unicode case mapping can
// change a string's length and is not always idempotent; a retry carries
// the same bytes anyway, so ASCII is all that needs folding.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
