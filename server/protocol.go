package server

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/policy"
)

// The protocol checks (checks.protocol) watch the raw command stream in
// conn.Read, below go-smtp, because go-smtp's line reader hides both
// things they look for: how the input arrived, and what came before the
// first command it understood.
//
// Non-SMTP clients (checks.protocol.non_smtp): before a HELO/EHLO was
// answered, a line that starts with an HTTP method ("GET ", "POST ", ...)
// or looks like an HTTP header field ("Host: x") is a browser, or a
// client abusing an open HTTP proxy that forwards to port 25. SMTP has no
// such command: every verb is a single word, and the ones with a colon
// ("MAIL FROM:", "RCPT TO:") have a space before it.
//
//   - "drop": 521 5.5.1 with a reference id, lingering close, onDropped.
//   - "ignore": nothing (go-smtp answers 500 to each line, and closes after
//     its third error); NonSMTP() still says so.
//
// Early pipelining (checks.protocol.early_pipelining): RFC 2920 §3.1 lets a
// client send commands without waiting for each reply only once the EHLO
// reply has offered PIPELINING; before that (and for a whole session after
// HELO, RFC 5321 §4.3.1 lockstep) a client sends a command, then waits for
// its reply. A client that sends more is a bulk mailer that never reads
// replies. It is counted when, before an EHLO reply with PIPELINING was
// written and outside a message body, one read returns a complete command
// line followed by more input, or when the complete command lines read
// exceed the replies written to them by two or more.
//
//   - "drop": 521 5.5.1 with a reference id, lingering close, onDropped.
//   - "enforce": EarlyPipelining() is true and the session rejects at the
//     first RCPT.
//   - "ignore": EarlyPipelining() is true; nothing else.

// protoState is the protocol checks' view of one connection. Reads (go-smtp's
// connection goroutine) and writes (the same goroutine, but also the guard's
// own replies) both update it, under mu.
type protoState struct {
	modes config.Protocol // fixed at admission

	nonSMTP atomic.Bool
	early   atomic.Bool

	mu         sync.Mutex
	off        bool     // STARTTLS: the rest of the stream is ciphertext
	greeted    bool     // a HELO/EHLO was answered 250: the non-SMTP check is over
	pipelining bool     // an EHLO reply offered PIPELINING: the early-pipelining check is over
	banner     bool     // go-smtp's 220 greeting was written
	body       bodyKind // a message body is being read
	lines      int      // complete command lines read
	replies    int      // final reply lines written to them
	partial    []byte   // the start of an incomplete line, up to lineKeep bytes
}

// bodyKind says whether input is message data, which is never inspected.
type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyData          // after 354: the final reply answers the dot, not a line
	bodyBDAT          // after a BDAT line: its reply comes after the chunk
)

// lineKeep is how much of a line split across reads is kept: the patterns
// only look at its start.
const lineKeep = 64

// protoFinding is what one read revealed.
type protoFinding struct {
	nonSMTP string // the first non-SMTP line, "" if none
	early   bool   // input ahead of the replies
}

// NonSMTP reports whether the client sent HTTP or other non-SMTP lines
// before HELO/EHLO.
func (c *conn) NonSMTP() bool { return c.proto.nonSMTP.Load() }

// EarlyPipelining reports whether the client sent commands ahead of the
// replies before PIPELINING was offered.
func (c *conn) EarlyPipelining() bool { return c.proto.early.Load() }

// checkProtocol runs the protocol checks on bytes just read. It reports
// whether it dropped the connection.
func (c *conn) checkProtocol(b []byte) bool {
	f := c.proto.read(b, c.inData.Load())
	if f.nonSMTP != "" {
		c.proto.nonSMTP.Store(true)
		if c.proto.modes.NonSMTP == "drop" {
			c.drop(policy.ErrNonSMTP, fmt.Sprintf("non-SMTP command before HELO/EHLO: %q", prefix([]byte(f.nonSMTP), detailMax)))
			return true
		}
	}
	if f.early {
		c.proto.early.Store(true)
		if c.proto.modes.EarlyPipelining == "drop" {
			c.drop(policy.ErrEarlyPipelineDrop, fmt.Sprintf("commands sent ahead of their replies without PIPELINING: %q", prefix(b, detailMax)))
			return true
		}
	}
	return false
}

// read inspects input; inData is set while the session reads a body.
func (p *protoState) read(b []byte, inData bool) protoFinding {
	p.mu.Lock()
	defer p.mu.Unlock()
	var f protoFinding
	if p.off || p.greeted && p.pipelining {
		return f
	}
	if inData || p.body != bodyNone {
		p.partial = p.partial[:0]
		return f
	}
	complete, trailing := 0, false
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.keep(b)
			trailing = complete > 0
			break
		}
		line := p.take(b[:i])
		b = b[i+1:]
		complete++
		p.lines++
		if !p.greeted && f.nonSMTP == "" && nonSMTPLine(line) {
			f.nonSMTP = string(line)
		}
		if bdatLine(line) {
			// The chunk follows the command raw, with no reply between.
			p.body = bodyBDAT
			break
		}
	}
	f.early = !p.pipelining && complete > 0 && (complete > 1 || trailing || p.lines-p.replies >= 2)
	return f
}

// keep appends the start of an incomplete line to partial.
func (p *protoState) keep(b []byte) {
	if room := lineKeep - len(p.partial); room > 0 {
		p.partial = append(p.partial, prefix(b, room)...)
	}
}

// take completes a line with what the previous reads kept of its start,
// and strips the CR. The result is only valid until the next keep.
func (p *protoState) take(b []byte) []byte {
	if len(p.partial) > 0 {
		p.keep(b)
		b = p.partial
		p.partial = p.partial[:0]
	}
	return bytes.TrimSuffix(b, []byte("\r"))
}

// wrote follows the replies written: go-smtp writes each reply line with
// a Write of its own, but any split is handled.
func (p *protoState) wrote(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.greeted && p.pipelining {
		return // both checks are over for this connection
	}
	for len(b) > 0 && !p.off {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		p.reply(bytes.TrimSuffix(line, []byte("\r")))
	}
}

// reply notes one reply line.
func (p *protoState) reply(line []byte) {
	if len(line) < 4 || line[3] != ' ' && line[3] != '-' {
		return
	}
	code, text := string(line[:3]), string(line[4:])
	if code == "250" {
		switch {
		case text == "PIPELINING":
			p.pipelining = true
		case helloReply(text):
			p.greeted = true
		}
	}
	if line[3] == '-' {
		return // the reply goes on
	}
	switch {
	case code == "220" && !p.banner:
		p.banner = true
	case code == "220":
		// Only STARTTLS answers 220 after the banner; what follows is a
		// TLS handshake, whose bytes would look like anything.
		p.off = true
	case p.body == bodyData:
		p.body = bodyNone
	case p.body == bodyBDAT:
		p.body = bodyNone
		p.replies++
	case code == "354":
		p.body = bodyData
		p.replies++
	default:
		p.replies++
	}
}

// helloReply recognises go-smtp's answer to a successful HELO ("250 2.0.0
// Hello x") or EHLO ("250-Hello x", the first line).
func helloReply(text string) bool {
	return strings.HasPrefix(text, "Hello ") || strings.HasPrefix(text, "2.0.0 Hello ")
}

// httpMethods are the request methods of RFC 9110 §9 and PATCH (RFC 5789),
// case-sensitive as HTTP has them, with the space that ends them.
var httpMethods = []string{"GET ", "POST ", "HEAD ", "PUT ", "OPTIONS ", "CONNECT ", "DELETE ", "PATCH "}

// headerField is the start of an HTTP header field: a single token, the
// colon right after it, then a space or tab. "MAIL FROM:<a>" has a space
// inside its name and never matches.
var headerField = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*:[ \t]`)

// nonSMTPLine reports whether a command line is HTTP rather than SMTP.
func nonSMTPLine(line []byte) bool {
	for _, m := range httpMethods {
		if bytes.HasPrefix(line, []byte(m)) {
			return true
		}
	}
	return headerField.Match(line)
}

// bdatLine recognises a BDAT command (RFC 3030), whose chunk follows it.
func bdatLine(line []byte) bool {
	return len(line) >= 5 && strings.EqualFold(string(line[:5]), "BDAT ")
}
