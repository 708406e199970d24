package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/refid"
	"github.com/mxgate/mxgate/policy"
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
// ended (221 after QUIT, 421 after a timeout, 500 after a protocol error),
// and it watches the command stream for non-SMTP clients and early
// pipelining (protocol.go), which only the raw stream shows.
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
	// encrypted is set once the session runs over TLS: the bytes this
	// wrapper sees are then ciphertext, whose CRs mean nothing (counting
	// them refused TLS mail at random). go-smtp offers no view of the
	// decrypted stream, so the hidden-bare-CR check covers plaintext
	// sessions only.
	encrypted atomic.Bool
	// gate holds back an unterminated command line (linegate.go).
	gate lineGate
	// readErr is a read error held back while complete lines read with it
	// are delivered; the next Read returns it.
	readErr error

	// closeAfterReply closes the connection as soon as the next reply is
	// written: after a line over the limit go-smtp would otherwise answer
	// the same final dot twice.
	closeAfterReply atomic.Bool

	// vetting is true from admission until the hand-over to go-smtp
	// (under g.mu): Guard.Close interrupts the pre-greeting wait of these.
	vetting bool
	// early holds what an early talker sent during the pre-greeting wait;
	// Read returns it first, so go-smtp still answers it (pregreet.go).
	early    []byte
	pregreet atomic.Uint32 // a pregreetResult
	proto    protoState
	// dropped is set when a guard check dropped the connection: Close
	// then calls onDropped instead of onClose.
	dropped atomic.Pointer[dropInfo]

	closeOnce sync.Once
	replyMu   sync.Mutex
	lastReply []byte
}

// dropInfo is why a guard check dropped a connection.
type dropInfo struct {
	reply  *policy.Reply
	ref    string
	detail string
}

// errTimedOut is returned by every Read after the first timeout.
var errTimedOut = os.ErrDeadlineExceeded

func (c *conn) Read(b []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, errTimedOut
	}
	if err := c.readErr; err != nil {
		c.readErr = nil
		return 0, err
	}
	for {
		if len(c.gate.held) >= len(b) {
			// No room to hold the line and read on: deliver it as it is.
			n := copy(b, c.gate.held)
			c.gate.held = c.gate.held[:copy(c.gate.held, c.gate.held[n:])]
			return n, nil
		}
		h := copy(b, c.gate.held)
		c.gate.held = c.gate.held[:0]
		n, err := c.read(b[h:])
		c.countBareCR(b[h : h+n])
		if n > 0 && c.checkProtocol(b[h:h+n]) {
			// Dropped: go-smtp must not act on what it would have read, and
			// net.ErrClosed makes it end the connection without a reply.
			return 0, net.ErrClosed
		}
		k := c.gate.deliverable(b[:h+n], c.inData.Load())
		c.gate.held = append(c.gate.held, b[k:h+n]...)
		if err != nil {
			// The unterminated line is never delivered: go-smtp would
			// take it for a whole one.
			c.gate.held = c.gate.held[:0]
			if k > 0 {
				c.readErr = err
				return k, nil
			}
			return 0, err
		}
		if k > 0 {
			return k, nil
		}
	}
}

// read returns what the pre-greeting wait kept first, then reads with the
// idle deadline of the current phase.
func (c *conn) read(b []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(b, c.early)
		c.early = c.early[n:]
		return n, nil
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
	return n, err
}

func (c *conn) countBareCR(b []byte) {
	if len(b) == 0 || c.encrypted.Load() {
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
	if bytes.HasPrefix(b, tooManyErrors) {
		// go-smtp's answer to a fourth protocol error (unknown commands,
		// bad syntax) before it closes. 421 says "try again later", which
		// is what a closing server means; 500 would be read as final.
		orig := len(b)
		b = []byte(replyLine(policy.ErrTooManyErrors, ""))
		c.noteReply(b)
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return orig, nil
	}
	c.noteReply(b)
	c.proto.wrote(b)
	n, err := c.Conn.Write(b)
	if c.closeAfterReply.Load() {
		c.Conn.Close()
	}
	return n, err
}

// tooManyErrors is how go-smtp's error-limit reply starts (conn.go,
// protocolError, v0.25.1).
var tooManyErrors = []byte("500 5.5.1 Too many errors")

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
// writes the connection's verdict record if it had no transaction (or, for
// a connection a guard check dropped, the record of the drop).
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.capTimer != nil {
			c.capTimer.Stop()
		}
		c.g.release(c)
		if d := c.dropped.Load(); d != nil && c.g.onDropped != nil {
			c.g.onDropped(c, d.reply, d.detail)
			return
		}
		c.g.onClose(c)
	})
	return err
}

// drop ends the connection for a guard check: r with a fresh reference id,
// then a lingering close, so the reply is not lost (see lingerClose). It
// only closes the socket; the caller (or go-smtp, after Read returns
// net.ErrClosed) calls Close, which reports the drop through onDropped.
func (c *conn) drop(r *policy.Reply, detail string) {
	ref := refid.New(time.Now())
	c.dropped.Store(&dropInfo{reply: r, ref: ref, detail: detail})
	line := replyLine(r, ref)
	c.noteReply([]byte(line))
	c.Conn.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	if _, err := io.WriteString(c.Conn, line); err == nil {
		lingerClose(c.Conn, lingerTime)
	}
	c.Conn.Close()
}

// lingerTime bounds the drain before a drop's close (libraries.md §1.12).
const lingerTime = time.Second

// lingerClose sends FIN after the reply and reads what the client still
// sends until it closes too, or for at most d: closing a socket with unread
// input makes the kernel answer with an RST, and a client that receives
// the RST before it read the reply loses the reply. Clients that were
// mid-write when we dropped them (early talkers, pipeliners) are exactly
// those.
func lingerClose(nc net.Conn, d time.Duration) {
	closeWrite(nc)
	nc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1024)
	for {
		if _, err := nc.Read(buf); err != nil {
			return
		}
	}
}

// closeWrite half-closes a TCP connection, also under a PROXY protocol
// wrapper; other connections are left alone (the drain still times out).
func closeWrite(nc net.Conn) {
	switch v := nc.(type) {
	case interface{ CloseWrite() error }:
		v.CloseWrite()
	case interface{ TCPConn() (*net.TCPConn, bool) }:
		if tc, ok := v.TCPConn(); ok {
			tc.CloseWrite()
		}
	}
}

// DropRef is the reference id of the reply a guard check dropped the
// connection with ("" when it was not dropped): onDropped's record uses it.
func (c *conn) DropRef() string {
	if d := c.dropped.Load(); d != nil {
		return d.ref
	}
	return ""
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
