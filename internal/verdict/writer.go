package verdict

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Writer appends records as JSON lines to a file or stdout. It is safe for
// concurrent use; each record is written with one write so lines never
// interleave. Reopen (on SIGHUP) lets logrotate move the file away.
type Writer struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File // nil for stdout or a caller's writer
}

// Open opens path for appending, or stdout when path is "-".
func Open(path string) (*Writer, error) {
	w := &Writer{path: path}
	if err := w.Reopen(); err != nil {
		return nil, err
	}
	return w, nil
}

// NewWriter writes to an arbitrary io.Writer (tests, the demo).
func NewWriter(out io.Writer) *Writer { return &Writer{w: out} }

// Reopen closes and reopens the file; a no-op for stdout and io.Writers.
func (w *Writer) Reopen() error {
	if w.path == "" || w.path == "-" {
		if w.w == nil {
			w.w = os.Stdout
		}
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("verdict log: %w", err)
	}
	w.mu.Lock()
	old := w.f
	w.f, w.w = f, f
	w.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Write is the one function that writes a verdict record. It fills TS and
// Schema, so callers cannot get them wrong.
func (w *Writer) Write(r *Record) error {
	if r.TS.IsZero() {
		r.TS = time.Now().UTC()
	}
	r.Schema = Schema
	// The line is rendered into a pooled buffer: every message writes a
	// record, and the bytes are only needed until the write returns (an
	// io.Writer must not keep them).
	bp := linePool.Get().(*[]byte)
	b, err := appendLine((*bp)[:0], r)
	if err == nil {
		err = w.write(b)
	}
	putLine(bp, b)
	return err
}

// write writes one line with one Write, under the lock, so that lines from
// concurrent records never interleave.
func (w *Writer) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(b)
	return err
}

// linePool holds buffers for Write. It stores pointers so that Put does not
// allocate to box a slice header.
var linePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 2048)
	return &b
}}

// maxPooledLine caps what goes back to linePool: one huge record (a spam
// run with thousands of recipients) should not pin its buffer for good.
const maxPooledLine = 64 << 10

// putLine returns b, which grew from *bp, to the pool.
func putLine(bp *[]byte, b []byte) {
	if cap(b) > maxPooledLine {
		return
	}
	*bp = b
	linePool.Put(bp)
}

// Marshal renders a record as its JSON line (with the newline). HTML
// escaping is off: operators grep for "<user@example.com>", not for
// "\u003cuser@example.com\u003e". The bytes are those of encoding/json;
// encode.go renders them without reflection.
func Marshal(r *Record) ([]byte, error) {
	// Rendering into a pooled buffer and copying the result out costs one
	// allocation of the right size, where growing a fresh slice would cost
	// a dozen.
	bp := linePool.Get().(*[]byte)
	b, err := appendLine((*bp)[:0], r)
	var out []byte
	if err == nil {
		out = bytes.Clone(b)
	}
	putLine(bp, b)
	return out, err
}

// Close closes the file, if any.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		return w.f.Close()
	}
	return nil
}
