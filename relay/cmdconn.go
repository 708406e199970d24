package relay

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// cmdConn is the connection the go-smtp client reads and writes through:
// the bufConn, or the TLS connection over it. It is there so that the relay
// can send commands go-smtp has no method for (STARTTLS on our terms,
// XFORWARD, XCLIENT) on the very stream go-smtp uses.
//
// The relay does so only while no go-smtp call is running. go-smtp does not
// pipeline: each call writes one command and reads its reply to the last
// line, and a server sends nothing it was not asked for, so between calls
// go-smtp holds no unread byte of the server's and the next bytes on the
// wire answer whatever is sent next, by either of us. Every read, go-smtp's
// and the relay's, goes through the one buffer here, so neither can take
// bytes the other needs.
//
// Other ways were considered. Writing to the socket behind go-smtp's back
// works in plaintext only: after go-smtp's STARTTLS the stream is inside a
// tls.Conn that go-smtp made and keeps, so the relay does STARTTLS itself
// and gives go-smtp the TLS connection, wrapped in a cmdConn. An own
// EHLO+XFORWARD before handing the connection to go-smtp would do for the
// first transaction only, not for later ones on a pooled connection.
// Reaching into go-smtp's unexported textproto.Conn would break with any
// release.
//
// A new go-smtp client reads a greeting before it says EHLO. After STARTTLS
// (RFC 3207 §4.2: the client forgets what it knew and greets again) and
// after XCLIENT (the server restarts the session with a 220 that the relay
// has already read), the relay makes a new client and replay feeds it a
// greeting.
type cmdConn struct {
	net.Conn
	r      *bufio.Reader
	tp     *textproto.Reader
	replay []byte // read before r
}

func newCmdConn(c net.Conn) *cmdConn {
	cc := &cmdConn{Conn: c, r: bufio.NewReader(c)}
	cc.tp = textproto.NewReader(cc.r)
	return cc
}

// replayGreeting has the next client read a 220 greeting that the server
// sent earlier (or, after STARTTLS, implied).
func (c *cmdConn) replayGreeting() {
	c.replay = []byte("220 greeting replayed by mxgate\r\n")
}

func (c *cmdConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.r.Read(p)
}

// cmd sends one command line and reads the reply, all within timeout. A
// reply other than 2xx is returned as an *smtp.SMTPError, as go-smtp
// returns them. Call it only between go-smtp calls, and never with a line
// holding CR or LF.
func (c *cmdConn) cmd(timeout time.Duration, line string) (code int, msg string, err error) {
	return c.send(timeout, line+"\r\n")
}

// send writes s, which may be empty, and reads one reply, as cmd does. With
// s empty it reads the reply to what was written before (BDAT's chunk):
// the write buffer is flushed first, under the same timeout.
func (c *cmdConn) send(timeout time.Duration, s string) (code int, msg string, err error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, "", err
	}
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if s != "" {
		if _, err := io.WriteString(c.Conn, s); err != nil {
			return 0, "", err
		}
	}
	// Expect code 0: any code is a reply; we judge it below.
	code, msg, err = c.tp.ReadResponse(0)
	if err != nil {
		return 0, "", err
	}
	if code/100 != 2 {
		enh, text := splitEnhanced(code, msg)
		return code, msg, &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
	}
	return code, msg, nil
}

// reply is one server reply read by pipeline.
type reply struct {
	code int
	msg  string
}

// pipeline sends lines in one write (RFC 2920, PIPELINING) and reads one
// reply per line, in order, all within timeout. A transport error ends it:
// the replies read so far come with it. The same rules as cmd apply: only
// between go-smtp calls, and no line may hold CR or LF.
func (c *cmdConn) pipeline(timeout time.Duration, lines []string) ([]reply, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c.Conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		return nil, err
	}
	replies := make([]reply, 0, len(lines))
	for range lines {
		code, msg, err := c.tp.ReadResponse(0)
		if err != nil {
			return replies, err
		}
		replies = append(replies, reply{code, msg})
	}
	return replies, nil
}

// err is the reply as go-smtp's client returns it: nil when its code
// starts with want (a code, or the first two digits of one: 25 for RCPT's
// 250/251/252), else an *smtp.SMTPError.
func (r reply) err(want int) error {
	if r.code == want || want < 100 && r.code/10 == want {
		return nil
	}
	enh, text := splitEnhanced(r.code, r.msg)
	return &smtp.SMTPError{Code: r.code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
}
