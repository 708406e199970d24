package server

import (
	"strings"
	"time"
)

// received builds the Received header the gateway prepends (RFC 5321
// §4.4), with the "with" protocol of RFC 3848/6531 (ESMTP, ESMTPS,
// UTF8SMTP, UTF8SMTPS) and the TLS version and cipher as a comment. The
// "for" clause is given only for a single recipient, so a message to
// several recipients does not disclose them to each other. Everything that
// came from the client (the HELO name) is reduced to printable ASCII
// without parentheses, so it cannot break out of the header.
func (s *session) received(tx *txn, now time.Time) []byte {
	st := s.st
	c := st.client()
	proto := "ESMTP"
	if tx.opts.UTF8 {
		proto = "UTF8SMTP"
	}
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(headerSafe(c.Helo, "unknown"))
	b.WriteString(" (")
	// The client's name only when forward-confirmed, as Postfix does:
	// an unconfirmed PTR is whatever the address owner chose to publish.
	switch {
	case c.FCrDNS != nil && *c.FCrDNS && c.PTR != "":
		b.WriteString(headerSafe(c.PTR, "unknown") + " ")
	case c.FCrDNS != nil:
		b.WriteString("unknown ")
	}
	b.WriteString("[" + c.IP + "])\r\n\tby ")
	b.WriteString(s.rt.Cfg.Hostname)
	b.WriteString(" (mxgate) with ")
	b.WriteString(proto)
	if c.TLS != nil {
		b.WriteString("S\r\n\t(version=" + c.TLS.Version + " cipher=" + c.TLS.Cipher + ")")
	}
	b.WriteString("\r\n\tid " + tx.ref)
	if len(tx.rcpts) == 1 {
		b.WriteString("\r\n\tfor <" + headerSafe(tx.rcpts[0].String(), "") + ">")
	}
	b.WriteString(";\r\n\t" + now.Format(time.RFC1123Z) + "\r\n")
	return []byte(b.String())
}

func headerSafe(s, empty string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' || r == '(' || r == ')' || r == '<' || r == '>' || r == ';' {
			return -1
		}
		return r
	}, s)
	if len(s) > 255 {
		s = s[:255]
	}
	if s == "" {
		return empty
	}
	return s
}
