package greylist

import "strings"

// maxSender bounds the input NormalizeSender rewrites. RFC 5321
// §4.5.3.1.3 limits a path to 256 octets; longer input is only
// lower-cased, which keeps the rewriting loop's cost bounded.
const maxSender = 1024

// NormalizeSender maps an envelope sender to the form greylisting
// remembers, so that a retry of a message matches its first attempt even
// when the sender's MTA tags each attempt or each message differently.
// The rules, applied until none changes the address:
//
//   - case: ASCII is lower-cased.
//     "John@Example.COM" → "john@example.com"
//   - the null sender stays "" ("<>" is also "").
//   - BATV (draft-levine-smtp-batv) and its variants drop the tag:
//     "prvs=1234abcdef=user@example.com" → "user@example.com" (draft);
//     "prvs=user=1234abcdef@example.com" → "user@example.com" (older
//     drafts, tag last);
//     "msprvs1=19260wv5ht3de=bounces-1@example.com" → "bounces-1@…"
//     (SparkPost);
//     "btv1==760cdc7c545==user@example.com" → "user@example.com"
//     (Barracuda).
//   - SRS (the Sender Rewriting Scheme of forwarders) restores the
//     original address:
//     "srs0=hhh=tt=example.com=user@forwarder.example" →
//     "user@example.com";
//     "srs1=hhh=fwd1.example==hhh=tt=example.com=user@fwd2.example" →
//     "user@example.com" (the separator after SRS0/SRS1 may also be '+'
//     or '-').
//   - sub-address tags are dropped:
//     "user+news-42@example.com" → "user@example.com".
//   - VERP and other per-message ids: in the local part, a run of hex
//     tokens joined by single '-', '.' or '_', holding at least six hex
//     digits of which at least one is a decimal digit, becomes "#":
//     "bounces-123-456@example.com" → "bounces-#@example.com";
//     "bounce-1a2b3c4d@example.com" → "bounce-#@example.com";
//     "0100018f2a-1c2d-3e4f-5a6b-7c8d9e0f1a2b-000000@amazonses.com" →
//     "#@amazonses.com". The decimal digit keeps words made of the
//     letters a–f ("facade", "decade") intact.
//
// Anything else, including what is not an address, is only lower-cased;
// nothing is trimmed, since the session passes the path as received.
// Quoted local parts are not rewritten. NormalizeSender is idempotent.
func NormalizeSender(s string) string {
	s = asciiLower(s)
	if s == "<>" {
		return ""
	}
	if len(s) > maxSender {
		return s
	}
	// Every rewrite shortens s, so the loop ends; running to a fixed
	// point is what makes the function idempotent.
	for {
		t := rewriteOnce(s)
		if t == s {
			return s
		}
		s = t
	}
}

// rewriteOnce applies the first rule that changes s. The unwrapping rules
// come first because their syntax uses '+', '=' and hex tags that the
// later rules would mangle; nested wrappings (SRS of a BATV address)
// unwrap one per round.
func rewriteOnce(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || s[0] == '"' {
		return s
	}
	local, domain := s[:at], s[at:]
	if addr, ok := unSRS(local); ok {
		return addr
	}
	if user, ok := unBATV(local); ok {
		return user + domain
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		return local[:i] + domain
	}
	return maskIDs(local) + domain
}

// unSRS returns the original address of an SRS0 or SRS1 local part.
func unSRS(local string) (string, bool) {
	if len(local) < 5 || !strings.HasPrefix(local, "srs") || !isSRSSep(local[4]) {
		return "", false
	}
	rest := local[5:]
	switch local[3] {
	case '0':
		return srs0Addr(rest)
	case '1':
		// HHH=forwarder=<sep>HHH=TT=domain=user: the SRS0 part follows.
		hash, rest, ok := strings.Cut(rest, "=")
		if !ok || hash == "" {
			return "", false
		}
		fwd, rest, ok := strings.Cut(rest, "=")
		if !ok || fwd == "" || rest == "" || !isSRSSep(rest[0]) {
			return "", false
		}
		return srs0Addr(rest[1:])
	}
	return "", false
}

func isSRSSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// srs0Addr decodes "HHH=TT=domain=user" to "user@domain". The user part
// may itself contain '='.
func srs0Addr(s string) (string, bool) {
	f := strings.SplitN(s, "=", 4)
	if len(f) != 4 || f[0] == "" || len(f[1]) != 2 || f[2] == "" || f[3] == "" {
		return "", false
	}
	return f[3] + "@" + f[2], true
}

// unBATV returns the local part inside a BATV-tagged one.
func unBATV(local string) (string, bool) {
	if rest, ok := strings.CutPrefix(local, "btv1=="); ok {
		tag, user, ok := strings.Cut(rest, "==")
		return user, ok && tag != "" && user != ""
	}
	if rest, ok := strings.CutPrefix(local, "msprvs1="); ok {
		tag, user, ok := strings.Cut(rest, "=")
		return user, ok && tag != "" && user != ""
	}
	rest, ok := strings.CutPrefix(local, "prvs=")
	if !ok {
		return "", false
	}
	first, after, ok := strings.Cut(rest, "=")
	if !ok || first == "" || after == "" {
		return "", false
	}
	// The draft puts the tag first; older ones put it last. Only a
	// well-formed tag in the last place, with none first, says which.
	if i := strings.LastIndexByte(rest, '='); !batvTag(first) && batvTag(rest[i+1:]) {
		return rest[:i], true
	}
	return after, true
}

// batvTag reports whether t has the draft's tag shape: a key digit, three
// digits of day, six hex digits of hash.
func batvTag(t string) bool {
	if len(t) != 10 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if i < 4 && !isDigit(t[i]) || !isHex(t[i]) {
			return false
		}
	}
	return true
}

// maskIDs replaces each run of hex tokens (see NormalizeSender) by "#".
func maskIDs(local string) string {
	var b strings.Builder
	for i := 0; i < len(local); {
		if i == 0 || !isAlnum(local[i-1]) {
			if end, ok := idRun(local, i); ok {
				b.WriteByte('#')
				i = end
				continue
			}
		}
		b.WriteByte(local[i])
		i++
	}
	return b.String()
}

// idRun reports whether a run of hex tokens starting at i (a token
// boundary) qualifies as an id, and where it ends. A token is a maximal
// run of letters and digits; only tokens made entirely of hex digits
// join the run, through a single '-', '.' or '_'.
func idRun(s string, i int) (end int, ok bool) {
	hexDigits, decimal := 0, false
	for j := i; ; {
		k, dec := j, false
		for k < len(s) && isHex(s[k]) {
			dec = dec || isDigit(s[k])
			k++
		}
		if k == j || k < len(s) && isAlnum(s[k]) {
			break // not a hex token: the run ends before it
		}
		hexDigits += k - j
		decimal = decimal || dec
		end = k
		if k+1 < len(s) && (s[k] == '-' || s[k] == '.' || s[k] == '_') && isHex(s[k+1]) {
			j = k + 1
			continue
		}
		break
	}
	return end, hexDigits >= 6 && decimal
}
