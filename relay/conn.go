package relay

import (
	"bufio"
	"crypto/tls"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// writeBufferSize is large enough that a typical message and its final dot
// leave in one write.
const writeBufferSize = 64 << 10

// bufConn is the net.Conn handed to the SMTP client (and under TLS to
// crypto/tls). Writes collect in a buffer that the next Read flushes: the
// client reads a reply after every command and after the final dot, so
// nothing waits in the buffer while we wait for the backend.
//
// limit, when set, caps every deadline: go-smtp sets its own deadline per
// command and clears it afterwards, which would otherwise escape the
// Connect timeout that covers greeting, EHLO and STARTTLS together.
type bufConn struct {
	net.Conn
	w     *bufio.Writer
	limit time.Time
}

func newBufConn(c net.Conn) *bufConn {
	return &bufConn{Conn: c, w: bufio.NewWriterSize(c, writeBufferSize)}
}

// Write buffers p; a full buffer is written through.
func (b *bufConn) Write(p []byte) (int, error) { return b.w.Write(p) }

// Read flushes pending writes first: a reply never comes to a request that
// has not left.
func (b *bufConn) Read(p []byte) (int, error) {
	if err := b.Flush(); err != nil {
		return 0, err
	}
	return b.Conn.Read(p)
}

// Flush writes out what is buffered.
func (b *bufConn) Flush() error {
	if b.w.Buffered() == 0 {
		return nil
	}
	return b.w.Flush()
}

// SetDeadline sets both deadlines, no later than the limit.
func (b *bufConn) SetDeadline(t time.Time) error { return b.Conn.SetDeadline(b.clamp(t)) }

// SetReadDeadline sets the read deadline, no later than the limit.
func (b *bufConn) SetReadDeadline(t time.Time) error { return b.Conn.SetReadDeadline(b.clamp(t)) }

// SetWriteDeadline sets the write deadline, no later than the limit.
func (b *bufConn) SetWriteDeadline(t time.Time) error {
	return b.Conn.SetWriteDeadline(b.clamp(t))
}

func (b *bufConn) clamp(t time.Time) time.Time {
	if !b.limit.IsZero() && (t.IsZero() || t.After(b.limit)) {
		return b.limit
	}
	return t
}

// conn is one greeted backend connection with no transaction open (while
// idle) or with the transaction of one Txn (while in use).
type conn struct {
	id      uint64
	srv     *server
	raw     net.Conn // the TCP connection, for liveness checks and closing
	bc      *bufConn
	cc      *cmdConn // what client talks through, for commands it lacks
	client  *smtp.Client
	tlsConn *tls.Conn // nil: plaintext
	// xclient: XCLIENT was sent, so the session may carry another
	// client's identity; the connection is closed after the transaction.
	xclient bool

	lastUsed time.Time // when it last went idle
	msgs     int       // messages completed on it
	reused   bool      // taken from the idle list rather than dialled
}

// extension reports whether the backend advertised ext in its last EHLO.
// Only call it on a greeted connection: go-smtp greets as "localhost"
// otherwise.
func (c *conn) extension(ext string) bool {
	ok, _ := c.client.Extension(ext)
	return ok
}

// close drops the connection without a word to the backend. The socket
// goes first, so nothing still buffered (a partial body, a TLS alert) can
// leave on the way out.
func (c *conn) close() {
	_ = c.raw.Close()
	_ = c.client.Close()
}

// quit says QUIT, waits for the reply at most timeout, and closes.
// RFC 5321 §4.1.1.10 asks for QUIT before closing; backends log a "lost
// connection" otherwise.
func (c *conn) quit(timeout time.Duration) {
	c.client.CommandTimeout = timeout
	_ = c.client.Quit()
	c.close()
}

// tlsState returns the TLS state of a connection that did STARTTLS.
func (c *conn) tlsState() (tls.ConnectionState, bool) {
	if c.tlsConn == nil {
		return tls.ConnectionState{}, false
	}
	return c.tlsConn.ConnectionState(), true
}

// alive reports whether an idle connection still looks usable, without a
// round trip: while idle the backend has no reason to send anything, so
// pending bytes (typically its idle-timeout 421, RFC 5321 §3.8) or EOF mean
// it is gone or going.
//
// A Read with a deadline already in the past does not work for this: Go
// fails it with a timeout before asking the kernel, so it reports every
// connection alive. Where the connection exposes its descriptor we peek at
// the socket without blocking (peekAlive); otherwise a short read deadline
// is the fallback.
func (c *conn) alive() bool {
	if alive, ok := peekAlive(c.raw); ok {
		return alive
	}
	return aliveByDeadline(c.raw)
}

// aliveByDeadline reads one byte with a deadline just ahead: a timeout
// means nothing is pending. The byte read, if any, is lost, but then the
// connection is closed anyway.
func aliveByDeadline(raw net.Conn) bool {
	const wait = time.Millisecond
	if err := raw.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return false
	}
	var b [1]byte
	_, err := raw.Read(b[:])
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return false
	}
	return isTimeout(err)
}
