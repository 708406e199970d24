package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// guardWatch records what the guard's onAdmit and onDropped hooks saw, so
// tests can look at a connection's check results and at its drop.
type guardWatch struct {
	admitted chan *conn
	dropped  chan dropCall
}

type dropCall struct {
	c      *conn
	r      *policy.Reply
	ref    string
	detail string
}

// next returns the next admitted connection.
func (w *guardWatch) next(t testing.TB) *conn {
	t.Helper()
	select {
	case c := <-w.admitted:
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("no connection was admitted")
		return nil
	}
}

// drop returns the next onDropped call.
func (w *guardWatch) drop(t testing.TB) dropCall {
	t.Helper()
	select {
	case d := <-w.dropped:
		return d
	case <-time.After(3 * time.Second):
		t.Fatal("onDropped was not called")
		return dropCall{}
	}
}

// newWatchedHarness is newHarness serving on ln (nil: a plain listener on
// 127.0.0.1), with the guard's onAdmit and onDropped hooks also reporting to
// a guardWatch. The hooks must be in place before the accept loops run
// (setting them later would race with the loops), so the server is started
// on no listener at all, which wires the guard exactly as StartListeners
// does but starts no accept loop; ln and the wrapped hooks go in before the
// guard's loops start.
func newWatchedHarness(t testing.TB, mutate func(*config.Config), ln net.Listener) (*harness, *guardWatch) {
	t.Helper()
	baseline := runtime.NumGoroutine()
	sk, err := sink.Start(sink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(sk.Addr())
	if mutate != nil {
		mutate(cfg)
	}
	recs := &records{}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(cfg, verdict.NewWriter(recs), log)
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	w := &guardWatch{admitted: make(chan *conn, 64), dropped: make(chan dropCall, 64)}
	srv.StartListeners(nil)
	g := srv.guard
	g.lns = []net.Listener{ln}
	g.log = log
	onAdmit, onDropped := g.onAdmit, g.onDropped
	g.onAdmit = func(c *conn) {
		if onAdmit != nil {
			onAdmit(c)
		}
		w.admitted <- c
	}
	g.onDropped = func(c *conn, r *policy.Reply, detail string) {
		if onDropped != nil {
			onDropped(c, r, detail)
		} else {
			g.onClose(c)
		}
		w.dropped <- dropCall{c: c, r: r, ref: c.DropRef(), detail: detail}
	}
	g.start()
	h := &harness{t: t, srv: srv, sink: sk, addr: ln.Addr().String(), recs: recs, cfg: cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := sk.WaitIdle(3 * time.Second); err != nil {
			t.Errorf("backend connections leaked: %v", err)
		}
		sk.Close()
		checkGoroutines(t, baseline)
	})
	return h, w
}

// pregreetConfig sets the pre-greeting test.
func pregreetConfig(wait time.Duration, action string, teaser bool) func(*config.Config) {
	return func(c *config.Config) {
		c.Checks.Pregreet = config.Pregreet{Wait: wait, Action: action, Teaser: teaser}
	}
}

// line reads one line, without its CRLF.
func (cl *client) line() string {
	cl.t.Helper()
	l, err := cl.r.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// untilClosed reads lines until the server closes the connection, and
// fails if it does not within the client's deadline.
func (cl *client) untilClosed() []string {
	cl.t.Helper()
	var lines []string
	for {
		l, err := cl.r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				cl.t.Fatalf("connection still open after %q", lines)
			}
			return lines
		}
	}
}

func TestPregreetPoliteClientWaits(t *testing.T) {
	const wait = 300 * time.Millisecond
	h, w := newWatchedHarness(t, pregreetConfig(wait, "enforce", false), nil)
	start := time.Now()
	cl := h.dial()
	c := w.next(t)
	cl.expect("220 mx.ours.test ESMTP")
	if d := time.Since(start); d < wait {
		t.Fatalf("banner after %v, want at least %v", d, wait)
	}
	if got := c.Pregreet(); got != "pass" {
		t.Fatalf("Pregreet() = %q, want pass", got)
	}
	cl.send("EHLO client.example.test")
	cl.expect("250 ")
	cl.send("QUIT")
	cl.expect("221 ")
}

func TestPregreetSkippedWithoutWait(t *testing.T) {
	h, w := newWatchedHarness(t, pregreetConfig(0, "enforce", false), nil)
	cl := h.dial()
	c := w.next(t)
	cl.expect("220 ")
	if got := c.Pregreet(); got != "skipped" {
		t.Fatalf("Pregreet() = %q, want skipped", got)
	}
}

// TestPregreetEarlyTalker: what an early talker sent is not lost, whatever
// the action but drop: go-smtp answers it after the banner.
func TestPregreetEarlyTalker(t *testing.T) {
	for _, action := range []string{"enforce", "ignore"} {
		t.Run(action, func(t *testing.T) {
			h, w := newWatchedHarness(t, pregreetConfig(2*time.Second, action, false), nil)
			start := time.Now()
			cl := h.dial()
			cl.send("EHLO early.example.test")
			c := w.next(t)
			cl.expect("220 ")
			if d := time.Since(start); d > time.Second {
				t.Fatalf("early talker waited %v: the rest of the wait should be skipped", d)
			}
			lines := cl.reply()
			if lines[0] != "250-Hello early.example.test" {
				t.Fatalf("EHLO sent early was not answered: %q", lines)
			}
			if got := c.Pregreet(); got != "early" {
				t.Fatalf("Pregreet() = %q, want early", got)
			}
			cl.send("QUIT")
			cl.expect("221 ")
		})
	}
}

func TestPregreetDrop(t *testing.T) {
	h, w := newWatchedHarness(t, pregreetConfig(2*time.Second, "drop", false), nil)
	cl := h.dial()
	cl.send("EHLO early.example.test")
	lines := cl.untilClosed()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "521 5.5.1 Protocol error: you talked before the greeting (ref ") {
		t.Fatalf("got %q, want only the 521", lines)
	}
	ref := refOf(t, lines[0])
	d := w.drop(t)
	if d.r != policy.ErrPregreetDrop || d.ref != ref || !strings.Contains(d.detail, "EHLO early.example.test") {
		t.Fatalf("onDropped(%v, %q) ref %s, reply ref %s", d.r, d.detail, d.ref, ref)
	}
	if got := d.c.Pregreet(); got != "early" {
		t.Fatalf("Pregreet() = %q, want early", got)
	}
	if n := h.srv.guard.Open(); n != 0 {
		t.Fatalf("%d connections still open", n)
	}
}

// TestPregreetDropRecord: the server's own wiring records the drop under
// the reference id the client was given.
func TestPregreetDropRecord(t *testing.T) {
	h := newHarness(t, sink.Config{}, pregreetConfig(2*time.Second, "drop", false))
	cl := h.dial()
	cl.send("HELO early.example.test")
	lines := cl.untilClosed()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "521 5.5.1 ") {
		t.Fatalf("got %q", lines)
	}
	checkDropRecord(t, h, lines[0], policy.ReasonPregreet)
}

// checkDropRecord checks the one record of a dropped connection.
func checkDropRecord(t *testing.T, h *harness, reply string, reason policy.Reason) {
	t.Helper()
	rec := h.recs.wait(t, 1)[0]
	if rec.Ref != refOf(t, reply) || rec.Reason != reason || rec.Reply == nil || rec.Reply.Code != 521 {
		t.Fatalf("record %+v for reply %q", rec, reply)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(h.recs.wait(t, 1)); n != 1 {
		t.Fatalf("%d records for one connection", n)
	}
}

// TestPregreetTeaser: the teaser and go-smtp's banner make one valid
// multi-line greeting (RFC 5321 §4.2.1), which real clients accept.
func TestPregreetTeaser(t *testing.T) {
	h, w := newWatchedHarness(t, pregreetConfig(300*time.Millisecond, "enforce", true), nil)
	cl := h.dial()
	lines := cl.reply()
	want := []string{"220-mx.ours.test ESMTP", "220 mx.ours.test ESMTP Service Ready"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("greeting %q, want %q", lines, want)
	}
	if got := w.next(t).Pregreet(); got != "pass" {
		t.Fatalf("Pregreet() = %q, want pass", got)
	}

	sc, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Hello("client.example.test"); err != nil {
		t.Fatalf("go-smtp's client after the teaser: %v", err)
	}
	if err := sc.Quit(); err != nil {
		t.Fatal(err)
	}
	w.next(t)

	// A client that answers the first line is an early talker.
	early := h.dial()
	if l := early.line(); l != "220-mx.ours.test ESMTP" {
		t.Fatalf("first line %q", l)
	}
	early.send("EHLO early.example.test")
	early.expect("220 ")
	early.expect("250 ")
	if got := w.next(t).Pregreet(); got != "early" {
		t.Fatalf("after the teaser: Pregreet() = %q, want early", got)
	}
}

// TestPregreetAcceptsNotSerialized: each connection waits in its own
// goroutine, so ten waits overlap.
func TestPregreetAcceptsNotSerialized(t *testing.T) {
	const wait = 300 * time.Millisecond
	h, _ := newWatchedHarness(t, pregreetConfig(wait, "enforce", false), nil)
	start := time.Now()
	var cls []*client
	for range 10 {
		cls = append(cls, h.dial())
	}
	for _, cl := range cls {
		cl.expect("220 ")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("10 connections took %v: the waits did not overlap", d)
	}
}

// TestPregreetHangup: a client gone during the wait never reaches go-smtp.
func TestPregreetHangup(t *testing.T) {
	h, w := newWatchedHarness(t, pregreetConfig(2*time.Second, "enforce", false), nil)
	cl := h.dial()
	c := w.next(t)
	cl.c.Close()
	rec := h.recs.wait(t, 1)[0]
	if rec.Reply != nil || rec.Reason != policy.ReasonNoTransaction {
		t.Fatalf("record %+v", rec)
	}
	if got := c.Pregreet(); got != "hangup" {
		t.Fatalf("Pregreet() = %q, want hangup", got)
	}
}

// TestPregreetShutdown: shutdown does not wait for the pre-greeting wait;
// the waiting client is told 421 (RFC 5321 §3.8).
func TestPregreetShutdown(t *testing.T) {
	h, w := newWatchedHarness(t, pregreetConfig(5*time.Second, "enforce", true), nil)
	cl := h.dial()
	if l := cl.line(); !strings.HasPrefix(l, "220-") {
		t.Fatalf("teaser %q", l)
	}
	w.next(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	lines := cl.untilClosed()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") {
		t.Fatalf("got %q, want 421", lines)
	}
	rec := h.recs.wait(t, 1)[0]
	if rec.Reason != policy.ReasonShuttingDown {
		t.Fatalf("record %+v", rec)
	}
}
