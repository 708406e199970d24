package resolver

import "strings"

// joinTXT joins the character-strings of one TXT record (RFC 7208 §3.3,
// RFC 6376 §3.6.2.2), undoing the presentation escapes miekg/dns adds when
// it unpacks them: `\"`, `\\` and `\DDD` for bytes outside 0x20–0x7e. DKIM
// keys never contain those, but a UTF-8 or quoted TXT (a DNSBL reason, an
// SPF exp) must reach callers as the bytes on the wire, as from net.Resolver.
func joinTXT(parts []string) string {
	if len(parts) == 1 && strings.IndexByte(parts[0], '\\') < 0 {
		return parts[0] // the common case: no copy
	}
	var b strings.Builder
	for _, p := range parts {
		unescapeTo(&b, p)
	}
	return b.String()
}

// unescapeTo writes s with RFC 1035 §5.1 escapes decoded: \DDD is the byte
// with that decimal value, \X is X. A \DDD above 255 cannot come from
// miekg/dns and reads as a quoted digit; a dangling backslash is kept.
func unescapeTo(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
