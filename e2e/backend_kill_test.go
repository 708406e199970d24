package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"
)

// outcome is how one SMTP session of the test's client ended.
type outcome struct {
	stage        string // the command whose reply ended the session ("." for the final dot), or where the transport failed
	code         int    // the final reply's code; 0 when there was none
	enhanced     string
	text         string // the reply text, without code and enhanced code
	err          error  // a transport error: the session ended without a reply
	afterRestart bool   // sent after the second smtp-sink was up
}

func (o outcome) String() string {
	if o.code == 0 {
		return fmt.Sprintf("no reply at %s: %v", o.stage, o.err)
	}
	return fmt.Sprintf("%d %s %s (at %s)", o.code, o.enhanced, o.text, o.stage)
}

func (o outcome) ref() string {
	if m := refInReply.FindStringSubmatch(o.text); m != nil {
		return m[1]
	}
	return ""
}

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// setReply records the reply in err (a *textproto.Error, which is how
// textproto reports a reply, wanted or not) or the transport error, and
// reports whether there was a reply.
func (o *outcome) setReply(err error) bool {
	var te *textproto.Error
	if !errors.As(err, &te) {
		o.err = err
		return false
	}
	o.code, o.text = te.Code, te.Msg
	if first, rest, ok := strings.Cut(o.text, " "); ok && enhancedRE.MatchString(first) {
		o.enhanced, o.text = first, rest
	}
	return true
}

// sendSMTP delivers msg (complete CRLF lines) to rcpt in a new SMTP session
// and returns the reply that ended it: the one to the final dot, or the
// first one that refused something.
func sendSMTP(addr, rcpt string, msg []byte) (o outcome) {
	o.stage = "connect"
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		o.err = err
		return o
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	tc := textproto.NewConn(conn)
	defer tc.Close()

	// step reads the reply to what was last sent; ok is false when the
	// reply does not have the class want, and o then describes it.
	step := func(stage string, want int) bool {
		o.stage = stage
		_, _, err := tc.ReadResponse(want)
		if err == nil {
			return true
		}
		if !o.setReply(err) {
			return false
		}
		tc.PrintfLine("QUIT") // best effort
		return false
	}
	cmd := func(stage string, want int, format string, args ...any) bool {
		if err := tc.PrintfLine(format, args...); err != nil {
			o.stage, o.err = stage, err
			return false
		}
		return step(stage, want)
	}
	if !step("greeting", 2) ||
		!cmd("EHLO", 2, "EHLO client.test") ||
		!cmd("MAIL", 2, "MAIL FROM:<sender@example.test> SIZE=%d", len(msg)) ||
		!cmd("RCPT", 2, "RCPT TO:<%s>", rcpt) ||
		!cmd("DATA", 3, "DATA") {
		return o
	}
	o.stage = "."
	_, werr := tc.W.Write(dotStuff(msg))
	if werr == nil {
		werr = tc.W.Flush()
	}
	// On a write error the server may still have replied before it
	// closed the connection (to a line too long, say): read that reply.
	code, text, err := tc.ReadResponse(2)
	if werr != nil && !errors.As(err, new(*textproto.Error)) {
		o.err = fmt.Errorf("writing the message: %w (then reading the reply: %v)", werr, err)
		return o
	}
	if err == nil {
		err = &textproto.Error{Code: code, Msg: text}
	}
	if !o.setReply(err) {
		return o
	}
	tc.PrintfLine("QUIT")
	tc.ReadResponse(2)
	return o
}

// TestBackendKilledMidRun sends 300 messages through the gateway with 8
// concurrent clients, SIGKILLs smtp-sink after about a third, and starts a
// new one on the same port 1.5 s later. The gateway relays synchronously,
// so every message it said 250 to must be at the backend, and every other
// message must have been refused with a 4xx, never a 5xx.
func TestBackendKilledMidRun(t *testing.T) {
	t.Parallel()
	sinkBin := testutil.Need(t, "smtp-sink", "postfix")

	dumpDir := newDumpDir(t)
	sinkAddr := loopback(testutil.FreePort(t))
	sink := startSink(t, sinkBin, sinkAddr, dumpDir)
	g := startGateway(t, sinkAddr)

	const (
		total   = 300
		senders = 8
		killAt  = total / 3 // completed sessions when the sink is killed
		// holdAt is the first message sent only once the new sink is up,
		// so the run also shows the gateway recovering.
		holdAt = 2 * total / 3
	)
	rng := rand.New(rand.NewSource(1511))
	msgs := make([][]byte, total)
	for i := range msgs {
		size := 20<<10 + rng.Intn(180<<10+1)
		// Without 998-byte lines starting with a dot: content edge cases
		// are TestSwaksThroughGateway's and TestDotStuffedLongLine's
		// business; here a 5xx can only be a mishandled backend failure.
		msgs[i] = genMessage(rng, killMsgID(i), killRcpt(i), i, size, false)
	}

	results := make([]outcome, total)
	var completed atomic.Int32
	killNow := make(chan struct{})
	restarted := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(restarted) }) }
	defer release() // lets the feeder finish if the test fails early
	work := make(chan int)
	go func() {
		defer close(work)
		for i := range total {
			if i == holdAt {
				<-restarted
			}
			work <- i
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range work {
				after := isClosed(restarted)
				results[i] = sendSMTP(g.addr, killRcpt(i), msgs[i])
				results[i].afterRestart = after
				if completed.Add(1) == killAt {
					close(killNow)
				}
			}
		})
	}

	<-killNow
	sink.kill()
	killed := time.Now()
	t.Logf("SIGKILLed smtp-sink after %d completed sessions, %v into the run", killAt, killed.Sub(start).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	startSink(t, sinkBin, sinkAddr, dumpDir)
	t.Logf("new smtp-sink listening %v after the kill", time.Since(killed).Round(time.Millisecond))
	release()
	wg.Wait()
	t.Logf("%d sessions done in %v", total, time.Since(start).Round(time.Millisecond))

	g.stop(t)
	g.checkSpoolEmpty(t)

	// What reached the backend, by Message-ID.
	byID := map[string][]*sinkDump{}
	unparsable := 0
	for _, d := range readDumps(t, dumpDir) {
		switch {
		case d.msgID != "":
			byID[d.msgID] = append(byID[d.msgID], d)
		default:
			unparsable++ // cut short by the kill before the Message-ID, or no DATA
		}
	}

	recs := map[string]*record{}
	for _, r := range readVerdicts(t, g.verdicts) {
		recs[r.Ref] = r
	}

	var accepted, deferred, deferredArrived, partial, acceptedAfter int
	deferredAt := map[string]int{}
	var dupes []string
	for i, o := range results {
		id := killMsgID(i)
		want := expectedDump(msgs[i])
		dumps := byID[id]
		var complete []*sinkDump
		for _, d := range dumps {
			if d.err == nil && bytes.Equal(d.content, want) {
				complete = append(complete, d)
			} else {
				partial++
			}
		}
		delete(byID, id)

		if o.code != 0 && o.ref() == "" {
			t.Errorf("message %d: reply %v does not end with \"(ref <26-char id>)\"", i, o)
		}
		switch {
		case o.stage == "." && o.code == 250:
			accepted++
			if o.afterRestart {
				acceptedAfter++
			}
			if len(complete) == 0 {
				detail := "no dump at all"
				if len(dumps) > 0 {
					detail = fmt.Sprintf("%d incomplete dumps; the first: ", len(dumps))
					if d := dumps[0]; d.err != nil {
						detail += d.err.Error()
					} else {
						detail += firstDiff(d.content, want)
					}
				}
				t.Errorf("LOST: message %d %s got %v but smtp-sink has no complete copy (%s)", i, id, o, detail)
				continue
			}
			if len(complete) > 1 {
				t.Logf("message %d %s got 250 and is at smtp-sink %d times", i, id, len(complete))
			}
			checkReceived(t, complete[0], "client.test", killRcpt(i))
			if got := complete[0].ref(); got != o.ref() {
				t.Errorf("message %d: reply ref %q but Received id %q", i, o.ref(), got)
			}
		case o.code/100 == 4:
			deferred++
			deferredAt[o.stage]++
			if !strings.HasPrefix(o.enhanced, "4.") {
				t.Errorf("message %d: %v: the enhanced code does not start with \"4.\"", i, o)
			}
			if len(complete) > 0 {
				deferredArrived++
				dupes = append(dupes, fmt.Sprintf("%d (%s)", i, o.stage))
			}
		case o.code == 0:
			t.Errorf("message %d: the gateway gave no reply, want 250 or a 4xx: %v", i, o)
		default:
			t.Errorf("message %d: %v: a backend failure must give a 4xx, never anything else", i, o)
		}

		// The verdict record says what the client was told.
		if ref := o.ref(); ref != "" {
			r := recs[ref]
			switch {
			case r == nil:
				t.Errorf("message %d: no verdict record with the ref of reply %v", i, o)
			case o.stage == ".":
				if r.Reply == nil || r.Reply.Code != o.code || r.Reply.Enhanced != o.enhanced {
					t.Errorf("message %d: client got %v, verdict record says %s", i, o, r.line)
				}
				if wantAction := map[bool]string{true: "accept", false: "tempfail"}[o.code == 250]; r.Action != wantAction {
					t.Errorf("message %d: client got %v, verdict action %q, want %q", i, o, r.Action, wantAction)
				}
			}
		}
	}
	for id, ds := range byID {
		t.Errorf("smtp-sink has %d dumps of a message the test did not send, Message-ID %q: %s", len(ds), id, ds[0].path)
	}

	t.Logf("accepted (250): %d, of which %d sent after the restart", accepted, acceptedAfter)
	t.Logf("deferred (4xx): %d, by the command refused: %v", deferred, deferredAt)
	t.Logf("deferred but complete at smtp-sink (backend took it, its reply was lost; duplicates on retry): %d %v", deferredArrived, dupes)
	t.Logf("incomplete dumps (transactions cut by the kill): %d, without a Message-ID: %d", partial, unparsable)
	if accepted == 0 || deferred == 0 {
		t.Errorf("the run proves nothing: want at least one accepted and one deferred message, got %d and %d", accepted, deferred)
	}
	if acceptedAfter == 0 {
		t.Errorf("no message sent after smtp-sink came back was accepted: the gateway did not recover")
	}
}

func killMsgID(i int) string { return fmt.Sprintf("<kill-%d@example.test>", i) }
func killRcpt(i int) string  { return fmt.Sprintf("rcpt%d@dest.test", i) }

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
