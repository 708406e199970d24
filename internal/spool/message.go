package spool

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"

	"github.com/mxgate/mxgate/policy"
)

// maxHeader caps Message.Header: enough for any real header section, small
// enough to hold for every session.
const maxHeader = 256 << 10

// fileBufSize batches the small writes normalisation produces (a line, then
// a CRLF) into fewer system calls once a message is in a file.
const fileBufSize = 32 << 10

var errClosed = errors.New("spool: message is closed")

// sink stores canonical bytes, in memory up to MemLimit and in a temp file
// beyond it.
type sink struct {
	opt      Options
	size     int64
	lastLF   bool // the last byte stored was '\n', so the data ends in CRLF
	mem      []byte
	f        *os.File
	bw       *bufio.Writer
	unlinked bool
}

func (s *sink) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if s.opt.MaxSize > 0 && s.size+int64(len(b)) > s.opt.MaxSize {
		return policy.ErrTooLarge
	}
	s.size += int64(len(b))
	s.lastLF = b[len(b)-1] == '\n'
	if s.f == nil {
		if need := int64(len(s.mem)) + int64(len(b)); need <= s.opt.MemLimit {
			s.grow(int(need))
			s.mem = append(s.mem, b...)
			return nil
		}
		if err := s.spill(); err != nil {
			return err
		}
	}
	_, err := s.bw.Write(b)
	return err
}

// grow makes room for need bytes without going past MemLimit: append's own
// growth could allocate up to twice the limit for every session.
func (s *sink) grow(need int) {
	if need <= cap(s.mem) {
		return
	}
	n := int(min(int64(max(2*cap(s.mem), need, 4096)), s.opt.MemLimit))
	m := make([]byte, len(s.mem), n)
	copy(m, s.mem)
	s.mem = m
}

// spill moves the message to a temp file. Where the system allows it the
// file is unlinked at once, so that not even a crash leaves message content
// behind; the open descriptor keeps it readable until Close.
func (s *sink) spill() error {
	f, err := os.CreateTemp(s.opt.TempDir, "mxgate-*.eml") // mode 0600
	if err != nil {
		return err
	}
	s.f = f
	if runtime.GOOS != "windows" && os.Remove(f.Name()) == nil {
		s.unlinked = true
	}
	s.bw = bufio.NewWriterSize(f, fileBufSize)
	_, err = s.bw.Write(s.mem)
	s.mem = nil
	return err
}

// discard throws away whatever was stored, after a failed read.
func (s *sink) discard() {
	if s.f != nil {
		s.f.Close()
		if !s.unlinked {
			os.Remove(s.f.Name())
		}
	}
	*s = sink{}
}

// message hands the stored bytes over as a Message.
func (s *sink) message() (*Message, error) {
	m := &Message{size: s.size, mem: s.mem, f: s.f, unlinked: s.unlinked}
	if s.f != nil {
		if err := s.bw.Flush(); err != nil {
			s.discard()
			return nil, err
		}
		hdr, err := fileHeader(s.f, s.size)
		if err != nil {
			s.discard()
			return nil, err
		}
		m.header = hdr
	} else {
		n := headerLen(s.mem, true)
		m.header = s.mem[:n:n]
	}
	*s = sink{}
	return m, nil
}

// fileHeader reads the header section from the start of the file: a small
// read first, since header sections are usually a few KiB, then the most
// Header may return.
func fileHeader(f *os.File, size int64) ([]byte, error) {
	buf := make([]byte, min(16<<10, size))
	if _, err := f.ReadAt(buf, 0); err != nil {
		return nil, err
	}
	if headerEnd(buf) < 0 && int64(len(buf)) < size {
		buf = make([]byte, min(maxHeader, size))
		if _, err := f.ReadAt(buf, 0); err != nil {
			return nil, err
		}
	}
	return bytes.Clone(buf[:headerLen(buf, int64(len(buf)) == size)]), nil
}

// headerEnd returns the length of the header section at the start of b
// (RFC 5322 §2.1), up to and including the empty line that ends it, or -1
// if b has no empty line within maxHeader.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, crlf) {
		return len(crlf)
	}
	if i := bytes.Index(b[:min(len(b), maxHeader)], []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// headerLen is headerEnd for Message.Header. complete says b is the whole
// message, so that a message without a body is all header when it fits.
// Otherwise it stops after the last line end within maxHeader, so that a
// header parser never sees a partial line.
func headerLen(b []byte, complete bool) int {
	if n := headerEnd(b); n >= 0 {
		return n
	}
	if complete && len(b) <= maxHeader {
		return len(b)
	}
	if i := bytes.LastIndex(b[:min(len(b), maxHeader)], crlf); i >= 0 {
		return i + len(crlf)
	}
	return 0
}

// Message is a buffered, canonical message.
type Message struct {
	size     int64
	mem      []byte
	f        *os.File
	unlinked bool
	header   []byte
	closed   bool
}

// Size returns the number of canonical bytes stored.
func (m *Message) Size() int64 { return m.size }

// InFile reports whether the message spilled to a temp file.
func (m *Message) InFile() bool { return m.f != nil }

// Header returns the header section, up to and including the empty line
// that ends it, or the whole message if it has no body. It is at most 256
// KiB: a longer header section is cut after the last complete line that
// fits. The slice is shared and must not be modified.
func (m *Message) Header() []byte { return m.header }

// Open returns a reader over the whole message from the start. It may be
// called any number of times, and the readers may be used concurrently
// with each other, but not after Close.
func (m *Message) Open() io.Reader {
	switch {
	case m.closed:
		return errReader{errClosed}
	case m.f != nil:
		return io.NewSectionReader(m.f, 0, m.size)
	default:
		return bytes.NewReader(m.mem)
	}
}

// Close releases the message, removing its temp file. It is idempotent.
func (m *Message) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	m.mem, m.header = nil, nil
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	if !m.unlinked {
		if rerr := os.Remove(m.f.Name()); err == nil {
			err = rerr
		}
	}
	return err
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
