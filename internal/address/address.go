// Package address validates envelope addresses as go-smtp hands them to a
// session, and decides whether a recipient domain is one we accept mail for.
// It is the gateway's no-open-relay boundary, so it rejects anything it
// cannot prove harmless rather than trying to make sense of it.
//
// go-smtp (v0.25.1, parse.go) has already done part of RFC 5321 §4.1.2
// parsing when we see an address: a source route (§4.1.1.3, Appendix C) is
// dropped, a Quoted-string local part arrives unquoted with its backslash
// escapes removed, and the domain is everything after the '@' up to a space,
// tab or '>', not validated at all. So "user%evil.test"@ours.test arrives as
// user%evil.test@ours.test, which is why the local part is checked for the
// characters that historical mailers treated as routing: '@' (the domain
// seen by a second parser differs from ours), '%' (the "percent hack") and
// '!' (UUCP bang paths), plus ':' and ',' left over from source routes
// (RFC 5321 §3.6.1 says relays should not honour these, but backends do).
//
// Accepted local parts that are not a Dot-string (RFC 5321 §4.1.2), such as
// "john smith", are kept as received and quoted again by Addr.String, so the
// backend sees the same mailbox the client named. Local parts are
// case-sensitive (§2.4) and kept as received; domains are not, and are
// normalised to lower-case A-labels (RFC 5890 §2.3.2.1) without the trailing
// root dot so that comparisons with the configured domains are exact string
// comparisons. Non-ASCII is only accepted after the client gave SMTPUTF8 on
// MAIL (RFC 6531 §3.3).
//
// Address literals (RFC 5321 §4.1.3) are allowed in senders but never in
// recipients: we are an MX for named domains, never the destination of an IP.
package address

import (
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mxgate/mxgate/policy"
)

// Limits from RFC 5321 §4.5.3.1.
const (
	maxLocal  = 64  // §4.5.3.1.1
	maxDomain = 253 // §4.5.3.1.2 allows 255; DNS names in text form top out at 253
	maxLabel  = 63  // RFC 1035 §2.3.4
	maxPath   = 256 // §4.5.3.1.3, including the angle brackets
)

// Addr is a validated address.
type Addr struct {
	// Local is the local part as received: unquoted, case preserved (local
	// parts are case-sensitive, RFC 5321 §2.4).
	Local string
	// Domain is lower-case, without a trailing dot, and in A-label
	// (punycode) form for IDNs. A sender's address literal is kept as
	// received, brackets included.
	Domain string
}

// String returns the address as it is to be relayed: "local@domain", with
// the local part written as a Quoted-string (RFC 5321 §4.1.2) when it is not
// a valid Dot-string. It returns "" for the null sender.
func (a Addr) String() string {
	if a.IsNull() {
		return ""
	}
	return quoteLocal(a.Local) + "@" + a.Domain
}

// IsNull reports whether a is the null reverse-path (MAIL FROM:<>).
func (a Addr) IsNull() bool { return a == Addr{} }

// ParseRecipient validates a RCPT TO address as go-smtp delivers it. utf8
// says whether the client gave the SMTPUTF8 parameter on MAIL (RFC 6531).
// Errors are *policy.Reply: ErrRouteHack for relay tricks in the local part,
// ErrRelayDenied for address literals, ErrBadRcptDom for a bad domain,
// ErrUTF8Needed for non-ASCII without SMTPUTF8 and ErrBadRcpt otherwise.
// It does not decide whether the domain is ours: see Domains.Contains.
func ParseRecipient(s string, utf8 bool) (Addr, error) {
	a, f := parse(s, utf8, false)
	switch f {
	case ok:
		return a, nil
	case badRoute:
		return Addr{}, policy.ErrRouteHack
	case badLiteral:
		return Addr{}, policy.ErrRelayDenied
	case badDomain:
		return Addr{}, policy.ErrBadRcptDom
	case needUTF8:
		return Addr{}, policy.ErrUTF8Needed
	default:
		return Addr{}, policy.ErrBadRcpt
	}
}

// ParseSender validates a MAIL FROM address as go-smtp delivers it; "" is
// the null sender and yields the zero Addr. The syntax rules are those of
// ParseRecipient, except that address literals are accepted. A sender that
// fails them is ErrBadSender whatever the reason (a route hack in a sender
// is not a relay attempt, just a bad sender), except that non-ASCII without
// SMTPUTF8 is ErrUTF8Needed so the client learns what to change.
func ParseSender(s string, utf8 bool) (Addr, error) {
	if s == "" {
		return Addr{}, nil
	}
	a, f := parse(s, utf8, true)
	switch f {
	case ok:
		return a, nil
	case needUTF8:
		return Addr{}, policy.ErrUTF8Needed
	default:
		return Addr{}, policy.ErrBadSender
	}
}

// failure classifies why an address was refused; the exported functions
// map it to the reply for their side of the envelope.
type failure int

const (
	ok         failure = iota
	badLocal           // empty, too long, control characters, no '@'
	badRoute           // '@', '%', '!', ':' or ',' in the local part
	badDomain          // not an LDH domain, or no IDNA conversion
	badLiteral         // an address literal where none is allowed, or malformed
	needUTF8           // non-ASCII without SMTPUTF8
	badLength          // path longer than RFC 5321 allows
)

func parse(s string, allowUTF8, sender bool) (Addr, failure) {
	// The last '@' separates the domain: go-smtp stops an unquoted local
	// part at the first '@', but a quoted one may contain more, and either
	// way a domain containing '@' fails the LDH check below.
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Addr{}, badLocal
	}
	local, domain := s[:at], s[at+1:]
	if f := checkLocal(local, allowUTF8); f != ok {
		return Addr{}, f
	}
	var f failure
	if isLiteral(domain) {
		if !sender || !validLiteral(domain) {
			return Addr{}, badLiteral
		}
	} else if domain, f = normaliseDomain(domain, allowUTF8); f != ok {
		return Addr{}, f
	}
	a := Addr{Local: local, Domain: domain}
	// Measured on what we relay (quoted, A-label), since that is what the
	// backend has to accept.
	if len(a.String())+len("<>") > maxPath {
		return Addr{}, badLength
	}
	return a, ok
}

func checkLocal(local string, allowUTF8 bool) failure {
	if strings.ContainsAny(local, "@%!:,") {
		return badRoute
	}
	if len(local) > maxLocal || !utf8.ValidString(local) {
		return badLocal
	}
	nonASCII := false
	for _, r := range local {
		if r < 0x20 || r == 0x7f {
			return badLocal
		}
		if r >= utf8.RuneSelf {
			if invisible(r) {
				return badLocal
			}
			nonASCII = true
		}
	}
	if nonASCII && !allowUTF8 {
		return needUTF8
	}
	return ok
}

// invisible reports characters that RFC 6531's UTF8-non-ascii admits but
// that no real mailbox needs: C1 controls, format characters (bidi
// overrides, zero-width joiners), line and paragraph separators and private
// use. They make two addresses that look the same differ, and some can
// rearrange or break log and header lines.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp)
}

// normaliseDomain turns a non-literal domain into lower-case, dotless,
// A-label form and checks it is an LDH domain (RFC 5321 §4.1.2 Domain,
// RFC 1035 §2.3.1).
func normaliseDomain(d string, allowUTF8 bool) (string, failure) {
	// One trailing dot is the root and names the same domain; more than
	// one is an empty label and fails below.
	d = strings.TrimSuffix(d, ".")
	if d == "" || !utf8.ValidString(d) {
		return "", badDomain
	}
	if hasNonASCII(d) {
		if !allowUTF8 {
			return "", needUTF8
		}
		var err error
		if d, err = toASCII(d); err != nil {
			return "", badDomain
		}
	}
	d = lowerASCII(d)
	if !validLDH(d) {
		return "", badDomain
	}
	return d, ok
}

func validLDH(d string) bool {
	if len(d) == 0 || len(d) > maxDomain {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > maxLabel || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isLiteral(d string) bool {
	return len(d) >= 2 && d[0] == '[' && d[len(d)-1] == ']'
}

// validLiteral accepts the two address literals RFC 5321 §4.1.3 defines,
// "[IPv4]" and "[IPv6:addr]". General-address-literals name no protocol we
// could route to.
func validLiteral(d string) bool {
	inner := d[1 : len(d)-1]
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		ip, err := netip.ParseAddr(inner[5:])
		// netip accepts a zone ("fe80::1%eth0"), which no literal may carry.
		return err == nil && ip.Is6() && ip.Zone() == ""
	}
	ip, err := netip.ParseAddr(inner)
	return err == nil && ip.Is4()
}

// quoteLocal writes local as a Dot-string when it is one and as a
// Quoted-string otherwise (RFC 5321 §4.1.2), escaping only '"' and '\':
// every other printable character is valid qtextSMTP, and checkLocal has
// refused the ones that are not printable.
func quoteLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isDotString reports whether s is Atom *("." Atom), where RFC 6531 §3.3
// extends atext with UTF8-non-ascii.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= utf8.RuneSelf:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// lowerASCII lower-cases ASCII letters only: strings.ToLower would also map
// non-ASCII (for example the Kelvin sign to 'k'), turning an invalid domain
// into a valid one behind the validator's back.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
