package sink

import (
	"bytes"
	"errors"
	"time"
)

// strictEOD ends DATA (RFC 5321 §4.1.1.4). Its leading CRLF ends the last
// line of the message and stays in the data.
const strictEOD = "\r\n.\r\n"

// LenientEODs are the end-of-data sequences that a Lenient sink accepts
// besides <CRLF>.<CRLF>: the bare-CR, bare-LF and NUL variants that mail
// servers have been found to accept, which is what SMTP smuggling relies on
// (SEC Consult, December 2023; CVE-2023-51764, -51765, -51766). A gateway
// that forwards any of them lets a client hide a second message inside the
// first. As with <CRLF>.<CRLF>, the leading line break(s) of a sequence stay
// in the message data; the rest is the marker. Treat it as read-only: Start
// copies it, and tests range over it.
var LenientEODs = []string{
	"\n.\n",
	"\n.\r\n",
	"\r.\r",
	"\r.\r\n",
	"\r\n.\n",
	"\r\n.\r",
	"\n.\r",
	"\r.\n",
	"\n\n.\r\n",
	"\r\n\x00.\r\n",
}

// defaultEODGrace is how long the sink waits for more bytes when what it has read
// ends with a complete end-of-data sequence that a longer one could still
// extend ("\r\n.\r" may be the start of "\r\n.\r\n"). Long enough for the
// rest of a split write to arrive, short enough not to stall a client that
// really meant the shorter one.
const defaultEODGrace = 100 * time.Millisecond

var errDropped = errors.New("dropped the connection during DATA (DropAfterDataBytes)")

// readData reads message data up to the end-of-data marker, consuming the
// marker but not one byte more (the next bytes are commands). It returns the
// raw bytes before the marker. If the data exceeds the size limit it is read
// to the end but not kept (tooBig). drop > 0 aborts after that many bytes.
func (c *session) readData(drop int) (raw []byte, tooBig bool, err error) {
	// The line break of the DATA command makes the first data byte a line
	// start, so data that begins with ".\r\n" is an empty message.
	buf := []byte("\r\n")
	from, total, grace := 0, 0, false
	for {
		chunk, err := c.peekData(grace)
		if grace && len(chunk) == 0 {
			// Nothing more came: settle for the complete sequence we have.
			at, n, _, _ := findEOD(c.s.eods, buf, from, true)
			raw, tooBig = c.dataEnd(buf, at, n, tooBig)
			return raw, tooBig, nil
		}
		if err != nil {
			return nil, false, err
		}
		if drop > 0 && total+len(chunk) > drop {
			chunk = chunk[:drop-total]
		}
		start := len(buf)
		buf = append(buf, chunk...)
		at, n, resume, candidate := findEOD(c.s.eods, buf, from, false)
		if n > 0 {
			// The marker ends in this chunk: the sequences in use are such
			// that a match found after waiting for a longer one cannot end
			// before the bytes read so far (hence max, for safety).
			c.r.Discard(max(at+n-start, 0))
			raw, tooBig = c.dataEnd(buf, at, n, tooBig)
			return raw, tooBig, nil
		}
		c.r.Discard(len(chunk))
		total += len(chunk)
		from, grace = resume, candidate
		if drop > 0 && total >= drop {
			return nil, false, errDropped
		}
		if total > c.s.maxSize {
			// Keep only what a sequence may still start in.
			tooBig = true
			buf = append(buf[:0], buf[from:]...)
			from = 0
		}
	}
}

// peekData returns the bytes that can be read without waiting past the idle
// deadline (or, with grace, past the EOD grace), without consuming them. The
// reply to DATA is flushed before blocking.
func (c *session) peekData(grace bool) ([]byte, error) {
	if c.r.Buffered() == 0 {
		if err := c.w.Flush(); err != nil {
			return nil, err
		}
		if grace {
			c.dc.until = time.Now().Add(c.s.grace)
			defer func() { c.dc.until = time.Time{} }()
		}
		if _, err := c.r.Peek(1); err != nil {
			return nil, err
		}
	}
	return c.r.Peek(c.r.Buffered())
}

// dataEnd returns the message bytes in buf before the sequence buf[at:at+n]:
// everything up to its last leading line-break byte; nil if they exceed the
// size limit.
func (c *session) dataEnd(buf []byte, at, n int, tooBig bool) ([]byte, bool) {
	end := at
	for end < at+n && (buf[end] == '\r' || buf[end] == '\n') {
		end++
	}
	end = max(end, 2)
	if tooBig || end-2 > c.s.maxSize {
		return nil, true
	}
	return bytes.Clone(buf[2:end]), false
}

// findEOD looks in buf, from position from on, for the earliest end-of-data
// sequence, the longest one if several start there; n > 0 when found at
// buf[at:]. Otherwise resume is where the next search must start (the first
// position where a sequence is cut off by the end of buf), and candidate
// reports that a complete but possibly extensible sequence is waiting, which
// calls for a short wait rather than a blocking read. final treats the end
// of buf as the end of input.
func findEOD(eods []string, buf []byte, from int, final bool) (at, n, resume int, candidate bool) {
	resume = -1
	for i := from; i < len(buf); i++ {
		// Every sequence starts with a line break; skip to the next one.
		j := bytes.IndexAny(buf[i:], "\r\n")
		if j < 0 {
			break
		}
		i += j
		full, cut := matchAt(eods, buf[i:])
		cut = cut && !final
		if resume < 0 {
			if !cut && full > 0 {
				return i, full, 0, false
			}
			if cut {
				resume = i
			}
		}
		if resume >= 0 && full > 0 {
			candidate = true
			break
		}
	}
	if resume < 0 {
		resume = len(buf)
	}
	return -1, 0, resume, candidate
}

// matchAt returns the length of the longest of eods that b starts with, and
// whether b is a proper prefix of a longer one.
func matchAt(eods []string, b []byte) (full int, cut bool) {
	for _, e := range eods {
		if len(b) >= len(e) {
			if string(b[:len(e)]) == e && len(e) > full {
				full = len(e)
			}
		} else if string(b) == e[:len(b)] {
			cut = true
		}
	}
	return full, cut
}

// unstuff removes the transparency dot (RFC 5321 §4.5.2): the first
// character of a line is deleted if it is a period. A line starts after CRLF,
// or, in lenient mode, after a bare CR or LF as well, the way a lenient
// server splits lines. (The terminating "." line never reaches here.)
func unstuff(raw []byte, lenient bool) []byte {
	out := make([]byte, 0, len(raw))
	lineStart := true
	for i, b := range raw {
		if lineStart && b == '.' {
			lineStart = false
			continue
		}
		out = append(out, b)
		if lenient {
			lineStart = b == '\n' || b == '\r'
		} else {
			lineStart = b == '\n' && i > 0 && raw[i-1] == '\r'
		}
	}
	return out
}
