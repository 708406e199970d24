package server

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// conn wraps every accepted connection. It owns the read deadlines: go-smtp's
// ReadTimeout is set once per command line and so covers a whole DATA body,
// and after it fires the rest of the body is read as commands (go-smtp issue
// 196). Instead each Read gets its own idle deadline (the command timeout
// while waiting for commands, the data timeout inside DATA), and a timeout is
// sticky: once one Read timed out, every later Read fails at once, so no
// leftover body can ever be parsed as a command.
//
// It also remembers the last reply line the server wrote, which is how the
// connection's verdict record learns how a connection without a transaction
// ended (221 after QUIT, 421 after a timeout, 500 after a protocol error).
type conn struct {
	net.Conn
	st *connState
	g  *Guard

	inData   atomic.Bool
	timedOut atomic.Bool
	cmdIdle  time.Duration
	dataIdle time.Duration
	capTimer *time.Timer

	// bareCR counts CRs not followed by LF in the raw input. go-smtp's
	// DATA reader silently drops the dot and the CR of "CRLF . CR x", so
	// the session would never see that bare CR; counting it here lets a
	// transaction refuse it (see session.data).
	bareCR atomic.Int64
	prevCR bool // the last byte read was a CR (only the reading goroutine touches it)

	// closeAfterReply closes the connection as soon as the next reply is
	// written: after a line over the limit go-smtp would otherwise answer
	// the same final dot twice.
	closeAfterReply atomic.Bool

	closeOnce sync.Once
	replyMu   sync.Mutex
	lastReply []byte
}

// errTimedOut is returned by every Read after the first timeout.
var errTimedOut = os.ErrDeadlineExceeded

func (c *conn) Read(b []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, errTimedOut
	}
	idle := c.cmdIdle
	if c.inData.Load() {
		idle = c.dataIdle
	}
	c.Conn.SetReadDeadline(time.Now().Add(idle))
	n, err := c.Conn.Read(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	c.countBareCR(b[:n])
	return n, err
}

func (c *conn) countBareCR(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.prevCR && b[0] != '\n' {
		c.bareCR.Add(1)
	}
	for i := bytes.IndexByte(b, '\r'); i >= 0; {
		if i+1 < len(b) && b[i+1] != '\n' {
			c.bareCR.Add(1)
		}
		j := bytes.IndexByte(b[i+1:], '\r')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	c.prevCR = b[len(b)-1] == '\r'
}

// SetReadDeadline is ignored: the wrapper owns read deadlines (see Read).
func (c *conn) SetReadDeadline(time.Time) error { return nil }

// SetDeadline only sets the write deadline, for the same reason.
func (c *conn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

func (c *conn) Write(b []byte) (int, error) {
	c.noteReply(b)
	n, err := c.Conn.Write(b)
	if c.closeAfterReply.Load() {
		c.Conn.Close()
	}
	return n, err
}

// noteReply keeps the last complete reply line written ("250 2.0.0 ...").
// Before STARTTLS these are the plaintext replies; after it the writes are
// TLS records and the wrapper only sees ciphertext, so it notes nothing
// (the session records its own replies, so nothing is lost).
func (c *conn) noteReply(b []byte) {
	if len(b) < 5 || b[0] < '2' || b[0] > '5' {
		return
	}
	b = bytes.TrimRight(b, "\r\n")
	if i := bytes.LastIndex(b, []byte("\r\n")); i >= 0 {
		b = b[i+2:]
	}
	if len(b) > 512 {
		b = b[:512]
	}
	c.replyMu.Lock()
	c.lastReply = append(c.lastReply[:0], b...)
	c.replyMu.Unlock()
}

// LastReply returns the last reply line's code and text.
func (c *conn) LastReply() (int, string) {
	c.replyMu.Lock()
	defer c.replyMu.Unlock()
	if len(c.lastReply) < 3 {
		return 0, ""
	}
	code, err := strconv.Atoi(string(c.lastReply[:3]))
	if err != nil {
		return 0, ""
	}
	text := ""
	if len(c.lastReply) > 4 {
		text = string(c.lastReply[4:])
	}
	return code, text
}

// Close closes the connection once, releases its slot in the caps and
// writes the connection's verdict record if it had no transaction.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.capTimer != nil {
			c.capTimer.Stop()
		}
		c.g.release(c)
		c.g.onClose(c)
	})
	return err
}

// connOf finds our wrapper under go-smtp's connection (a *tls.Conn after
// STARTTLS).
func connOf(nc net.Conn) *conn {
	for {
		switch v := nc.(type) {
		case *conn:
			return v
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		default:
			return nil
		}
	}
}

// remoteAddr returns the client's address, with IPv4-mapped IPv6 addresses
// from dual-stack listeners unmapped (libraries.md §1.3).
func remoteAddr(nc net.Conn) netip.AddrPort {
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
