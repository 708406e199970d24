package relay

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// stuffer dot-stuffs a message for DATA (RFC 5321 §4.5.2) in large writes:
// a line that starts with "." gets another, and a bare LF becomes CRLF, as
// net/textproto's DotWriter does, but a line at a time instead of a byte
// at a time (that writer was 7 % of the gateway's CPU at 4 KiB).
//
// It holds back a final line break: Finish reports whether the message
// ended with one, which the caller then sends as CRLF before ".\r\n";
// otherwise the caller adds a CRLF to end the last line first. (Txn.transfer
// has go-smtp's DotWriter send both: "\r\n" written to it, or nothing,
// then its Close.) A bare CR stays as it is, also at the end.
//
// With raw set (BDAT, whose chunks are counted, not ended by a dot) it adds
// no dots: it only turns a bare LF into CRLF, which makes the chunk longer
// than announced, so that such a message fails (chunkWriter) instead of
// reaching the backend with a bare LF.
type stuffer struct {
	w   io.Writer
	raw bool
	// bol: the next byte starts a line; cr: the last byte written was a CR
	// (so an LF that follows is not bare).
	bol, cr bool
	held    [2]byte // the last bytes given (CRLF, LF or CR), not yet written
	nheld   int
	out     []byte // reused output buffer
}

// stuffers keeps stuffers, with their output buffers, between messages.
var stuffers = sync.Pool{New: func() any { return new(stuffer) }}

// getStuffer returns a stuffer writing to w, raw or not; putStuffer gives
// it back.
func getStuffer(w io.Writer, raw bool) *stuffer {
	s := stuffers.Get().(*stuffer)
	*s = stuffer{w: w, raw: raw, bol: true, out: s.out[:0]}
	return s
}

func putStuffer(s *stuffer) {
	if cap(s.out) > 256<<10 {
		return // a rare huge chunk: let it go
	}
	s.w = nil
	stuffers.Put(s)
}

func newStuffer(w io.Writer) *stuffer { return &stuffer{w: w, bol: true} }

// Write stuffs p, writing all of it but a trailing CRLF, LF or CR.
func (s *stuffer) Write(p []byte) (int, error) {
	n := len(p)
	if s.nheld > 0 {
		if len(p) < 2 {
			// What to hold back now may straddle the held bytes and p:
			// judge them together (a copy, but of at most three bytes).
			p = append(s.held[:s.nheld:s.nheld], p...)
		} else if err := s.write(s.held[:s.nheld]); err != nil {
			// p alone decides what is held back next, so the held
			// bytes can go first, without copying p behind them.
			return 0, err
		}
		s.nheld = 0
	}
	keep := 0
	switch {
	case bytes.HasSuffix(p, []byte("\r\n")):
		keep = 2
	case bytes.HasSuffix(p, []byte("\r")), bytes.HasSuffix(p, []byte("\n")):
		keep = 1
	}
	if err := s.write(p[:len(p)-keep]); err != nil {
		return 0, err
	}
	s.nheld = copy(s.held[:], p[len(p)-keep:])
	return n, nil
}

// write stuffs p into out and writes it.
func (s *stuffer) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	out := s.out[:0]
	for len(p) > 0 {
		if s.bol && p[0] == '.' && !s.raw {
			out = append(out, '.')
		}
		s.bol = false
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			out = append(out, p...)
			s.cr = p[len(p)-1] == '\r'
			break
		}
		if !(i > 0 && p[i-1] == '\r' || i == 0 && s.cr) {
			out = append(out, p[:i]...)
			out = append(out, '\r', '\n')
		} else {
			out = append(out, p[:i+1]...)
		}
		p = p[i+1:]
		s.bol, s.cr = true, false
	}
	s.out = out
	_, err := s.w.Write(out)
	return err
}

// Finish writes what is held back except a final line break, and reports
// whether the message ended with one.
func (s *stuffer) Finish() (endsLine bool, err error) {
	held := s.held[:s.nheld]
	s.nheld = 0
	if len(held) > 0 && held[len(held)-1] == '\n' {
		return true, nil
	}
	return false, s.write(held)
}

// chunkWriter passes on a BDAT chunk (RFC 3030) of exactly size bytes
// and not one more, since the backend would read the bytes beyond it as
// commands: a write that would go past it fails without writing anything.
// The chunk's last byte is held back until finish, which sends it only
// when the message has turned out to be exactly the size announced. A
// message of any other size therefore never completes the chunk, and with
// the connection then closed the backend drops what it had, as it drops a
// DATA transfer without its final dot.
type chunkWriter struct {
	w    io.Writer
	left int64 // bytes not yet written, the held one included
	held bool  // last holds the chunk's last byte
	last [1]byte
}

// errChunkSize: the message was not the size announced in BDAT.
var errChunkSize = errors.New("relay: message size differs from the BDAT chunk size")

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	switch {
	case n == 0:
		return 0, nil
	case int64(n) > c.left || c.held:
		return 0, errChunkSize
	case int64(n) == c.left:
		c.last[0], c.held = p[n-1], true // copied: p may be reused
		p = p[:n-1]
	}
	w, err := c.w.Write(p)
	c.left -= int64(w)
	if err != nil {
		return w, err
	}
	return n, nil
}

// finish sends the held last byte, or fails when the chunk is not full.
func (c *chunkWriter) finish() error {
	switch {
	case c.left == 0:
		return nil // an empty chunk
	case !c.held || c.left != 1:
		return errChunkSize
	}
	if _, err := c.w.Write(c.last[:]); err != nil {
		return err
	}
	c.left, c.held = 0, false
	return nil
}
