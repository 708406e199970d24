package verdict

import (
	"bytes"
	"encoding/json"
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
	b, err := Marshal(r)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.w.Write(b)
	return err
}

// Marshal renders a record as its JSON line (with the newline). HTML
// escaping is off: operators grep for "<user@example.com>", not for
// "\u003cuser@example.com\u003e".
func Marshal(r *Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
