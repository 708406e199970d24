package server

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

func TestNonSMTPLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"GET / HTTP/1.1", true},
		{"POST /login HTTP/1.0", true},
		{"HEAD / HTTP/1.1", true},
		{"PUT /x HTTP/1.1", true},
		{"OPTIONS * HTTP/1.1", true},
		{"CONNECT mx.example.test:25 HTTP/1.0", true},
		{"DELETE /x HTTP/1.1", true},
		{"PATCH /x HTTP/1.1", true},
		{"Host: x", true},
		{"User-Agent: y", true},
		{"Content-Length:\t0", true},
		{"EHLO x", false},
		{"HELO x", false},
		{"QUIT", false},
		{"NOOP", false},
		{"RSET", false},
		{"MAIL FROM:<a@b>", false},
		{"MAIL FROM: <a@b>", false},
		{"RCPT TO:<b@c>", false},
		{"STARTTLS", false},
		{"HEADER x", false}, // not "HEAD "
		{"get / HTTP/1.1", false},
		{"X-Foo:bar", false}, // no space after the colon
		{"1Host: x", false},
		{"", false},
	} {
		if got := nonSMTPLine([]byte(tc.line)); got != tc.want {
			t.Errorf("nonSMTPLine(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// TestProtoState plays reads (">") and writes ("<") through the checks'
// state and compares what they found.
func TestProtoState(t *testing.T) {
	const ehloReply = "250-Hello x\r\n|<250-PIPELINING\r\n|<250-8BITMIME\r\n|<250 SIZE 1000\r\n"
	for _, tc := range []struct {
		name           string
		events         string // "|"-separated, each ">" read or "<" write
		nonSMTP, early bool
	}{
		{"lockstep HELO", "<220 mx ESMTP\r\n|>HELO x\r\n|<250 2.0.0 Hello x\r\n|>MAIL FROM:<a@b>\r\n|<250 2.0.0 ok\r\n|>QUIT\r\n", false, false},
		{"HELO then MAIL in one write", "<220 mx\r\n|>HELO x\r\nMAIL FROM:<a@b>\r\n", false, true},
		{"a line and the start of the next", "<220 mx\r\n|>HELO x\r\nMAI", false, true},
		{"a line split over reads", "<220 mx\r\n|>HE|>LO x|>\r\n|<250 2.0.0 Hello x\r\n|>NOOP\r\n", false, false},
		{"EHLO then a pipelined batch", "<220 mx\r\n|>EHLO x\r\n|<" + ehloReply + "|>MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", false, false},
		{"EHLO and MAIL in one write", "<220 mx\r\n|>EHLO x\r\nMAIL FROM:<a@b>\r\n", false, true},
		{"HELO client's DATA in lockstep", "<220 mx\r\n|>HELO x\r\n|<250 2.0.0 Hello x\r\n|>MAIL FROM:<a@b>\r\n|<250 ok\r\n|>RCPT TO:<c@d>\r\n|<250 ok\r\n|>DATA\r\n|<354 go\r\n|>a: b\r\n\r\nbody\r\nmore\r\n|>.\r\n|<250 queued\r\n|>QUIT\r\n", false, false},
		{"HELO client's body before 354", "<220 mx\r\n|>HELO x\r\n|<250 2.0.0 Hello x\r\n|>DATA\r\na: b\r\n", false, true},
		{"BDAT chunk follows its line", "<220 mx\r\n|>HELO x\r\n|<250 2.0.0 Hello x\r\n|>BDAT 8 LAST\r\nab\r\ncd\r\n|<250 ok\r\n|>QUIT\r\n", false, false},
		{"HTTP request", "<220 mx\r\n|>GET / HTTP/1.1\r\n|<500 what\r\n|>Host: x\r\n", true, false},
		{"a second line before the first reply", "<220 mx\r\n|>GET / HTTP/1.1\r\n|>Host: x\r\n", true, true},
		{"HTTP request in one write", "<220 mx\r\n|>GET / HTTP/1.1\r\nHost: x\r\n\r\n", true, true},
		{"header after HELO is not checked", "<220 mx\r\n|>HELO x\r\n|<250 2.0.0 Hello x\r\n|>Host: x\r\n", false, false},
		{"NOOP's 250 is not the HELO reply", "<220 mx\r\n|>NOOP\r\n|<250 2.0.0 I have successfully done nothing\r\n|>Host: x\r\n", true, false},
		{"TLS after STARTTLS", "<220 mx\r\n|>STARTTLS\r\n|<220 2.0.0 Ready to start TLS\r\n|>\x16\x03\x01\nGET x\nHost: y\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p protoState
			var f protoFinding
			for _, ev := range strings.Split(tc.events, "|") {
				switch ev[0] {
				case '<':
					p.wrote([]byte(ev[1:]))
				case '>':
					got := p.read([]byte(ev[1:]), false)
					f.early = f.early || got.early
					if f.nonSMTP == "" {
						f.nonSMTP = got.nonSMTP
					}
				}
			}
			if (f.nonSMTP != "") != tc.nonSMTP || f.early != tc.early {
				t.Fatalf("found non-SMTP %q, early pipelining %v; want %v, %v", f.nonSMTP, f.early, tc.nonSMTP, tc.early)
			}
		})
	}
}

func protocolConfig(nonSMTP, early string) func(*config.Config) {
	return func(c *config.Config) {
		c.Checks.Protocol = config.Protocol{NonSMTP: nonSMTP, EarlyPipelining: early}
	}
}

const httpRequest = "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n"

func TestNonSMTPDrop(t *testing.T) {
	h, w := newWatchedHarness(t, protocolConfig("drop", "enforce"), nil)
	cl := h.dial()
	cl.expect("220 ")
	cl.write(httpRequest)
	lines := cl.untilClosed()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "521 5.5.1 This is an SMTP server (ref ") {
		t.Fatalf("got %q, want only the 521", lines)
	}
	d := w.drop(t)
	if d.r != policy.ErrNonSMTP || d.ref != refOf(t, lines[0]) || !strings.Contains(d.detail, "GET / HTTP/1.1") {
		t.Fatalf("onDropped(%v, %q), ref %s", d.r, d.detail, d.ref)
	}
	if !d.c.NonSMTP() {
		t.Fatal("NonSMTP() is false")
	}
}

func TestNonSMTPLegitimateClient(t *testing.T) {
	h, w := newWatchedHarness(t, protocolConfig("drop", "drop"), nil)
	cl := h.greet()
	c := w.next(t)
	cl.startData("bob@ours.test")
	cl.write("Subject: hi\r\nX-Header: y\r\n\r\nHost: not a command\r\n.\r\n")
	cl.expect("250 ")
	cl.send("QUIT")
	cl.expect("221 ")
	if c.NonSMTP() || c.EarlyPipelining() {
		t.Fatalf("NonSMTP() %v, EarlyPipelining() %v", c.NonSMTP(), c.EarlyPipelining())
	}
}

// TestNonSMTPIgnore: the HTTP client is left to go-smtp, which answers
// each line with 500 or 501 and closes after too many errors.
func TestNonSMTPIgnore(t *testing.T) {
	h, w := newWatchedHarness(t, protocolConfig("ignore", "ignore"), nil)
	cl := h.dial()
	c := w.next(t)
	cl.expect("220 ")
	cl.write(httpRequest)
	lines := cl.untilClosed()
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "50") {
		t.Fatalf("got %q, want go-smtp's 50x errors", lines)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "521") {
			t.Fatalf("dropped in ignore mode: %q", lines)
		}
	}
	if !c.NonSMTP() {
		t.Fatal("NonSMTP() is false")
	}
}

func TestEarlyPipelining(t *testing.T) {
	h, w := newWatchedHarness(t, protocolConfig("drop", "enforce"), nil)

	// HELO offers no PIPELINING: MAIL sent with it is ahead of its reply.
	cl := h.dial()
	c := w.next(t)
	cl.expect("220 ")
	cl.write("HELO client.example.test\r\nMAIL FROM:<a@example.test>\r\n")
	cl.expect("250 ")
	cl.expect("250 ")
	cl.send("QUIT")
	cl.expect("221 ")
	if !c.EarlyPipelining() {
		t.Fatal("HELO+MAIL in one write: EarlyPipelining() is false")
	}

	// After EHLO offered PIPELINING a batch is fine (RFC 2920 §3.1).
	cl = h.dial()
	c = w.next(t)
	cl.expect("220 ")
	cl.send("EHLO client.example.test")
	cl.expect("250 ")
	cl.write("MAIL FROM:<a@example.test>\r\nRCPT TO:<bob@ours.test>\r\nDATA\r\n")
	cl.expect("250 ")
	cl.expect("250 ")
	cl.expect("354 ")
	cl.write("Subject: pipelined\r\n\r\nx\r\n.\r\n")
	cl.expect("250 ")
	cl.send("QUIT")
	cl.expect("221 ")
	if c.EarlyPipelining() {
		t.Fatal("pipelining after EHLO: EarlyPipelining() is true")
	}

	// A HELO client in lockstep, through a whole transaction.
	cl = h.dial()
	c = w.next(t)
	cl.expect("220 ")
	cl.send("HELO client.example.test")
	cl.expect("250 ")
	cl.startData("bob@ours.test")
	cl.write("Subject: lockstep\r\n\r\nline 1\r\nline 2\r\n.\r\n")
	cl.expect("250 ")
	cl.send("RSET")
	cl.expect("250 ")
	cl.send("QUIT")
	cl.expect("221 ")
	if c.EarlyPipelining() {
		t.Fatal("lockstep HELO client: EarlyPipelining() is true")
	}
}

func TestEarlyPipeliningDrop(t *testing.T) {
	h, w := newWatchedHarness(t, protocolConfig("drop", "drop"), nil)
	cl := h.dial()
	cl.expect("220 ")
	cl.write("HELO client.example.test\r\nMAIL FROM:<a@example.test>\r\n")
	lines := cl.untilClosed()
	want := "521 5.5.1 Protocol error: commands sent ahead of replies without PIPELINING (ref "
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Fatalf("got %q, want only %q...", lines, want)
	}
	d := w.drop(t)
	if d.r != policy.ErrEarlyPipelineDrop || d.ref != refOf(t, lines[0]) || !d.c.EarlyPipelining() {
		t.Fatalf("onDropped(%v, %q), ref %s", d.r, d.detail, d.ref)
	}
}

// TestProtocolDropRecords: the server's own wiring records each drop
// under the reference id the client was given.
func TestProtocolDropRecords(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		reason      policy.Reason
	}{
		{"non-SMTP", httpRequest, policy.ReasonNonSMTP},
		{"early pipelining", "HELO client.example.test\r\nMAIL FROM:<a@example.test>\r\n", policy.ReasonEarlyPipelining},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, sink.Config{}, protocolConfig("drop", "drop"))
			cl := h.dial()
			cl.expect("220 ")
			cl.write(tc.input)
			lines := cl.untilClosed()
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "521 ") {
				t.Fatalf("got %q", lines)
			}
			checkDropRecord(t, h, lines[0], tc.reason)
		})
	}
}

// TestTooManyErrors: the fourth protocol error gets 421 4.7.0 (not
// go-smtp's 500) and the connection closes; the record says why.
func TestTooManyErrors(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil)
	cl := h.greet()
	for range 3 {
		cl.send("FROB x")
		cl.expect("500 5.5.2 ")
	}
	cl.send("FROB x")
	cl.expect("500 5.5.2 ")
	cl.expect("421 4.7.0 Too many errors, closing connection")
	if _, err := cl.r.ReadString('\n'); err == nil {
		t.Fatal("connection still open")
	}
	if rec := h.recs.wait(t, 1)[0]; rec.Reason != policy.ReasonProtocolError || rec.Action != policy.ActionDrop {
		t.Fatalf("record %+v", rec)
	}
}
