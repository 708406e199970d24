package server

import (
	"bytes"
	"strconv"
)

// lineGate keeps go-smtp from acting on a command line the client never
// finished. go-smtp reads commands with bufio.Reader.ReadLine (under
// textproto), which, when a read fails, returns what it holds of an
// unterminated line as if it were a line: a client that trickles "EHLO xx"
// and stops would be answered 250 before the idle timeout's 421, and a
// partial RCPT would be acted on. The gate holds the bytes after the last
// LF until the LF arrives, and drops them when the read fails.
//
// Only line-structured input is held. The gate passes through, unheld:
// BDAT chunks (counted from the "BDAT n" lines it lets through, since
// their bytes need no LF), everything after a STARTTLS the server offers
// (the TLS handshake and the ciphertext that follows), bodies being read
// (the caller says so), and a partial line over the line limit, so
// go-smtp still refuses it as too long. A body line that looks like
// "BDAT n" or "STARTTLS" only makes the gate pass more through: the gate
// never changes what go-smtp reads, only when.
//
// Used by conn.Read only, on the reading goroutine.
type lineGate struct {
	held  []byte // an unterminated line, read but not yet delivered
	chunk int64  // BDAT chunk bytes still to pass through
	raw   bool   // STARTTLS went through: pass everything
	// sawBDAT: the session used BDAT, so bodies must be scanned for the
	// next "BDAT n" line; a DATA body is passed through unscanned.
	sawBDAT bool
	limit   int  // deliver a partial line this long or longer
	tls     bool // the server offers STARTTLS
}

// deliverable scans b, the held bytes followed by new input, and returns
// how much of it may be delivered now: everything in raw mode or when
// inBody, else up to the end of the last complete line (or past a BDAT
// chunk). The rest is the new held line.
func (g *lineGate) deliverable(b []byte, inBody bool) int {
	if g.raw || inBody && g.chunk == 0 && !g.sawBDAT {
		return len(b)
	}
	i := 0
	for i < len(b) {
		if g.chunk > 0 {
			m := int(min(g.chunk, int64(len(b)-i)))
			g.chunk -= int64(m)
			i += m
			continue
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		g.command(b[i : i+j])
		i += j + 1
		if g.raw {
			return len(b)
		}
	}
	if inBody || len(b)-i >= g.limit {
		return len(b)
	}
	return i
}

// command notes the commands that change how input must be passed on.
func (g *lineGate) command(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) < 5 {
		return
	}
	switch verb := line[:4]; {
	case bytes.EqualFold(verb, []byte("BDAT")) && line[4] == ' ':
		f := bytes.Fields(line[5:])
		if len(f) == 0 {
			return
		}
		if n, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil && n > 0 {
			g.chunk, g.sawBDAT = n, true
		}
	case g.tls && len(line) == 8 && bytes.EqualFold(line, []byte("STARTTLS")):
		g.raw = true
	}
}
