// Package spool buffers one message while it streams in from the client, so
// that it can be checked and then relayed, and canonicalises its line
// endings on the way in.
//
// Canonical form matters because of SMTP smuggling. RFC 5321 §2.3.8 makes
// CRLF the only line terminator an implementation may recognise, and
// §4.1.1.4 forbids taking <LF>.<LF> for the end of the data, but receivers
// differ in what they do with a bare CR or bare LF anyway. go-smtp's DATA
// reader ends only on CRLF.CRLF and removes dot-stuffing, but passes bare
// CR, bare LF and NUL through; BDAT chunks (RFC 3030 §2) arrive raw. The
// go-smtp client we relay with turns a bare LF into CRLF but sends a bare CR
// as it is, so a backend that ends lines on a bare CR could see "\r.\r" as
// the end of our data and whatever follows as a second message from us.
// Everything Read returns is therefore canonical: every CR is followed by
// LF, every LF is preceded by CR (RFC 5322 §2.3), and there is no NUL
// (RFC 5322 §3.5 text excludes it).
//
// With NormalizeBareNewline the mapping, decided on the bytes as received, is:
//
//	CR LF                  → CRLF (one line end)
//	CR not followed by LF  → CRLF (a line end of its own)
//	LF not preceded by CR  → CRLF
//
// so "\r\r\n" is two line ends and "\n\r" is two line ends. With StripNUL a
// NUL is dropped after that decision, so "\r\x00\n" is also two line ends.
// With the reject modes the first offending byte ends the read with
// policy.ErrBareNewline or policy.ErrNUL.
//
// A non-empty message that does not end with a line end gets a CRLF
// appended: RFC 5322 §2.1 messages consist of lines, go-smtp's DATA reader
// always leaves the CRLF before the final dot, but the last BDAT chunk need
// not end with one, and our relay would otherwise add it on the wire anyway.
// The appended CRLF counts towards Options.MaxSize. An empty message stays
// empty.
package spool

import (
	"bytes"
	"io"
	"sync"

	"github.com/mxgate/mxgate/policy"
)

// NewlineMode says how bare CR and bare LF are handled.
type NewlineMode int

const (
	// RejectBareNewline fails the read with policy.ErrBareNewline.
	RejectBareNewline NewlineMode = iota
	// NormalizeBareNewline turns each bare CR and bare LF into CRLF.
	NormalizeBareNewline
)

// NULMode says how NUL bytes are handled.
type NULMode int

const (
	// RejectNUL fails the read with policy.ErrNUL.
	RejectNUL NULMode = iota
	// StripNUL drops NUL bytes.
	StripNUL
)

// Options configures Read.
type Options struct {
	// MemLimit is how many bytes are kept in memory; a larger message
	// continues in a temp file. 0 sends every non-empty message to a file.
	MemLimit int64
	// MaxSize caps the canonical size; exceeding it fails the read with
	// policy.ErrTooLarge. 0 means unlimited.
	MaxSize int64
	// TempDir is where temp files go; "" means os.TempDir().
	TempDir string
	// BareNewline selects rejection or normalisation of bare CR and LF.
	BareNewline NewlineMode
	// NUL selects rejection or stripping of NUL bytes.
	NUL NULMode
}

// readSize is the read buffer size. It is pooled rather than per session:
// thousands of sessions may be in DATA at once, mostly idle.
const readSize = 32 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

// maxEmptyReads bounds reads that return neither data nor an error, as
// bufio does, so a broken reader cannot spin a session forever.
const maxEmptyReads = 100

// Read consumes r to EOF, canonicalising, and returns the buffered message,
// which the caller must Close. Errors are policy.ErrBareNewline or
// policy.ErrNUL in the reject modes (reading stops at the offending byte),
// policy.ErrTooLarge, an error creating or writing the temp file, or r's
// own error unchanged, so that the caller can tell io.ErrUnexpectedEOF,
// timeouts and go-smtp's *smtp.SMTPError apart with errors.Is and
// errors.As. On error nothing is left behind. Read does not drain r after
// an error: go-smtp discards the rest of the data itself.
func Read(r io.Reader, opt Options) (*Message, error) {
	s := &sink{opt: opt}
	c := canon{out: s, opt: opt}
	bp := readBufs.Get().(*[]byte)
	err := copyFrom(&c, r, *bp)
	readBufs.Put(bp)
	if err == nil {
		err = c.finish()
	}
	if err == nil {
		return s.message()
	}
	s.discard()
	return nil, err
}

func copyFrom(c *canon, r io.Reader, buf []byte) error {
	for empty := 0; ; {
		n, rerr := r.Read(buf)
		// io.Reader: the n bytes count even when err is set.
		if n > 0 {
			empty = 0
			if err := c.write(buf[:n]); err != nil {
				return err
			}
		} else if rerr == nil {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// indexSpecial returns the index of the first CR, LF or NUL in p, or -1.
// Three IndexByte scans, which are vectorised, beat one byte-at-a-time
// loop even though each line end stops them.
func indexSpecial(p []byte) int {
	j := bytes.IndexByte(p, '\r')
	if j >= 0 {
		p = p[:j]
	}
	if k := bytes.IndexByte(p, '\n'); k >= 0 {
		p, j = p[:k], k
	}
	if k := bytes.IndexByte(p, 0); k >= 0 {
		j = k
	}
	return j
}

var crlf = []byte("\r\n")

// canon canonicalises a stream handed to it in arbitrary pieces.
type canon struct {
	out *sink
	opt Options
	// pendingCR is a CR that ended the previous piece: whether it is
	// part of CRLF depends on the next byte.
	pendingCR bool
}

func (c *canon) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if c.pendingCR {
		c.pendingCR = false
		if p[0] == '\n' {
			if err := c.out.write(crlf); err != nil {
				return err
			}
			p = p[1:]
		} else if err := c.bareNewline(); err != nil {
			return err
		}
	}
	start := 0 // p[start:i] is clean and not yet written
	for i := 0; i < len(p); i++ {
		j := indexSpecial(p[i:])
		if j < 0 {
			break
		}
		i += j
		if p[i] == '\r' && i+1 < len(p) && p[i+1] == '\n' {
			// The common case: keep CRLF inside the run.
			i++
			continue
		}
		if err := c.out.write(p[start:i]); err != nil {
			return err
		}
		start = i + 1
		switch {
		case p[i] == 0:
			if c.opt.NUL != StripNUL {
				return policy.ErrNUL
			}
		case p[i] == '\r' && i+1 == len(p):
			c.pendingCR = true
			return nil
		default:
			if err := c.bareNewline(); err != nil {
				return err
			}
		}
	}
	return c.out.write(p[start:])
}

func (c *canon) bareNewline() error {
	if c.opt.BareNewline != NormalizeBareNewline {
		return policy.ErrBareNewline
	}
	return c.out.write(crlf)
}

// finish settles a CR left pending at EOF and adds the final line end.
func (c *canon) finish() error {
	if c.pendingCR {
		c.pendingCR = false
		if err := c.bareNewline(); err != nil {
			return err
		}
	}
	if c.out.size > 0 && !c.out.lastLF {
		return c.out.write(crlf)
	}
	return nil
}
