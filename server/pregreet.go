package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mxgate/mxgate/policy"
)

// The pre-greeting test (checks.pregreet), after postscreen's
// postscreen_greet_wait: RFC 5321 §3.1 has the client wait for the 220
// greeting before it says anything, and §4.3.1 lets the greeting be a
// multi-line reply. Real MTAs wait for the last line of it; spam bots that
// fire their whole dialogue at once do not, so a client that sends anything
// while the banner is held back (or, with the teaser, after its first line)
// is an early talker.
//
// The modes (checks.pregreet.action) decide what happens to an early talker:
//
//   - "ignore": nothing; Pregreet() says "early" for the record.
//   - "enforce": the connection is handed over like any other (what it sent
//     is answered, nothing is lost), and the session rejects at the first
//     RCPT, so the envelope shows in the verdict record.
//   - "drop": 521 5.5.1 with a reference id, a lingering close, and the
//     onDropped hook.

// pregreetResult is the outcome of the pre-greeting test.
type pregreetResult uint32

const (
	pregreetPending pregreetResult = iota // the test is still running
	pregreetSkipped                       // checks.pregreet.wait is 0
	pregreetPass                          // waited, the client was silent
	pregreetEarly                         // the client talked first
	pregreetHangup                        // the client hung up during the wait
)

func (r pregreetResult) String() string {
	switch r {
	case pregreetSkipped:
		return "skipped"
	case pregreetPass:
		return "pass"
	case pregreetEarly:
		return "early"
	case pregreetHangup:
		return "hangup"
	}
	return ""
}

// Pregreet is the outcome of the pre-greeting test: "pass" (the client
// waited through checks.pregreet.wait in silence), "early" (it talked
// first), "skipped" (the wait is 0), "hangup" (it closed during the wait;
// such a connection never reaches go-smtp), or "" while the test runs (as
// during onAdmit).
func (c *conn) Pregreet() string { return pregreetResult(c.pregreet.Load()).String() }

// earlyMax is how much of an early talker's input the test reads: one byte
// is proof enough, and whatever it read must be handed to go-smtp, so it
// reads one small buffer's worth and leaves the rest in the kernel.
const earlyMax = 512

// pregreet runs the pre-greeting test on an admitted connection. It reports
// whether the connection is to be handed to go-smtp; when not, it has
// already been closed.
func (g *Guard) pregreet(c *conn, lim guardLimits) bool {
	p := lim.pregreet
	if p.Wait <= 0 {
		c.pregreet.Store(uint32(pregreetSkipped))
		return true
	}
	if p.Teaser && !g.teaser(c, lim.hostname) {
		c.Close()
		return false
	}
	buf := make([]byte, earlyMax)
	c.Conn.SetReadDeadline(time.Now().Add(p.Wait))
	// Checked after the deadline is set: Close moves the deadline of
	// connections in the wait to now after it marks the guard closed, so
	// one of the two always sees the other.
	if g.isClosed() {
		g.shutDown(c)
		return false
	}
	n, err := c.Conn.Read(buf)
	switch {
	case n > 0:
		c.early = buf[:n:n]
		c.pregreet.Store(uint32(pregreetEarly))
		return g.earlyTalker(c, p.Action)
	case errors.Is(err, os.ErrDeadlineExceeded) && g.isClosed():
		g.shutDown(c)
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.pregreet.Store(uint32(pregreetPass))
		return true
	default:
		// EOF, a reset, or the session cap closed it: go-smtp would only
		// write its banner into a dead socket.
		c.pregreet.Store(uint32(pregreetHangup))
		c.Close()
		return false
	}
}

// teaser writes the first line of a multi-line greeting; go-smtp's own
// "220 <domain> ESMTP Service Ready" completes it (RFC 5321 §4.2.1). It
// bypasses conn.Write: the line is not a reply the record should report.
func (g *Guard) teaser(c *conn, hostname string) bool {
	c.Conn.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	_, err := io.WriteString(c.Conn, "220-"+hostname+" ESMTP\r\n")
	return err == nil
}

// earlyTalker applies checks.pregreet.action; the rest of the wait is
// skipped either way, the verdict is known.
func (g *Guard) earlyTalker(c *conn, action string) bool {
	if action != "drop" {
		return true
	}
	c.drop(policy.ErrPregreetDrop, fmt.Sprintf("talked before the greeting: %q", prefix(c.early, detailMax)))
	c.Close()
	return false
}

// detailMax bounds the client input quoted in a drop's detail.
const detailMax = 64

// prefix returns at most n bytes of b.
func prefix(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
