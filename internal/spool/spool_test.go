package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mxgate/mxgate/policy"
)

var (
	normalize = Options{MemLimit: 1 << 20, BareNewline: NormalizeBareNewline, NUL: StripNUL}
	reject    = Options{MemLimit: 1 << 20}
)

// canonical reports whether every CR is followed by LF, every LF is preceded
// by CR and there is no NUL.
func canonical(b []byte) bool {
	for i, c := range b {
		switch {
		case c == 0:
			return false
		case c == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			return false
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			return false
		}
	}
	return true
}

// withFinalCRLF is what Read makes of canonical input.
func withFinalCRLF(b []byte) []byte {
	if len(b) == 0 || bytes.HasSuffix(b, crlf) {
		return b
	}
	return append(bytes.Clone(b), crlf...)
}

func readAll(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := io.ReadAll(m.Open())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readString reads in with opt through r (nil: whole), returning the
// stored bytes.
func readString(t testing.TB, in string, opt Options, wrap func(io.Reader) io.Reader) (string, error) {
	t.Helper()
	var r io.Reader = strings.NewReader(in)
	if wrap != nil {
		r = wrap(r)
	}
	m, err := Read(r, opt)
	if err != nil {
		return "", err
	}
	defer m.Close()
	b := readAll(t, m)
	if int64(len(b)) != m.Size() {
		t.Fatalf("Size() = %d, read %d bytes", m.Size(), len(b))
	}
	return string(b), nil
}

var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", nil},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
}

func TestCanonicalise(t *testing.T) {
	tests := []struct {
		name, in, want string // want: Normalize+Strip result
		rejectErr      error
	}{
		{"empty", "", "", nil},
		{"clean", "a\r\nb\r\n", "a\r\nb\r\n", nil},
		{"no final line end", "a\r\nb", "a\r\nb\r\n", nil},
		{"bare LF", "a\nb\n", "a\r\nb\r\n", policy.ErrBareNewline},
		{"bare CR", "a\rb\r", "a\r\nb\r\n", policy.ErrBareNewline},
		{"CR CR LF is two line ends", "a\r\r\nb\r\n", "a\r\n\r\nb\r\n", policy.ErrBareNewline},
		{"LF CR is two line ends", "a\n\rb", "a\r\n\r\nb\r\n", policy.ErrBareNewline},
		{"CR at the very end", "a\r", "a\r\n", policy.ErrBareNewline},
		{"only a CR", "\r", "\r\n", policy.ErrBareNewline},
		{"only a LF", "\n", "\r\n", policy.ErrBareNewline},
		{"only CRLF", "\r\n", "\r\n", nil},
		{"NUL", "a\x00b\r\n", "ab\r\n", policy.ErrNUL},
		{"only NUL", "\x00", "", policy.ErrNUL},
		{"NUL splits CR LF", "a\r\x00\nb\r\n", "a\r\n\r\nb\r\n", policy.ErrBareNewline},
		{"NUL before CRLF", "a\x00\r\n", "a\r\n", policy.ErrNUL},
		{"8-bit passes", "\xff\xfe\r\n", "\xff\xfe\r\n", nil},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got, err := readString(t, tt.in, normalize, rd.wrap)
				if err != nil || got != tt.want {
					t.Errorf("normalize: got %q, %v; want %q", got, err, tt.want)
				}
				got, err = readString(t, tt.in, reject, rd.wrap)
				if err != tt.rejectErr {
					t.Errorf("reject: got %q, %v; want %v", got, err, tt.rejectErr)
				}
				if err == nil && got != tt.want {
					t.Errorf("reject: got %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// TestSmuggling embeds the sequences that end the data on some receiver but
// not on go-smtp: the output must be canonical, so the backend sees the
// same line structure we checked.
func TestSmuggling(t *testing.T) {
	tests := []struct {
		seq  string
		want error // in the reject modes
	}{
		{"\n.\n", policy.ErrBareNewline},
		{"\n.\r\n", policy.ErrBareNewline},
		{"\r.\r", policy.ErrBareNewline},
		{"\r\n.\r", policy.ErrBareNewline},
		{"\r\n.\n", policy.ErrBareNewline},
		{"\r.\r\n", policy.ErrBareNewline},
		{"\n.\r", policy.ErrBareNewline},
		{"\r.\n", policy.ErrBareNewline},
		{"\r\n\x00.\r\n", policy.ErrNUL},
		{"\r\n.\x00\r\n", policy.ErrNUL},
		{"\n\n.\r\n", policy.ErrBareNewline},
	}
	for _, tt := range tests {
		in := "From: a@evil.test\r\nSubject: x\r\n\r\nbody" + tt.seq +
			"MAIL FROM:<a@evil.test>\r\nRCPT TO:<victim@ours.test>\r\nDATA\r\nFrom: ceo@ours.test\r\n\r\nsmuggled\r\n"
		for _, rd := range readers {
			t.Run(fmt.Sprintf("%q/%s", tt.seq, rd.name), func(t *testing.T) {
				if _, err := readString(t, in, reject, rd.wrap); err != tt.want {
					t.Errorf("reject: %v, want %v", err, tt.want)
				}
				got, err := readString(t, in, normalize, rd.wrap)
				if err != nil {
					t.Fatal(err)
				}
				if !canonical([]byte(got)) {
					t.Errorf("normalize: %q is not canonical", got)
				}
				if !strings.HasPrefix(got, "From: a@evil.test\r\nSubject: x\r\n\r\nbody\r\n") {
					t.Errorf("normalize: %q lost its start", got)
				}
			})
		}
	}
}

func TestMemLimit(t *testing.T) {
	const limit = 100
	line := strings.Repeat("x", limit-2)
	tests := []struct {
		name   string
		in     string
		inFile bool
	}{
		{"exactly MemLimit", line + "\r\n", false},
		{"MemLimit after the final CRLF", line, false},
		{"MemLimit after normalising", line + "\n", false},
		{"one over", line + "x\r\n", true},
		{"one over after the final CRLF", line + "x", true},
		{"far over", strings.Repeat(line+"\r\n", 1000), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := normalize
			opt.MemLimit, opt.TempDir = limit, t.TempDir()
			m, err := Read(strings.NewReader(tt.in), opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.InFile() != tt.inFile {
				t.Errorf("InFile() = %v (size %d), want %v", m.InFile(), m.Size(), tt.inFile)
			}
			if !m.InFile() && int64(cap(m.mem)) > limit {
				t.Errorf("memory buffer has capacity %d beyond MemLimit %d", cap(m.mem), limit)
			}
			if got, want := string(readAll(t, m)), string(withFinalCRLF([]byte(strings.ReplaceAll(tt.in, "x\n", "x\r\n")))); got != want {
				t.Errorf("content differs: got %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestZeroMemLimit(t *testing.T) {
	opt := normalize
	opt.MemLimit, opt.TempDir = 0, t.TempDir()
	for in, inFile := range map[string]bool{"": false, "a\r\n": true} {
		m, err := Read(strings.NewReader(in), opt)
		if err != nil {
			t.Fatal(err)
		}
		if m.InFile() != inFile || string(readAll(t, m)) != in {
			t.Errorf("%q: InFile() = %v, want %v", in, m.InFile(), inFile)
		}
		m.Close()
	}
}

func TestMaxSize(t *testing.T) {
	const max = 100
	line := strings.Repeat("x", max-2)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"exactly MaxSize", line + "\r\n", nil},
		{"one over", line + "x\r\n", policy.ErrTooLarge},
		{"final CRLF counts", line + "x", policy.ErrTooLarge},
		{"normalised CRLF counts", line + "x\n", policy.ErrTooLarge},
		{"stripped NUL does not count", line + "\x00\x00\r\n", nil},
		{"far over", strings.Repeat(line, 100), policy.ErrTooLarge},
	}
	for _, tt := range tests {
		for _, memLimit := range []int64{0, 1 << 20} {
			t.Run(fmt.Sprintf("%s/MemLimit=%d", tt.name, memLimit), func(t *testing.T) {
				opt := normalize
				opt.MaxSize, opt.MemLimit, opt.TempDir = max, memLimit, t.TempDir()
				m, err := Read(strings.NewReader(tt.in), opt)
				if err != tt.want {
					t.Fatalf("Read: %v, want %v", err, tt.want)
				}
				if err == nil {
					if m.Size() != max {
						t.Errorf("Size() = %d, want %d", m.Size(), max)
					}
					m.Close()
				}
			})
		}
	}
}

func TestOpenTwice(t *testing.T) {
	in := strings.Repeat("Line of text\r\n", 5000)
	for _, memLimit := range []int64{0, 1 << 20} {
		opt := normalize
		opt.MemLimit, opt.TempDir = memLimit, t.TempDir()
		m, err := Read(strings.NewReader(in), opt)
		if err != nil {
			t.Fatal(err)
		}
		r1 := m.Open()
		head := make([]byte, 10)
		if _, err := io.ReadFull(r1, head); err != nil {
			t.Fatal(err)
		}
		// A second reader starts from the beginning, whatever the first did.
		if a, b := readAll(t, m), readAll(t, m); string(a) != in || string(b) != in {
			t.Errorf("MemLimit %d: Open() readers differ from the input", memLimit)
		}
		rest, err := io.ReadAll(r1)
		if err != nil || string(head)+string(rest) != in {
			t.Errorf("MemLimit %d: first reader disturbed: %v", memLimit, err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := io.ReadAll(m.Open()); !errors.Is(err, errClosed) {
			t.Errorf("Open after Close: %v, want errClosed", err)
		}
	}
}

func TestHeader(t *testing.T) {
	big := strings.Repeat("X-Filler: "+strings.Repeat("f", 100)+"\r\n", 3000) // ~330 KiB
	cut := big[:strings.LastIndex(big[:maxHeader], "\r\n")+2]
	mid := strings.Repeat("X-Filler: "+strings.Repeat("f", 100)+"\r\n", 300) // ~33 KiB
	long := strings.Repeat("h", maxHeader+10)
	tests := []struct{ name, in, want string }{
		{"with body", "From: a\r\nTo: b\r\n\r\nbody\r\n\r\nmore\r\n", "From: a\r\nTo: b\r\n\r\n"},
		{"header only", "From: a\r\nTo: b\r\n", "From: a\r\nTo: b\r\n"},
		{"header only, no final CRLF", "From: a\r\nTo: b", "From: a\r\nTo: b\r\n"},
		{"empty header section", "\r\nbody\r\n", "\r\n"},
		{"bare LF blank line", "From: a\n\nbody\n", "From: a\r\n\r\n"},
		{"empty message", "", ""},
		{"header beyond 16 KiB", mid + "\r\nbody\r\n", mid + "\r\n"},
		{"header beyond 256 KiB", big + "\r\nbody\r\n", cut},
		{"header-only beyond 256 KiB", big, cut},
		{"line beyond 256 KiB", long, ""},
	}
	for _, tt := range tests {
		for _, memLimit := range []int64{0, 1 << 20} {
			t.Run(fmt.Sprintf("%s/MemLimit=%d", tt.name, memLimit), func(t *testing.T) {
				opt := normalize
				opt.MemLimit, opt.TempDir = memLimit, t.TempDir()
				m, err := Read(strings.NewReader(tt.in), opt)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if got := string(m.Header()); got != tt.want {
					t.Errorf("Header() = %d bytes %.40q..., want %d bytes %.40q...", len(got), got, len(tt.want), tt.want)
				}
			})
		}
	}
}

// errAfter returns data, then err.
type errAfter struct {
	data string
	err  error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

type smtpishError struct{ code int }

func (e *smtpishError) Error() string { return fmt.Sprint(e.code) }

func TestReaderErrors(t *testing.T) {
	custom := &smtpishError{552}
	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"unexpected EOF", &errAfter{"partial\r\n", io.ErrUnexpectedEOF}, io.ErrUnexpectedEOF},
		{"typed error", &errAfter{"partial", custom}, custom},
		{"error with the data", iotest.DataErrReader(&errAfter{"abc", io.ErrClosedPipe}), io.ErrClosedPipe},
		{"policy error first", &errAfter{"a\nb", io.ErrUnexpectedEOF}, policy.ErrBareNewline},
		{"no progress", iotest.ErrReader(nil), io.ErrNoProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Read(tt.r, reject)
			if err != tt.want || m != nil {
				t.Fatalf("Read = %v, %v; want %v", m, err, tt.want)
			}
		})
	}
	var se *smtpishError
	if _, err := Read(&errAfter{"x", custom}, reject); !errors.As(err, &se) || se.code != 552 {
		t.Errorf("errors.As lost the reader's error: %v", err)
	}
}

// TestNoTempFileLeft checks the temp directory after each way a spilled
// message can end.
func TestNoTempFileLeft(t *testing.T) {
	big := strings.Repeat("a line of text\r\n", 10000)
	tests := []struct {
		name string
		r    func() io.Reader
		opt  Options
		want error
	}{
		{"success and Close", func() io.Reader { return strings.NewReader(big) }, reject, nil},
		{"too large", func() io.Reader { return strings.NewReader(big) }, Options{MaxSize: int64(len(big)) - 1}, policy.ErrTooLarge},
		{"reader error", func() io.Reader { return &errAfter{big, io.ErrUnexpectedEOF} }, reject, io.ErrUnexpectedEOF},
		{"bare newline", func() io.Reader { return strings.NewReader(big + "\n") }, reject, policy.ErrBareNewline},
		{"NUL", func() io.Reader { return strings.NewReader(big + "\x00") }, reject, policy.ErrNUL},
		{"pending CR at EOF", func() io.Reader { return strings.NewReader(big + "\r") }, reject, policy.ErrBareNewline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opt := tt.opt
			opt.MemLimit, opt.TempDir = 1000, dir
			m, err := Read(tt.r(), opt)
			if err != tt.want {
				t.Fatalf("Read: %v, want %v", err, tt.want)
			}
			if m != nil {
				if !m.InFile() {
					t.Fatal("message did not spill")
				}
				fi, err := m.f.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if perm := fi.Mode().Perm(); perm != 0o600 {
					t.Errorf("temp file mode %v, want 0600", perm)
				}
				if !strings.HasPrefix(fi.Name(), "mxgate-") || !strings.HasSuffix(fi.Name(), ".eml") {
					t.Errorf("temp file name %q", fi.Name())
				}
				if string(readAll(t, m)) != big {
					t.Error("content differs")
				}
				if err := m.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestBadTempDir(t *testing.T) {
	opt := reject
	opt.MemLimit, opt.TempDir = 1, t.TempDir()+"/missing"
	if m, err := Read(strings.NewReader("a\r\nb\r\n"), opt); err == nil || m != nil {
		t.Fatalf("Read = %v, %v; want an error", m, err)
	}
}

func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"", "\r\n", "a\r\nb\r\n", "a\nb", "a\rb", "\r\r\n", "\n\r", "a\x00b", "\r\x00\n",
		"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<a@b>\r\n", "x\r\n.\r\nQUIT\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Read(bytes.NewReader(in), normalize)
		if err != nil {
			t.Fatalf("normalize: %v", err)
		}
		out := readAll(t, m)
		m.Close()
		if !canonical(out) {
			t.Fatalf("normalize(%q) = %q, not canonical", in, out)
		}
		if canonical(in) && !bytes.Equal(out, withFinalCRLF(in)) {
			t.Fatalf("normalize changed canonical %q to %q", in, out)
		}
		m, err = Read(iotest.OneByteReader(bytes.NewReader(in)), normalize)
		if err != nil {
			t.Fatal(err)
		}
		if one := readAll(t, m); !bytes.Equal(one, out) {
			t.Fatalf("normalize(%q) depends on chunking: %q vs %q", in, one, out)
		}
		m.Close()

		m, err = Read(bytes.NewReader(in), reject)
		switch {
		case err == nil:
			if !canonical(in) {
				t.Fatalf("reject accepted %q", in)
			}
			if got := readAll(t, m); !bytes.Equal(got, withFinalCRLF(in)) {
				t.Fatalf("reject changed %q to %q", in, got)
			}
			m.Close()
		case err == policy.ErrBareNewline || err == policy.ErrNUL:
			if canonical(in) {
				t.Fatalf("reject refused canonical %q: %v", in, err)
			}
		default:
			t.Fatalf("reject: %v", err)
		}
	})
}

func BenchmarkRead(b *testing.B) {
	line := "This is a line of an ordinary message body, about 76 octets long....\r\n"
	for _, size := range []int{4 << 10, 1 << 20} {
		msg := []byte(strings.Repeat(line, size/len(line)+1)[:size-2] + "\r\n")
		for _, tc := range []struct {
			name string
			opt  Options
		}{
			{"memory", Options{MemLimit: 2 << 20, BareNewline: NormalizeBareNewline, NUL: StripNUL}},
			{"file", Options{MemLimit: 0, TempDir: b.TempDir(), BareNewline: NormalizeBareNewline, NUL: StripNUL}},
		} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, tc.name), func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					m, err := Read(bytes.NewReader(msg), tc.opt)
					if err != nil {
						b.Fatal(err)
					}
					m.Close()
				}
			})
		}
	}
}
