package server

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/spool"
)

// headers returns what goes to the backend: the gateway's header fields,
// the message's own header section with forged X-Spam-Flag/X-Spam-Status
// fields removed (and the Subject tagged when configured), then the body.
// Sieve filters trust X-Spam-Flag: YES, so only ours may reach them.
// bodySize is the number of bytes body yields.
func (s *session) headers(tx *txn, msg *spool.Message) (head []byte, body io.Reader, bodySize int64, err error) {
	orig := msg.Header()
	var b bytes.Buffer
	// Ours (Received, Authentication-Results, X-Spam-*) is well under
	// 2 KiB: one allocation for all of it, not one per doubling.
	b.Grow(len(orig) + 2048)
	b.Write(s.received(tx, time.Now()))
	b.WriteString(authResults(s.rt.Cfg.Hostname, tx.results))
	b.WriteString(s.spamHeaders(tx))
	r := msg.Open()
	// The original header section is replaced by its rewritten copy; skip
	// it in the stored message.
	if _, err := io.CopyN(io.Discard, r, int64(len(orig))); err != nil {
		return nil, nil, 0, fmt.Errorf("rereading the message: %w", err)
	}
	tag := ""
	if tx.eval != nil && tx.eval.Tag {
		tag = s.rt.Cfg.Policy.SubjectTag
	}
	writeRewrittenHeader(&b, orig, tag, s.rt.Cfg.Hostname)
	return b.Bytes(), r, msg.Size() - int64(len(orig)), nil
}

// spamHeaders renders the SpamAssassin-convention fields existing Sieve
// filters match: every relayed message gets X-Spam-Status; a tagged one
// also X-Spam-Flag: YES. Rule names are validated identifiers and the score
// is ours: no client input goes into these fields.
func (s *session) spamHeaders(tx *txn) string {
	if tx.eval == nil {
		return ""
	}
	score := strconv.FormatFloat(tx.eval.Score, 'f', 1, 64)
	if !tx.eval.Tag {
		return "X-Spam-Status: No, score=" + score + "\r\n"
	}
	var names []string
	for _, m := range tx.eval.Matches {
		if !m.Shadow {
			names = append(names, m.Rule)
		}
	}
	return "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=" + score + ", rules=" + strings.Join(names, ",") + "\r\n"
}

// fieldValue is a field's value with its continuation lines (which start
// with a space or tab in rest), for parsing.
func fieldValue(first, rest []byte) string {
	v := string(first)
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			return v + string(rest)
		}
		v += string(rest[:i+2])
		rest = rest[i+2:]
	}
	return v
}

// writeRewrittenHeader writes h to out without its X-Spam-Flag and
// X-Spam-Status fields and the Authentication-Results fields that claim
// our authserv-id (RFC 8601 §5: a forgery, or a loop), each with its
// folded continuation lines, and with the Subject prefixed with tag. It runs after DKIM verification, which saw
// the message as received.
func writeRewrittenHeader(out *bytes.Buffer, h []byte, tag, authservid string) {
	skip := false
	for len(h) > 0 {
		line := h
		if i := bytes.Index(h, []byte("\r\n")); i >= 0 {
			line = h[:i+2]
		}
		h = h[len(line):]
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !skip {
				out.Write(line)
			}
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		name = bytes.TrimSpace(name)
		skip = bytes.EqualFold(name, []byte("X-Spam-Flag")) || bytes.EqualFold(name, []byte("X-Spam-Status")) ||
			bytes.EqualFold(name, []byte("Authentication-Results")) && strings.EqualFold(authservID(fieldValue(value, h)), authservid)
		switch {
		case skip:
		case tag != "" && bytes.EqualFold(name, []byte("Subject")):
			out.WriteString("Subject: " + tag + " ")
			out.Write(bytes.TrimLeft(value, " \t"))
			tag = "" // only the first Subject
		default:
			out.Write(line)
		}
	}
}
