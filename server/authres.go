package server

import (
	"sort"
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
)

// authResults renders the Authentication-Results header field (RFC 8601)
// the gateway adds to every relayed message, with its hostname as the
// authserv-id and one result per method and identity the checks
// contributed (spf, dkim per signature, dmarc). It is rendered here rather
// than with authres.Format, which leaves a trailing space, prints ARC with
// an empty method and has no header.s for DKIM; every value goes through
// pvalue, so nothing a client sent (MAIL FROM, HELO, a From header) can
// carry a CR or LF into the header.
func authResults(hostname string, results []checks.Result) string {
	var parts []string
	for _, r := range results {
		for _, a := range r.Auth {
			if p := resinfo(a); p != "" {
				parts = append(parts, p)
			}
		}
	}
	if len(parts) == 0 {
		parts = []string{"none"} // RFC 8601 §2.2: no authentication was done
	}
	return "Authentication-Results: " + hostname + ";\r\n\t" + strings.Join(parts, ";\r\n\t") + "\r\n"
}

// resinfo renders one result as "method=value [reason] ptype.property=value...".
func resinfo(a authres.Result) string {
	var method string
	var value authres.ResultValue
	var reason string
	props := map[string]string{}
	switch r := a.(type) {
	case *authres.SPFResult:
		method, value, reason = "spf", r.Value, r.Reason
		props["smtp.mailfrom"], props["smtp.helo"] = r.From, r.Helo
	case *authres.DKIMResult:
		method, value, reason = "dkim", r.Value, r.Reason
		props["header.d"], props["header.i"] = r.Domain, r.Identifier
	case *authres.DMARCResult:
		method, value, reason = "dmarc", r.Value, r.Reason
		props["header.from"] = r.From
	case *authres.GenericResult:
		method, value = r.Method, r.Value
		for k, v := range r.Params {
			if k == "reason" {
				reason = v // a generic result carries its reason as a parameter
				continue
			}
			props[k] = v
		}
	default:
		return ""
	}
	if !isToken(method) || !isToken(string(value)) {
		return ""
	}
	var b strings.Builder
	b.WriteString(method + "=" + string(value))
	if reason != "" {
		b.WriteString(" reason=" + quote(reason))
	}
	keys := make([]string, 0, len(props))
	for k, v := range props {
		if v != "" && isProperty(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(" " + k + "=" + pvalue(props[k]))
	}
	return b.String()
}

// pvalue renders a property value (RFC 8601 §2.2): an addr-spec or a
// token as is, anything else quoted; control characters never pass.
func pvalue(v string) string {
	clean := strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return -1
		}
		return c
	}, v)
	if len(clean) > 256 {
		clean = clean[:256]
	}
	if clean != "" && strings.IndexFunc(clean, func(c rune) bool { return !tokenChar(c) && c != '@' }) < 0 {
		return clean
	}
	return quote(clean)
}

// quote makes a quoted-string, escaping '"' and '\'.
func quote(s string) string {
	s = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return -1
		}
		return c
	}, s)
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// tokenChar is RFC 2045's token set: printable ASCII minus tspecials.
func tokenChar(c rune) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, c)
}

func isToken(s string) bool {
	return s != "" && strings.IndexFunc(s, func(c rune) bool { return !tokenChar(c) }) < 0
}

// isProperty accepts "ptype.property" names (RFC 8601 §2.2).
func isProperty(k string) bool {
	t, p, ok := strings.Cut(k, ".")
	return ok && isToken(t) && isToken(p)
}

// authservID extracts the authserv-id of an Authentication-Results field
// value: unfolded, after leading whitespace and comments, up to the first
// ';' or whitespace (RFC 8601 §2.2). authres.Parse cannot be used: it fails
// on comments and on versions, which forgers are free to send.
func authservID(value string) string {
	v := strings.TrimSpace(strings.NewReplacer("\r\n", " ", "\n", " ", "\t", " ").Replace(value))
	for strings.HasPrefix(v, "(") {
		depth := 0
		i := 0
		for ; i < len(v); i++ {
			if v[i] == '(' {
				depth++
			} else if v[i] == ')' {
				if depth--; depth == 0 {
					break
				}
			}
		}
		if i >= len(v) {
			return ""
		}
		v = strings.TrimSpace(v[i+1:])
	}
	if i := strings.IndexFunc(v, func(c rune) bool { return c <= ' ' || c == ';' || c == '(' || c == 0x7f }); i >= 0 {
		v = v[:i]
	}
	return v
}
