package dmarc

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// headerInfo is what DMARC reads from the header section: every From
// field (to count them) and the fields that key pct sampling.
type headerInfo struct {
	froms     []string // unfolded values of every From field, in order
	messageID string   // the first Message-ID field, unfolded and trimmed
	date      string   // the first Date field, unfolded and trimmed
}

// scanHeader splits a header section into fields by hand rather than with
// net/textproto: one malformed line (no colon, a stray continuation) must
// not make the From field unreadable, because an unreadable From is a
// permerror that rules may reject on. Lines end in CRLF or a bare LF;
// unfolding removes the line break before WSP (RFC 5322 §2.2.3).
func scanHeader(header []byte) headerInfo {
	var h headerInfo
	var name string        // the field being read; "" when none
	var value bytes.Buffer // its value so far, unfolded
	flush := func() {
		if name == "" {
			return
		}
		v := strings.TrimSpace(value.String())
		switch strings.ToLower(name) {
		case "from":
			h.froms = append(h.froms, v)
		case "message-id":
			if h.messageID == "" {
				h.messageID = v
			}
		case "date":
			if h.date == "" {
				h.date = v
			}
		}
		name = ""
		value.Reset()
	}
	for line := range bytes.Lines(header) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break // the blank line that ends the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				value.Write(line)
			}
			continue
		}
		flush()
		n, v, ok := bytes.Cut(line, []byte(":"))
		// RFC 5322 §4.5.8 (obs-optional) lets WSP precede the colon.
		n = bytes.TrimRight(n, " \t")
		if ok && validFieldName(n) {
			name = string(n)
			value.Write(v)
		}
	}
	flush()
	return h
}

// validFieldName is RFC 5322 §3.6.8: printable US-ASCII but the colon.
func validFieldName(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// author is the RFC5322.From identity DMARC evaluates (RFC 7489 §3.1).
type author struct {
	address string // the addr-spec, as written
	domain  string // its domain, lower-case A-label, no trailing dot
}

// addrParser decodes RFC 2047 display names in any charset by passing the
// bytes through: the display name is never used, and net/mail's default
// decoder fails the whole address on a charset it does not know
// (windows-1252, say), which would make a legitimate From a permerror.
var addrParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// author returns the From identity, or a problem that makes DMARC
// inapplicable. RFC 7489 §6.6.1 notes that messages with no From, several
// From fields or several addresses are "typically rejected"; which of them
// to reject is the rules' call, from the permerror this leads to.
func (h headerInfo) author() (author, string) {
	switch len(h.froms) {
	case 0:
		return author{}, "no From header"
	case 1:
	default:
		return author{}, fmt.Sprintf("%d From headers", len(h.froms))
	}
	v := h.froms[0]
	if v == "" {
		return author{}, "empty From"
	}
	list, err := addrParser.ParseList(v)
	switch {
	case err != nil && !strings.Contains(v, "@"):
		return author{}, "From address has no domain"
	case err != nil:
		return author{}, "unparsable From"
	case len(list) == 0:
		return author{}, "From with no address" // an empty group
	case len(list) > 1:
		return author{}, fmt.Sprintf("From with %d addresses", len(list))
	}
	addr := list[0].Address
	at := strings.LastIndexByte(addr, '@')
	raw := addr[at+1:]
	switch {
	case at < 0 || raw == "":
		return author{}, "From address has no domain"
	case strings.HasPrefix(raw, "["):
		return author{}, "From domain is an address literal"
	}
	d, ok := normDomain(raw)
	if !ok {
		return author{}, fmt.Sprintf("From domain %+q is not a valid domain name", raw) // ASCII only: it may reach a header field
	}
	return author{address: addr, domain: d}, ""
}
