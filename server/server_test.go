package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// smugglingSequences are the fake end-of-data sequences of the public
// smuggling scanners (SEC Consult, Hanno Böck's smtpsmug, and others;
// peers-and-harness.md §7).
var smugglingSequences = []string{
	"\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r\n.\n", "\r.\r\n", "\n.\r", "\r.\n",
	"\r\n\x00.\r\n", "\r\n.\x00\r\n", "\n\n.\r\n", "\r\n.\r\r\n", "\r\r\n.\r\r\n",
}

// smuggle sends one message whose body hides a fake end of data followed
// by a second transaction, and returns the final reply.
func smuggle(h *harness, seq string) string {
	cl := h.greet()
	cl.startData("bob@ours.test")
	cl.write("Subject: smuggling test\r\n\r\nhello" + seq +
		"MAIL FROM:<evil@smuggled.test>\r\nRCPT TO:<bob@ours.test>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nsmuggled\r\n.\r\n")
	last := cl.reply()
	cl.send("QUIT")
	return last[len(last)-1]
}

// TestSmugglingNeverReachesBackend runs every known sequence against a
// deliberately lenient backend that would split a message on them, in both
// bare_newline modes, and checks that no second message ever arrives.
func TestSmugglingNeverReachesBackend(t *testing.T) {
	for _, mode := range []string{"reject", "normalize"} {
		for _, seq := range smugglingSequences {
			t.Run(fmt.Sprintf("%s/%q", mode, seq), func(t *testing.T) {
				sc := sink.Config{Lenient: true}
				h := newHarness(t, sc, func(c *config.Config) {
					c.Message.BareNewline = mode
					c.Message.NUL = map[string]string{"reject": "reject", "normalize": "strip"}[mode]
				})
				got := smuggle(h, seq)
				for _, m := range h.sink.Messages() {
					if strings.Contains(m.From, "smuggled") || strings.Contains(string(m.Data), "SMUGGLED") && !strings.Contains(string(m.Data), "hello") {
						t.Fatalf("smuggled message reached the backend: %+v", m)
					}
					if n := len(h.sink.Messages()); n > 1 {
						t.Fatalf("backend saw %d messages, want at most 1", n)
					}
					assertCanonical(t, m.Raw)
				}
				if mode == "reject" {
					if !strings.HasPrefix(got, "550 5.6.0 ") {
						t.Fatalf("reply %q, want 550 5.6.0", got)
					}
					if n := len(h.sink.Messages()); n != 0 {
						t.Fatalf("backend got %d messages after a reject", n)
					}
				} else if !strings.HasPrefix(got, "250 ") || len(h.sink.Accepted()) != 1 {
					t.Fatalf("normalize: reply %q, backend accepted %d", got, len(h.sink.Accepted()))
				}
			})
		}
	}
}

// assertCanonical checks bytes as they went over the wire to the backend:
// every CR is followed by LF, every LF preceded by CR, no NUL.
func assertCanonical(t *testing.T, raw []byte) {
	t.Helper()
	for i, c := range raw {
		switch {
		case c == 0:
			t.Fatalf("NUL at %d reached the backend", i)
		case c == '\r' && (i+1 >= len(raw) || raw[i+1] != '\n'):
			t.Fatalf("bare CR at %d reached the backend: %q", i, raw)
		case c == '\n' && (i == 0 || raw[i-1] != '\r'):
			t.Fatalf("bare LF at %d reached the backend: %q", i, raw)
		}
	}
}

// transaction sends a whole message and returns the final reply.
func transaction(h *harness, rcpt, body string) string {
	cl := h.greet()
	cl.send("MAIL FROM:<alice@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<" + rcpt + ">")
	if r := cl.reply(); !strings.HasPrefix(r[len(r)-1], "250 ") {
		cl.send("QUIT") // ends the transaction, so its record is written
		return r[len(r)-1]
	}
	cl.send("DATA")
	cl.expect("354 ")
	cl.write(body + ".\r\n")
	r := cl.reply()
	return r[len(r)-1]
}

// TestBackendFaults: every failure of the backend's transport gives the
// client a 4xx with the right enhanced code, and never a 250 for a message
// the backend did not take whole.
func TestBackendFaults(t *testing.T) {
	fast := func(c *config.Config) {
		c.Backend.Timeouts.Command = 300 * time.Millisecond
		c.Backend.Timeouts.Final = 300 * time.Millisecond
		c.Backend.Timeouts.Connect = 300 * time.Millisecond
	}
	tests := []struct {
		name string
		sink sink.Config
		want string
	}{
		{"greeting hangs", sink.Config{Hang: sink.PhaseGreeting}, "451 4.4."},
		{"refuses with 421 greeting", sink.Config{Greeting: &sink.Reply{Code: 421, Text: "4.3.2 not now"}}, "451 4.4.1 "},
		{"MAIL hangs", sink.Config{Hang: sink.PhaseMail}, "451 4.4.2 "},
		{"RCPT hangs", sink.Config{Hang: sink.PhaseRcpt}, "451 4.4.2 "},
		{"DATA hangs", sink.Config{Hang: sink.PhaseData}, "451 4.4.2 "},
		{"final reply hangs", sink.Config{Hang: sink.PhaseEOD}, "451 4.4.2 "},
		{"drops mid-DATA", sink.Config{DropAfterDataBytes: 100}, "451 4.4."},
		{"refuses MAIL", sink.Config{OnMail: func(string, string) *sink.Reply {
			return &sink.Reply{Code: 550, Text: "5.7.1 sender blocked"}
		}}, "550 5.7.1 sender blocked (ref "},
		{"final 452", sink.Config{OnData: func(*sink.Message) *sink.Reply {
			return &sink.Reply{Code: 452, Text: "4.3.1 Insufficient system storage"}
		}}, "452 4.3.1 Insufficient system storage (ref "},
		{"final 250 without enhanced code", sink.Config{OnData: func(m *sink.Message) *sink.Reply {
			return &sink.Reply{Code: 250, Text: "queued as XYZ"}
		}}, "250 2.0.0 queued as XYZ (ref "},
	}
	body := "Subject: fault\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 50)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.sink, fast)
			got := transaction(h, "bob@ours.test", body)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %q, want %q...", got, tt.want)
			}
			refOf(t, got)
			if !strings.HasPrefix(got, "250") && len(h.sink.Accepted()) != 0 {
				t.Fatalf("client got %q but the backend accepted the message", got)
			}
			h.sink.Close() // unblock hung backend connections before cleanup
		})
	}
}

func TestBackendUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	h := newHarness(t, sink.Config{}, func(c *config.Config) { c.Backend.Servers = []string{dead} })
	got := transaction(h, "bob@ours.test", "x\r\n")
	if !strings.HasPrefix(got, "451 4.4.1 ") {
		t.Fatalf("got %q, want 451 4.4.1", got)
	}
	recs := h.recs.wait(t, 1)
	if recs[0].Reason != policy.ReasonBackendDown || recs[0].Action != policy.ActionTempfail {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestFailoverToSecondBackend(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	h := newHarness(t, sink.Config{}, nil)
	h.cfg.Backend.Servers = []string{dead, h.sink.Addr()}
	if err := h.srv.Reload(cloneWith(h.cfg, nil)); err != nil {
		t.Fatal(err)
	}
	if got := transaction(h, "bob@ours.test", "Subject: x\r\n\r\nx\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("got %q", got)
	}
}

func cloneWith(c *config.Config, f func(*config.Config)) *config.Config {
	n := *c
	n.Domains = append([]string(nil), c.Domains...)
	n.Backend.Servers = append([]string(nil), c.Backend.Servers...)
	if f != nil {
		f(&n)
	}
	return &n
}

// TestMessageArrivesIntact: the backend gets our Received header followed
// by exactly the bytes the client sent (dot-unstuffed), and the record
// carries the backend's queue id.
func TestMessageArrivesIntact(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil)
	body := "From: Alice <alice@example.test>\r\nSubject: intact\r\nMessage-ID: <m1@example.test>\r\n\r\n" +
		"line\r\n..dot-stuffed\r\n\r\n\ttab\r\n" + strings.Repeat("y", 990) + "\r\n"
	got := transaction(h, "bob@ours.test", body)
	if !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("got %q", got)
	}
	want := strings.Replace(body, "\r\n..dot", "\r\n.dot", 1)
	msgs := h.sink.Accepted()
	if len(msgs) != 1 {
		t.Fatalf("backend has %d messages", len(msgs))
	}
	data := string(msgs[0].Data)
	hdr, rest, ok := strings.Cut(data, "\r\nFrom: Alice")
	if !ok || "From: Alice"+rest != want {
		t.Fatalf("backend got\n%q\nwant our headers then\n%q", data, want)
	}
	if !strings.HasPrefix(hdr, "Received: from client.example.test (unknown [127.0.0.1])\r\n\tby mx.ours.test (mxgate) with ESMTP\r\n") ||
		!strings.Contains(hdr, "for <bob@ours.test>;") {
		t.Fatalf("Received header %q", hdr)
	}
	rec := h.recs.wait(t, 1)[0]
	if rec.Relay == nil || rec.Relay.QueueID != msgs[0].ID || rec.MessageID != "<m1@example.test>" ||
		rec.HeaderFrom != "alice@example.test" || rec.Size != int64(len(want)) {
		t.Fatalf("record %+v relay %+v", rec, rec.Relay)
	}
	if rec.Reply == nil || rec.Reply.Code != 250 || !strings.HasSuffix(got, rec.Reply.Text) {
		t.Fatalf("record reply %+v does not match %q", rec.Reply, got)
	}
}

func TestMessageTooLarge(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil) // 64 KiB limit
	got := transaction(h, "bob@ours.test", "Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("z", 98)+"\r\n", 700))
	if !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Fatalf("got %q", got)
	}
	if n := len(h.sink.Messages()); n != 0 {
		t.Fatalf("backend got %d messages", n)
	}
	// Declared too large at MAIL: refused before any data is sent.
	cl := h.greet()
	cl.send("MAIL FROM:<a@example.test> SIZE=1000000")
	cl.expect("552 5.3.4 ")
}

func TestSMTPUTF8NeedsBackendSupport(t *testing.T) {
	noUTF8 := sink.Config{Extensions: []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 1000000"}}
	h := newHarness(t, noUTF8, nil)
	cl := h.greet()
	cl.send("MAIL FROM:<jörg@example.test> SMTPUTF8")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	if got := cl.expect("550 5.6.7 "); !strings.Contains(got, "SMTPUTF8") {
		t.Fatalf("got %q", got)
	}
	cl.send("RSET")
	cl.expect("250 ")
	// Without SMTPUTF8 a non-ASCII address is refused at once.
	cl.send("MAIL FROM:<alice@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<jörg@ours.test>")
	cl.expect("553 5.6.7 ")
}

func TestConnectionCaps(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 2 })
	a, b := h.dial(), h.dial()
	a.expect("220 ")
	b.expect("220 ")
	c := h.dial()
	got := c.expect("421 4.7.0 ")
	refOf(t, got)
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("connection over the cap was not closed")
	}
	rec := h.recs.wait(t, 1)[0]
	if rec.Reason != policy.ReasonConnLimitIP || rec.Stage != policy.StageConnect || rec.Reply.Code != 421 {
		t.Fatalf("record %+v", rec)
	}
	a.c.Close() // a slot frees up
	time.Sleep(100 * time.Millisecond)
	d := h.dial()
	d.expect("220 ")
}

func TestIdleTimeouts(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) {
		c.Limits.CommandTimeout = 300 * time.Millisecond
		c.Limits.DataTimeout = 400 * time.Millisecond
	})
	// Waiting for a command.
	cl := h.greet()
	cl.expect("421 4.4.2 ")
	rec := h.recs.wait(t, 1)[0]
	if rec.Action != policy.ActionDrop || rec.Reason != policy.ReasonTimeout {
		t.Fatalf("record %+v", rec)
	}

	// A slow but steady DATA is fine: the timeout is per read, not for
	// the whole body (1.2 s in total here, 0.1 s between writes).
	cl = h.greet()
	cl.startData("bob@ours.test")
	cl.write("Subject: slow\r\n\r\n")
	for range 12 {
		time.Sleep(100 * time.Millisecond)
		cl.write("trickle\r\n")
	}
	cl.write(".\r\n")
	cl.expect("250 ")

	// A stalled DATA: 421, and the leftover body is never read as commands.
	cl.startData("bob@ours.test")
	cl.write("Subject: stall\r\n\r\n")
	time.Sleep(600 * time.Millisecond)
	cl.write("RSET\r\nMAIL FROM:<x@example.test>\r\n")
	cl.expect("421 4.4.2 ")
	for {
		l, err := cl.r.ReadString('\n')
		if err != nil {
			break
		}
		if !strings.HasPrefix(l, "421") {
			t.Fatalf("leftover body was executed: %q", l)
		}
	}
	if n := len(h.sink.Accepted()); n != 1 {
		t.Fatalf("backend accepted %d messages, want 1", n)
	}
}

// TestShutdown: idle connections are closed at once; a transaction in
// flight finishes within the grace period.
func TestShutdown(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil)
	idle := h.greet()
	busy := h.greet()
	busy.send("MAIL FROM:<a@example.test>")
	busy.expect("250 ")
	busy.send("RCPT TO:<bob@ours.test>")
	busy.expect("250 ")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	if _, err := idle.r.ReadString('\n'); err == nil {
		// go-smtp may say nothing; either way the connection must close
		if _, err := idle.r.ReadString('\n'); err == nil {
			t.Fatal("idle connection stayed open")
		}
	}
	busy.send("DATA")
	busy.expect("354 ")
	busy.write("Subject: in flight\r\n\r\nx\r\n.\r\n")
	busy.expect("250 ")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(h.sink.Accepted()); n != 1 {
		t.Fatalf("in-flight message lost: backend has %d", n)
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		c.SetDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Close()
		if strings.HasPrefix(string(buf[:n]), "220") {
			t.Fatal("accepted a connection after shutdown")
		}
	}
}

// TestReload: a reload takes effect for new connections; a connection
// accepted before keeps its snapshot; a change that needs a restart is
// refused and the running configuration stays.
func TestReload(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil)
	before := h.greet()
	if err := h.srv.Reload(cloneWith(h.cfg, func(c *config.Config) { c.Domains = append(c.Domains, "new.test") })); err != nil {
		t.Fatal(err)
	}
	after := h.greet()
	for _, tc := range []struct {
		cl   *client
		want string
	}{{before, "550 5.7.1 "}, {after, "250 "}} {
		tc.cl.send("MAIL FROM:<a@example.test>")
		tc.cl.expect("250 ")
		tc.cl.send("RCPT TO:<x@new.test>")
		tc.cl.expect(tc.want)
	}
	err := h.srv.Reload(cloneWith(h.cfg, func(c *config.Config) { c.Limits.MaxMessageSize = 1 << 20 }))
	if err == nil || !strings.Contains(err.Error(), "limits.max_message_size") {
		t.Fatalf("reload of a fixed setting: %v", err)
	}
	if got := h.srv.Runtime().Cfg.Limits.MaxMessageSize; got != 64<<10 {
		t.Fatalf("running configuration changed to %d", got)
	}
}

// TestReplyClasses walks every reply the gateway can produce and checks
// that basic and enhanced codes agree in class (RFC 3463).
func TestReplyClasses(t *testing.T) {
	for _, r := range policy.All() {
		if err := r.Valid(); err != nil {
			t.Errorf("%s: %v", r.Reason, err)
		}
		if r.Reason == "" || r.Text == "" {
			t.Errorf("%v has no reason or text", r)
		}
		se := toSMTP(r, "REF")
		if se.Code/100 != se.EnhancedCode[0] || !strings.HasSuffix(se.Message, "(ref REF)") {
			t.Errorf("boundary conversion of %v: %+v", r, se)
		}
	}
	for _, in := range []struct {
		code int
		enh  [3]int
	}{{550, [3]int{4, 1, 1}}, {451, [3]int{0, 0, 0}}, {421, [3]int{4, 3, 2}}, {250, [3]int{5, 0, 0}}, {354, [3]int{3, 0, 0}}, {999, [3]int{9, 9, 9}}} {
		r := policy.Passthrough(in.code, in.enh, "x", policy.ReasonBackendRcpt)
		if err := r.Valid(); err != nil {
			t.Errorf("Passthrough(%d, %v): %v", in.code, in.enh, err)
		}
	}
	if r := asReply(fmt.Errorf("dial tcp 10.0.0.1:25: secret detail"), discardLog()); r != policy.ErrInternal {
		t.Errorf("unknown error became %v, want ErrInternal", r)
	}
}

// TestLineLength: limits.max_line_length (1000, RFC 5321 §4.5.3.1.6) is
// the line as in the message; a line that starts with a dot is one byte
// longer on the wire and must still pass. A longer line gets exactly one
// reply, then the connection closes (go-smtp cannot resynchronise).
func TestLineLength(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil)
	longest := "." + strings.Repeat("d", 997) // 998 characters + CRLF
	got := transaction(h, "bob@ours.test", "Subject: long\r\n\r\n."+longest+"\r\n")
	if !strings.HasPrefix(got, "250 ") {
		t.Fatalf("998-character dot line: %q", got)
	}
	if data := string(h.sink.Accepted()[0].Data); !strings.Contains(data, "\r\n"+longest+"\r\n") {
		t.Fatalf("line altered: %q", data)
	}

	cl := h.greet()
	cl.startData("bob@ours.test")
	cl.write("Subject: too long\r\n\r\n" + strings.Repeat("e", 1000) + "\r\n.\r\n")
	refOf(t, cl.expect("500 5.5.2 "))
	if l, err := cl.r.ReadString('\n'); err == nil {
		t.Fatalf("second reply after a too long line: %q", l)
	}
	if n := len(h.sink.Accepted()); n != 1 {
		t.Fatalf("backend accepted %d messages, want 1", n)
	}
}

// TestConnectionRecords: connections that end without a transaction get one
// record each, classified by how they ended.
func TestConnectionRecords(t *testing.T) {
	h := newHarness(t, sink.Config{}, nil)
	quit := h.greet()
	quit.send("QUIT")
	quit.expect("221 ")
	rst := h.dial() // connect, read nothing, reset
	rst.c.(*net.TCPConn).SetLinger(0)
	rst.c.Close()
	recs := h.recs.wait(t, 2)
	for _, r := range recs {
		if r.Action != policy.ActionAbort || r.Reason != policy.ReasonNoTransaction {
			t.Errorf("record %+v, want abort/no_transaction", r)
		}
	}
}

func TestTotalConnectionCap(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) {
		c.Limits.MaxConnections = 2
		c.Limits.MaxConnectionsPerIP = 2
	})
	h.dial().expect("220 ")
	h.dial().expect("220 ")
	refOf(t, h.dial().expect("421 4.7.0 Too many connections, try again later"))
	if rec := h.recs.wait(t, 1)[0]; rec.Reason != policy.ReasonConnLimit || rec.Action != policy.ActionTempfail {
		t.Fatalf("record %+v", rec)
	}
}

// TestReceivedHeader pins the Received header: TLS details when the
// session is encrypted, "for" only with a single recipient, and nothing a
// client sent can break out of it.
func TestReceivedHeader(t *testing.T) {
	rt := &Runtime{Cfg: testConfig("127.0.0.1:1")}
	st := &connState{ip: netip.MustParseAddr("192.0.2.7"), helo: "evil(\r\nX-Injected: 1)>;"}
	st.tls = &verdict.TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256"}
	s := &session{st: st, rt: rt}
	tx := &txn{ref: "01ABCDEFGHJKMNPQRSTVWXYZ00", rcpts: []address.Addr{{Local: "bob", Domain: "ours.test"}}}
	when := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	want := "Received: from evilX-Injected:1 ([192.0.2.7])\r\n" +
		"\tby mx.ours.test (mxgate) with ESMTPS\r\n" +
		"\t(version=TLS 1.3 cipher=TLS_AES_128_GCM_SHA256)\r\n" +
		"\tid 01ABCDEFGHJKMNPQRSTVWXYZ00\r\n" +
		"\tfor <bob@ours.test>;\r\n" +
		"\tSun, 22 Nov 2026 13:00:00 +0000\r\n"
	if got := string(s.received(tx, when)); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	tx.rcpts = append(tx.rcpts, address.Addr{Local: "carol", Domain: "ours.test"})
	if got := string(s.received(tx, when)); strings.Contains(got, "for <") {
		t.Fatalf("a message to two recipients names one: %q", got)
	}
}
