package server

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
)

// TestLineGateDeliverable: what the gate lets through of one read, and
// what it holds, for each kind of input.
func TestLineGateDeliverable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gate   lineGate
		in     string
		inBody bool
		want   string // delivered now; the rest is held
		chunk  int64  // BDAT bytes still to pass after this read
		raw    bool
	}{
		{name: "complete lines", in: "EHLO x\r\nMAIL FROM:<a@b>\r\n", want: "EHLO x\r\nMAIL FROM:<a@b>\r\n"},
		{name: "partial line held", in: "EHLO x\r\nMAIL FR", want: "EHLO x\r\n"},
		{name: "only a partial line", in: "EHLO", want: ""},
		{name: "bare LF ends a line", in: "NOOP\nQU", want: "NOOP\n"},
		{name: "partial line at the limit", gate: lineGate{limit: 8}, in: "OK\r\n" + strings.Repeat("x", 8), want: "OK\r\n" + strings.Repeat("x", 8)},
		{name: "partial line under the limit", gate: lineGate{limit: 8}, in: "OK\r\n" + strings.Repeat("x", 7), want: "OK\r\n"},
		{name: "BDAT chunk passes without LF", in: "BDAT 5\r\nab\rcdNOOP", want: "BDAT 5\r\nab\rcd", chunk: 0},
		{name: "BDAT chunk split over reads", in: "bdat 10 LAST\r\nabc", want: "bdat 10 LAST\r\nabc", chunk: 7},
		{name: "chunk then commands", gate: lineGate{chunk: 3}, in: "xyzQUIT\r\nRS", want: "xyzQUIT\r\n"},
		{name: "bad BDAT size is a line", in: "BDAT x\r\nab", want: "BDAT x\r\n"},
		{name: "STARTTLS offered: raw after it", gate: lineGate{tls: true}, in: "STARTTLS\r\n\x16\x03\x01", want: "STARTTLS\r\n\x16\x03\x01", raw: true},
		{name: "STARTTLS not offered: still lines", in: "STARTTLS\r\nEH", want: "STARTTLS\r\n"},
		{name: "raw passes all", gate: lineGate{raw: true}, in: "abc", want: "abc", raw: true},
		{name: "DATA body passes", in: "line one\r\nline t", inBody: true, want: "line one\r\nline t"},
		{name: "BDAT session body is scanned", gate: lineGate{sawBDAT: true}, in: "x\r\nBDAT 4 LAST\r\nab", inBody: true, want: "x\r\nBDAT 4 LAST\r\nab", chunk: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.gate
			if g.limit == 0 {
				g.limit = 1000
			}
			k := g.deliverable([]byte(tc.in), tc.inBody)
			if got := tc.in[:k]; got != tc.want {
				t.Errorf("delivered %q, want %q", got, tc.want)
			}
			if g.chunk != tc.chunk || g.raw != tc.raw {
				t.Errorf("chunk %d raw %v, want %d %v", g.chunk, g.raw, tc.chunk, tc.raw)
			}
		})
	}
}

// TestPartialLineNotExecuted: a command line the client never finished is
// not acted on, whether the client closes its side or goes quiet until
// the idle timeout. go-smtp's line reader would hand it over as a line.
func TestPartialLineNotExecuted(t *testing.T) {
	t.Run("half close", func(t *testing.T) {
		h := newHarness(t, standardSink(), nil)
		cl := h.greet()
		cl.send("MAIL FROM:<alice@example.test>")
		cl.expect("250 ")
		cl.write("RCPT TO:<bob@ours.test>")
		cl.c.(*net.TCPConn).CloseWrite()
		rest, _ := io.ReadAll(cl.r)
		if len(rest) != 0 {
			t.Fatalf("after a partial RCPT and EOF the server sent %q", rest)
		}
		rec := h.recs.wait(t, 1)[0]
		if len(rec.Rcpts) != 0 {
			t.Errorf("the partial RCPT was acted on: %+v", rec.Rcpts)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		h := newHarness(t, standardSink(), func(c *config.Config) { c.Limits.CommandTimeout = 500 * time.Millisecond })
		cl := h.dial()
		cl.expect("220 ")
		cl.write("EHLO client.exa")
		rest, _ := io.ReadAll(cl.r)
		if got := string(rest); !strings.HasPrefix(got, "421 4.4.2 ") || strings.Count(got, "\r\n") != 1 {
			t.Fatalf("after a partial EHLO and silence the server sent %q, want one 421 4.4.2", got)
		}
	})
}
