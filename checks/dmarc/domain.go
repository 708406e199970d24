package dmarc

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// normDomain returns d as the DNS sees it: A-labels, lower case, no
// trailing dot. Only names with non-ASCII go through IDNA: the Lookup
// profile also enforces STD3 rules, which would refuse ASCII names that
// exist in the wild (underscores, "r1--x" labels) and that DNS serves
// fine. UTS #46 mapping applies, so a U-label is judged as the name a
// resolver (and a reader) sees: "exa\u200bmple.test" is example.test.
// ok is false for what cannot be a domain name.
func normDomain(d string) (string, bool) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if !isASCII(d) {
		if !utf8.ValidString(d) {
			return "", false // idna would make U+FFFD of it, a name of nothing
		}
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", false
		}
		d = a
	}
	d = strings.ToLower(d)
	return d, validName(d)
}

// validName checks the limits of RFC 1035 §2.3.4 and that the name has
// no empty label and no byte that cannot appear in a host name's wire
// form as mail systems write it.
func validName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),:;<>@[\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// orgDomain is the Organizational Domain of RFC 7489 §3.2: the public
// suffix plus one label, from the Public Suffix List (private suffixes
// included, so foo.blogspot.com is its own organisation). d must already
// be normalised, since publicsuffix is case-sensitive and refuses a
// trailing dot. A name that is itself a public suffix (co.uk), or has
// none (a single label), is its own Organizational Domain.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned reports whether an authenticated domain aligns with the From
// domain (RFC 7489 §3.1.1, §3.1.2): equal in strict mode, of the same
// Organizational Domain in relaxed mode.
func aligned(authenticated, from string, strict bool) bool {
	a, ok := normDomain(authenticated)
	if !ok {
		return false
	}
	if strict {
		return a == from
	}
	return orgDomain(a) == orgDomain(from)
}
