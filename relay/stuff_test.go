package relay

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// reference is the stuffer's contract, a byte at a time: an LF not after
// a CR becomes CRLF, a dot that starts a line is doubled, and the message
// ends with ".\r\n" after a line break or "\r\n.\r\n" otherwise.
func reference(data []byte) []byte {
	var out []byte
	bol, cr := true, false
	for _, c := range data {
		if bol && c == '.' {
			out = append(out, '.')
		}
		bol = false
		if c == '\n' {
			if !cr {
				out = append(out, '\r')
			}
			bol = true
		}
		out = append(out, c)
		cr = c == '\r'
	}
	if bol && len(data) > 0 {
		return append(out, ".\r\n"...)
	}
	return append(out, "\r\n.\r\n"...)
}

// dotWriterOutput is what net/textproto's DotWriter, which the stuffer
// replaces, sends for data; for canonical data (every CR and LF in a
// CRLF) it must be the same.
func dotWriterOutput(t testing.TB, data []byte, chunks []int) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	w := textproto.NewWriter(bw).DotWriter()
	for _, p := range split(data, chunks) {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// canonical reports whether every CR and LF in data is part of a CRLF.
func canonical(data []byte) bool {
	return bytes.Count(data, []byte("\r")) == bytes.Count(data, []byte("\r\n")) &&
		bytes.Count(data, []byte("\n")) == bytes.Count(data, []byte("\r\n"))
}

// stufferOutput is what Txn.transfer sends: the stuffer's output, then
// "\r\n" and the dot as the DotWriter it closes adds them.
func stufferOutput(t testing.TB, data []byte, chunks []int) []byte {
	t.Helper()
	var buf bytes.Buffer
	s := newStuffer(&buf)
	for _, p := range split(data, chunks) {
		if n, err := s.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	endsLine, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	// What Txn.transfer has the DotWriter add: the line break written to it
	// and the ".\r\n" of its Close, or, when the message did not end a
	// line, the "\r\n.\r\n" of its Close alone. The same bytes.
	_ = endsLine
	buf.WriteString("\r\n.\r\n")
	return buf.Bytes()
}

// split cuts data at the given sizes, cycling through them.
func split(data []byte, sizes []int) [][]byte {
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(sizes) > 0 && sizes[i%len(sizes)] > 0 && sizes[i%len(sizes)] < n {
			n = sizes[i%len(sizes)]
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func TestStuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want string // on the wire, terminator included
	}{
		{"plain", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{"leading dot", ".a\r\n", "..a\r\n.\r\n"},
		{"dots at line starts", "x\r\n.\r\n..y\r\nz.\r\n", "x\r\n..\r\n...y\r\nz.\r\n.\r\n"},
		{"no final CRLF", "a\r\nb", "a\r\nb\r\n.\r\n"},
		{"ends with a bare CR", "a\r", "a\r\r\n.\r\n"},
		{"ends with a bare LF", "a\n", "a\r\n.\r\n"},
		{"CR CR LF", "x\r\r\n.\r\n", "x\r\r\n..\r\n.\r\n"},
		{"bare LF becomes CRLF", "a\nb\n.c\n", "a\r\nb\r\n..c\r\n.\r\n"},
		{"bare CR kept", "a\rb\r\n", "a\rb\r\n.\r\n"},
		{"only CRLF", "\r\n", "\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunks := range [][]int{nil, {1}, {2, 3}, {7}} {
				if got := string(stufferOutput(t, []byte(tc.data), chunks)); got != tc.want {
					t.Errorf("chunks %v: %q, want %q", chunks, got, tc.want)
				}
				if ref := string(reference([]byte(tc.data))); ref != tc.want {
					t.Errorf("reference: %q, want %q (the table is wrong)", ref, tc.want)
				}
			}
		})
	}
}

// FuzzStuffer: however the data is cut, the stuffer and the terminator
// Txn.transfer adds send what the reference says, and for canonical data
// exactly what net/textproto's DotWriter sent before it.
func FuzzStuffer(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", ".\r\n", "\n.\n", "\r.\r", "x\r\r\n.\r\n", "..", "\r\n\r\n.", "a\rb"} {
		f.Add([]byte(s), byte(3), byte(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, c1, c2 byte) {
		if len(data) == 0 {
			return // a message is never empty: the gateway's header comes first
		}
		chunks := []int{int(c1), int(c2)}
		got := stufferOutput(t, data, chunks)
		if want := reference(data); !bytes.Equal(got, want) {
			t.Fatalf("stuffer %q\nreference %q", got, want)
		}
		if canonical(data) {
			if want := dotWriterOutput(t, data, chunks); !bytes.Equal(got, want) {
				t.Fatalf("stuffer %q\nDotWriter %q", got, want)
			}
		}
	})
}

// TestChunkWriter: the writer below never gets a byte past the chunk, and
// gets its last byte only from finish, once the chunk is exactly full.
func TestChunkWriter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int64
		writes  []string
		werr    bool   // a write fails
		ferr    bool   // finish fails
		written string // what reached the writer below
	}{
		{"exact", 6, []string{"ab", "cdef"}, false, false, "abcdef"},
		{"exact, one write", 3, []string{"abc"}, false, false, "abc"},
		{"empty", 0, nil, false, false, ""},
		{"short", 6, []string{"ab", "cd"}, false, true, "abcd"},
		{"long in one write", 3, []string{"abcd"}, true, true, ""},
		{"long after full", 3, []string{"abc", "d"}, true, true, "ab"},
		{"long after part", 4, []string{"ab", "cde"}, true, true, "ab"},
		{"empty writes", 2, []string{"", "ab", ""}, false, false, "ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var below bytes.Buffer
			cw := &chunkWriter{w: &below, left: tc.size}
			var werr error
			for _, w := range tc.writes {
				buf := []byte(w)
				n, err := cw.Write(buf)
				if err == nil && n != len(w) {
					t.Errorf("Write(%q) = %d, nil", w, n)
				}
				clear(buf) // the caller reuses its buffer
				if err != nil {
					werr = err
					break
				}
			}
			if (werr != nil) != tc.werr {
				t.Errorf("write error %v, want one: %v", werr, tc.werr)
			}
			if werr == nil {
				if err := cw.finish(); (err != nil) != tc.ferr {
					t.Errorf("finish: %v, want an error: %v", err, tc.ferr)
				}
			}
			if below.String() != tc.written {
				t.Errorf("written %q, want %q", below.String(), tc.written)
			}
		})
	}
}
