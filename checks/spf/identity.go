package spf

import (
	"net/netip"
	"strings"
)

// maxDetailName bounds a client-supplied name in a detail: a HELO of a
// kilobyte must not make every verdict record a kilobyte longer.
const maxDetailName = 255

// identity is one <sender> to give check_host() (RFC 7208 §4.1).
type identity struct {
	// sender is the address given to the library: its macros (%{s},
	// %{l}, %{o}) expand from it and its domain is the one checked.
	sender string
	// domain is the domain checked, lower-case without a trailing dot;
	// "" when there is none to check.
	domain string
	// display names the identity in the detail.
	display string
	// skip says why the identity is not checked ("" when it is).
	skip string
}

// heloIdentity is the HELO identity (RFC 7208 §2.3), "postmaster@" + the
// HELO name, which is also the MAIL FROM identity of the null sender
// (§2.4).
func heloIdentity(helo string) identity {
	id := identity{display: clip(helo)}
	if helo != "" {
		id.sender = "postmaster@" + helo
	}
	if !isDomainName(helo) {
		id.skip = "HELO is not a domain"
		return id
	}
	id.domain = canonical(helo)
	return id
}

// mailIdentity is the MAIL FROM identity of a sender that is not null.
func mailIdentity(from string) identity {
	// The domain follows the first '@' because that is where the library
	// splits, and the fact must name the domain actually checked. The
	// gateway never passes a local part with an '@' in it (a route hack);
	// were one to arrive, the "domain" would fail isDomainName below.
	local, domain, found := strings.Cut(from, "@")
	id := identity{sender: from, display: clip(domain)}
	if !found || !isDomainName(domain) {
		id.skip = "sender domain is not a domain name"
		return id
	}
	if local == "" {
		// RFC 7208 §4.3: a sender without a local-part is postmaster.
		id.sender = "postmaster@" + domain
	}
	id.domain = canonical(domain)
	id.display = id.domain
	return id
}

// isDomainName reports whether s is a name check_host() may be asked about:
// RFC 7208 §4.3 makes a malformed name (a label longer than 63 octets, an
// empty label) or one that is not multi-label "none" without a lookup. It
// also refuses address literals and bare addresses, and anything outside
// letters, digits, hyphens and underscores, which no zone a sender could
// publish a record in would contain.
func isDomainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			if !isNameByte(l[i]) {
				return false
			}
		}
	}
	return true
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// canonical is how the spf.domain fact spells a name: lower case, no
// trailing dot (the domain kind compares that way anyway).
func canonical(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// clip bounds a name from the client or from DNS for a detail, on a rune
// boundary so the detail stays valid UTF-8 when the input was.
func clip(s string) string {
	if len(s) <= maxDetailName {
		return s
	}
	cut := maxDetailName
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}
