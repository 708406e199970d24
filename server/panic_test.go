package server

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/policy"
)

// expectedPanics counts the session panics tests cause on purpose (the
// hook adds one just before it panics); TestMain fails the package when
// Panics says more happened. No test of this package makes a check panic,
// so checks.Panics must stay zero.
var expectedPanics atomic.Int64

// TestMain fails the package when a session method or a check panicked
// unexpectedly during any test: both are recovered (the client gets 451
// 4.3.0, the check a temperror), so without this a panic would go unseen.
//
// With MXGATE_TEST_SESSION_CLIENTS set the binary is instead the client
// helper process of TestTenThousandSessions.
func TestMain(m *testing.M) {
	if spec := os.Getenv(sessionClientsEnv); spec != "" {
		os.Exit(sessionClients(spec))
	}
	code := m.Run()
	if got, want := Panics.Load(), expectedPanics.Load(); got != want {
		fmt.Fprintf(os.Stderr, "FAIL: %d session panics during the tests, %d expected (run with -v to see their stacks)\n", got, want)
		code = 1
	}
	if n := checks.Panics.Load(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d checks panicked during the tests (run with -v to see them)\n", n)
		code = 1
	}
	os.Exit(code)
}

// panicAt makes the session methods panic once at stage, for the rest of
// the test.
func panicAt(t *testing.T, stage string) {
	t.Helper()
	var fired atomic.Bool
	hook := func(s string) {
		if s == stage && fired.CompareAndSwap(false, true) {
			expectedPanics.Add(1)
			panic("test panic at " + stage)
		}
	}
	testPanicHook.Store(&hook)
	t.Cleanup(func() { testPanicHook.Store(nil) })
}

// TestSessionPanic: a panic in a session method is recovered by the
// session, not by go-smtp (whose answer is 421 4.0.0 and a closed
// connection): the client gets 451 4.3.0 with the transaction's reference
// id, Panics counts it, and the connection goes on.
func TestSessionPanic(t *testing.T) {
	const internal = "451 4.3.0 Local error in processing, try again later (ref "

	t.Run("rcpt", func(t *testing.T) {
		h := newHarness(t, standardSink(), nil)
		panicAt(t, "rcpt")
		before := Panics.Load()
		cl := h.greet()
		cl.send("MAIL FROM:<a@example.test>")
		cl.expect("250 ")
		cl.send("RCPT TO:<bob@ours.test>")
		ref := refOf(t, cl.expect(internal))
		if n := Panics.Load() - before; n != 1 {
			t.Fatalf("Panics went up by %d, want 1", n)
		}
		// The transaction is still open: the next RCPT, DATA and QUIT work.
		cl.send("RCPT TO:<bob@ours.test>")
		cl.expect("250 ")
		cl.send("DATA")
		cl.expect("354 ")
		cl.write("Subject: after a panic\r\n\r\nhello\r\n.\r\n")
		if got := refOf(t, cl.expect("250 ")); got != ref {
			t.Errorf("the panic's reply has ref %s, the transaction %s", ref, got)
		}
		cl.send("QUIT")
		cl.expect("221 ")
		rec := h.recs.wait(t, 1)[0]
		if rec.Ref != ref || rec.Action != policy.ActionAccept {
			t.Fatalf("record %+v", rec)
		}
		if n := len(h.sink.Accepted()); n != 1 {
			t.Fatalf("backend accepted %d messages, want 1", n)
		}
	})

	t.Run("mail", func(t *testing.T) {
		h := newHarness(t, standardSink(), nil)
		panicAt(t, "mail")
		cl := h.greet()
		cl.send("MAIL FROM:<a@example.test>")
		refOf(t, cl.expect(internal))
		// No transaction was opened: MAIL may be given again.
		cl.send("MAIL FROM:<a@example.test>")
		cl.expect("250 ")
		cl.send("RCPT TO:<bob@ours.test>")
		cl.expect("250 ")
		cl.send("QUIT")
		cl.expect("221 ")
	})

	t.Run("data", func(t *testing.T) {
		h := newHarness(t, standardSink(), nil)
		panicAt(t, "data")
		cl := h.greet()
		cl.startData("bob@ours.test")
		// go-smtp reads the rest of the body before it answers.
		cl.write("Subject: x\r\n\r\nbody\r\n.\r\n")
		ref := refOf(t, cl.expect(internal))
		// The record says internal error, not that the client gave up.
		rec := h.recs.wait(t, 1)[0]
		if rec.Ref != ref || rec.Action != policy.ActionTempfail || rec.Reason != policy.ReasonInternal || rec.Stage != policy.StageData {
			t.Fatalf("record %+v", rec)
		}
		if n := len(h.sink.Accepted()); n != 0 {
			t.Fatalf("backend accepted %d messages after a panic, want 0", n)
		}
		// The connection goes on with a new transaction.
		cl.startData("bob@ours.test")
		cl.write("Subject: y\r\n\r\nbody\r\n.\r\n")
		cl.expect("250 ")
		cl.send("QUIT")
		cl.expect("221 ")
	})
}
