package sink

import (
	"strconv"
	"strings"
	"testing"
)

// TestBDAT: with CHUNKING listed the sink takes BDAT chunks (RFC 3030) as
// they are, a dot at a line start and a bare CR included, ends the message
// on LAST, and never reads chunk bytes as commands.
func TestBDAT(t *testing.T) {
	exts := append(DefaultExtensions(), "CHUNKING")
	s := start(t, Config{Extensions: exts})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO client.test\r\n")
	if got := strings.Join(c.expect(250), "\n"); !strings.Contains(got, "CHUNKING") {
		t.Fatalf("EHLO reply lacks CHUNKING: %q", got)
	}
	// A chunk before MAIL is read and refused: "QUIT\r\n" inside it is
	// data, not a command.
	c.send("BDAT 6\r\nQUIT\r\n")
	c.expect(503)
	first := "Subject: x\r\n\r\n.dot\r\n"
	second := "bare\rCR\r\n.\r\n"
	c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n")
	c.expect(250)
	c.expect(250)
	c.send("BDAT " + strconv.Itoa(len(first)) + "\r\n" + first)
	if got := c.expect(250); !strings.Contains(got[0], strconv.Itoa(len(first))+" octets") {
		t.Errorf("reply to a middle chunk: %q", got)
	}
	c.send("DATA\r\n")
	c.expect(503) // no DATA in a transaction that used BDAT
	c.send("BDAT " + strconv.Itoa(len(second)) + " LAST\r\n" + second)
	id := queuedID(t, c.expect(250)[0])
	// A BDAT chunk of 0 octets with LAST ends a message too.
	c.send("MAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\nBDAT 0 LAST\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	// Too big: read to its end, refused, and the session goes on.
	big := strings.Repeat("x", 100)
	small := start(t, Config{Extensions: []string{"CHUNKING", "SIZE 50"}})
	d := dial(t, small.Addr())
	d.expect(220)
	d.send("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\nBDAT 100 LAST\r\n" + big + "NOOP\r\n")
	d.expect(250)
	d.expect(250)
	d.expect(250)
	d.expect(552)
	d.expect(250)
	// A size that cannot be parsed leaves the chunk's end unknown.
	d.send("BDAT x LAST\r\n")
	d.expect(501)
	d.closed()

	c.send("QUIT\r\n")
	c.expect(221)
	ms := s.Messages()
	if len(ms) != 2 {
		t.Fatalf("got %d messages, want 2", len(ms))
	}
	if m := ms[0]; m.ID != id || !m.BDAT || string(m.Data) != first+second || string(m.Raw) != first+second || !m.Accepted {
		t.Errorf("message 1: %+v", m)
	}
	if m := ms[1]; !m.BDAT || m.Data == nil || len(m.Data) != 0 || !m.Accepted {
		t.Errorf("message 2: %+v", m)
	}
	if ms := small.Messages(); len(ms) != 1 || ms[0].Accepted || ms[0].Data != nil {
		t.Errorf("too big: %+v", ms)
	}
}

// TestBDATNotOffered: without CHUNKING, BDAT is an unknown command.
func TestBDATNotOffered(t *testing.T) {
	s := start(t, Config{})
	dialogue(t, s.Addr(), []step{{"EHLO c\r\n", []int{250}}, {"BDAT 0 LAST\r\n", []int{502}}})
}
