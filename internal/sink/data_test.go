package sink

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDotUnstuffing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lenient  bool
		wire     string // after 354, terminator included
		raw, out string
	}{
		{"leading dots", false, "..a\r\n...b\r\n.c\r\n.\r\n", "..a\r\n...b\r\n.c\r\n", ".a\r\n..b\r\nc\r\n"},
		{"empty message", false, ".\r\n", "", ""},
		{"dot line", false, "a\r\n..\r\n.\r\n", "a\r\n..\r\n", "a\r\n.\r\n"},
		{"dots inside lines", false, "a.b\r\na..\r\n.\r\n", "a.b\r\na..\r\n", "a.b\r\na..\r\n"},
		{"bare LF is no line start", false, "a\n..b\r\n.\r\n", "a\n..b\r\n", "a\n..b\r\n"},
		{"lenient bare LF", true, "a\n..b\r\n.\r\n", "a\n..b\r\n", "a\n.b\r\n"},
		{"lenient bare CR", true, "a\r..b\r\n.\r\n", "a\r..b\r\n", "a\r.b\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Config{Lenient: tc.lenient})
			dialogue(t, s.Addr(), []step{
				{"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n", []int{250, 250, 250, 354}},
				{tc.wire, []int{250}},
				{"NOOP\r\n", []int{250}},
			})
			ms := s.Messages()
			if len(ms) != 1 || string(ms[0].Raw) != tc.raw || string(ms[0].Data) != tc.out {
				t.Errorf("got %+v, want raw %q data %q", ms, tc.raw, tc.out)
			}
		})
	}
}

// smuggled is a second transaction hidden in message data.
const smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nSubject: evil\r\n\r\nevil\r\n.\r\n"

func TestStrictIgnoresLenientEODs(t *testing.T) {
	for _, eod := range LenientEODs {
		t.Run(strconv.Quote(eod), func(t *testing.T) {
			s := start(t, Config{})
			payload := "Subject: s\r\n\r\nbody" + eod + strings.TrimSuffix(smuggled, ".\r\n")
			dialogue(t, s.Addr(), []step{
				{"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n", []int{250, 250, 250, 354}},
				// One final reply, and the next reply answers NOOP: the
				// smuggled commands were data, not commands.
				{payload + ".\r\n", []int{250}},
				{"NOOP\r\n", []int{250}},
			})
			ms := s.Messages()
			if len(ms) != 1 || string(ms[0].Raw) != payload ||
				!bytes.Contains(ms[0].Data, []byte("MAIL FROM:<evil@x.test>")) {
				t.Errorf("got %+v", ms)
			}
		})
	}
}

func TestLenientSmuggling(t *testing.T) {
	for _, eod := range LenientEODs {
		t.Run(strconv.Quote(eod), func(t *testing.T) {
			s := start(t, Config{Lenient: true})
			dialogue(t, s.Addr(), []step{
				{"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n", []int{250, 250, 250, 354}},
				{"Subject: s\r\n\r\nbody" + eod + smuggled, []int{250, 250, 250, 354, 250}},
				{"QUIT\r\n", []int{221}},
			})
			ms := s.Accepted()
			if len(ms) != 2 {
				t.Fatalf("got %d messages: %+v", len(ms), ms)
			}
			breaks := eod[:strings.IndexAny(eod, ".\x00")]
			if got, want := string(ms[0].Raw), "Subject: s\r\n\r\nbody"+breaks; got != want {
				t.Errorf("first message %q, want %q", got, want)
			}
			if m := ms[1]; m.From != "evil@x.test" || string(m.Data) != "Subject: evil\r\n\r\nevil\r\n" || m.Conn != ms[0].Conn {
				t.Errorf("smuggled message %+v", m)
			}
		})
	}
}

// TestLenientSplitEOD checks the short wait for the rest of a sequence that
// a longer one could extend: "\r\n.\r" then "\n" is <CRLF>.<CRLF>, but
// "\r\n.\r" alone must still be answered. Each half sets the wait so that
// scheduling delays cannot change the outcome.
func TestLenientSplitEOD(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		rest  string // sent after "a\r\n.\r" and a pause
		want  []int
	}{
		// A "\n" left over would be an empty command: 500, not 250.
		{"completed", 10 * time.Second, "\nNOOP\r\n", []int{250, 250}},
		{"alone", 50 * time.Millisecond, "", []int{250}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Config{Lenient: true, eodGrace: tc.grace})
			c := dial(t, s.Addr())
			c.expect(220)
			c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
			for _, code := range []int{250, 250, 250, 354} {
				c.expect(code)
			}
			c.send("a\r\n.\r")
			time.Sleep(20 * time.Millisecond) // so that the sink reads it alone
			c.send(tc.rest)
			for _, code := range tc.want {
				c.expect(code)
			}
			c.send("QUIT\r\n")
			c.expect(221)
			if ms := s.Messages(); len(ms) != 1 || string(ms[0].Raw) != "a\r\n" {
				t.Errorf("got %+v", ms)
			}
		})
	}
}

func TestSizeLimitData(t *testing.T) {
	s := start(t, Config{Extensions: []string{"SIZE 100"}})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	line := strings.Repeat("x", 78) + "\r\n"
	c.send(strings.Repeat(line, 3))
	time.Sleep(10 * time.Millisecond) // likely a second read, past the limit
	c.send(strings.Repeat(line, 3) + ".\r\nNOOP\r\n")
	c.expect(552)
	c.expect(250)
	ms := s.Messages()
	if len(ms) != 1 || ms[0].Accepted || ms[0].Data != nil || ms[0].Raw != nil {
		t.Errorf("got %+v", ms)
	}
}
