package dkim

import (
	"bytes"
	"strings"
	"unicode"
)

// Signature is one DKIM-Signature field and its result.
type Signature struct {
	// Result is pass, fail, neutral, temperror or permerror (RFC 8601
	// §2.7.1); empty from Signatures, before verification.
	Result string
	// Domain is d=, the signing domain (SDID), lower-case.
	Domain string
	// Selector is s=.
	Selector string
	// Algorithm is a=, e.g. rsa-sha256 or ed25519-sha256.
	Algorithm string
	// Identifier is i= (the AUID), or its default "@" + d= (RFC 6376
	// §3.5) when the tag is absent; empty without d=.
	Identifier string
	// BodyLimited says l= is present: the signature covers only the first
	// l= octets of the body, so content may have been appended.
	BodyLimited bool
	// Reason says why, when Result is not pass: short and readable.
	Reason string
}

// fieldName is the header field of RFC 6376 §3.5.
const fieldName = "DKIM-Signature"

// Signatures parses the DKIM-Signature fields of a header section, in
// order, for the record and for matching with go-msgauth's verifications,
// which come in the same order. It reads the header exactly as go-msgauth
// does (net/textproto lines, folding on a leading space or tab, the name
// trimmed and matched in any case, up to the first empty line), so the two
// lists line up field for field; a signature whose tags are malformed is
// still listed, with what could be read. Tag values have their white space
// removed, as go-msgauth does (RFC 6376 §3.2 allows FWS anywhere in them).
func Signatures(header []byte) []Signature {
	var out []Signature
	for _, f := range fields(header) {
		name, value, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(name), fieldName) {
			out = append(out, parseSignature(value))
		}
	}
	return out
}

// fields splits a header section into unfolded-by-concatenation fields,
// mirroring go-msgauth's readHeader: a line that starts with a space or a
// tab continues the field before it; the first empty line, or the end of
// input, ends the section. Lines are cut as net/textproto's ReadLine cuts
// them (at LF, one CR before it dropped; a last line without LF kept as
// it is) and each field's lines end in CRLF. It runs for every message,
// signed or not, so it scans the bytes in place rather than through a
// bufio.Reader of its own; FuzzFields holds it to the textproto reading.
func fields(header []byte) []string {
	var out []string
	var field []byte
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line, header = header[:i], header[i+1:]
			line = bytes.TrimSuffix(line, []byte("\r"))
		} else {
			header = nil
		}
		if len(line) == 0 {
			break
		}
		if field != nil && line[0] != ' ' && line[0] != '\t' {
			out = append(out, string(field))
			field = field[:0]
		}
		field = append(append(field, line...), '\r', '\n')
	}
	if field != nil {
		out = append(out, string(field))
	}
	return out
}

// parseSignature reads the tags the record shows from a tag-list (RFC 6376
// §3.2). Tag names are case-sensitive and the first of a duplicated tag
// wins: go-msgauth refuses such a signature (permerror) anyway, and the
// record only needs to say which signature it was.
func parseSignature(list string) Signature {
	var s Signature
	seen := map[string]bool{}
	for spec := range strings.SplitSeq(list, ";") {
		name, value, ok := strings.Cut(spec, "=")
		name = strings.TrimSpace(name)
		if !ok || seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "d":
			s.Domain = strings.ToLower(stripSpace(value))
		case "s":
			s.Selector = stripSpace(value)
		case "a":
			s.Algorithm = stripSpace(value)
		case "i":
			s.Identifier = stripSpace(value)
		case "l":
			s.BodyLimited = true
		}
	}
	if !seen["i"] && seen["d"] {
		s.Identifier = "@" + s.Domain
	}
	return s
}

// stripSpace removes all white space, folding included, as go-msgauth
// does before using a value.
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}
