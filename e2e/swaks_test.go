package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"
)

// swaksMsg is one message TestSwaksThroughGateway sends.
type swaksMsg struct {
	n        int
	msgID    string
	rcpt     string
	file     string
	wire     []byte // the message content swaks sends (see swaksWire)
	pipeline bool
	out      string // swaks output
	err      error  // swaks exit status
}

// swaksWire is what swaks sends as the message content for a --data file
// holding msg (complete CRLF lines, no '%' tokens, no "\n" escapes, not
// starting with "From ", not ending with a "." line): the file, then
// "\r\n." and CRLF, i.e. the file plus one empty line. swaks always adds
// "\r\n." to the data (`$n{data} .= "\r\n."` in swaks 20201014), whether or
// not the file ends with a line break.
func swaksWire(msg []byte) []byte {
	return append(slices.Clip(msg), '\r', '\n')
}

// swaksEnv is the environment without SWAKS_* variables, which swaks
// reads as options.
func swaksEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SWAKS_") {
			env = append(env, kv)
		}
	}
	return env
}

func runSwaks(ctx context.Context, swaks, port, rcpt, file string, extra ...string) (string, error) {
	args := []string{
		"--server", "127.0.0.1", "--port", port,
		"--helo", "client.test",
		"--from", "sender@example.test",
		"--to", rcpt,
		"--data", "@" + file,
		"--silent", "2",
	}
	cmd := exec.CommandContext(ctx, swaks, append(args, extra...)...)
	cmd.Env = swaksEnv()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSwaksThroughGateway sends 200 messages of random sizes with swaks
// through the gateway to smtp-sink and checks each arrives unaltered but
// for the gateway's one Received header, and that the verdict log has one
// accept record per message. A recipient outside the gateway's domains
// gets 550 5.7.1 and never reaches the backend.
func TestSwaksThroughGateway(t *testing.T) {
	t.Parallel()
	sinkBin := testutil.Need(t, "smtp-sink", "postfix")
	swaks := testutil.Need(t, "swaks", "swaks")

	dumpDir := newDumpDir(t)
	sinkAddr := loopback(testutil.FreePort(t))
	startSink(t, sinkBin, sinkAddr, dumpDir)
	g := startGateway(t, sinkAddr)
	_, port, _ := net.SplitHostPort(g.addr)

	const total = 200
	rng := rand.New(rand.NewSource(20261122))
	msgDir := t.TempDir()
	msgs := make([]*swaksMsg, total)
	for i := range msgs {
		var size int
		switch {
		case i == 0:
			size = 200
		case i == 1:
			size = 300 << 10
		case rng.Intn(2) == 0: // small ones, where most mail is
			size = 200 + rng.Intn(16<<10)
		default:
			size = 200 + rng.Intn(300<<10-200+1)
		}
		m := &swaksMsg{
			n:        i,
			msgID:    fmt.Sprintf("<e2e-%d@example.test>", i),
			rcpt:     fmt.Sprintf("rcpt%d@dest.test", i),
			file:     filepath.Join(msgDir, fmt.Sprintf("msg%03d.eml", i)),
			pipeline: i%10 == 5,
		}
		data := genMessage(rng, m.msgID, m.rcpt, i, size, true)
		m.wire = swaksWire(data)
		if err := os.WriteFile(m.file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}

	// Only a guard against a hung swaks: 200 runs take about 15 s on an
	// idle 2-core machine, but much longer on a loaded one.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	work := make(chan *swaksMsg)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for m := range work {
				var extra []string
				if m.pipeline {
					extra = append(extra, "--pipeline")
				}
				m.out, m.err = runSwaks(ctx, swaks, port, m.rcpt, m.file, extra...)
			}
		})
	}
	for _, m := range msgs {
		work <- m
	}
	close(work)
	wg.Wait()
	t.Logf("swaks sent %d messages in %v", total, time.Since(start).Round(time.Millisecond))

	failed := 0
	for _, m := range msgs {
		if m.err != nil {
			failed++
			if failed <= 10 {
				t.Errorf("message %d (%d bytes, pipeline=%v): swaks: %v\n%s", m.n, len(m.wire), m.pipeline, m.err, m.out)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d swaks runs failed", failed, total)
	}

	// A recipient in a domain the gateway does not serve.
	denied := filepath.Join(msgDir, "denied.eml")
	const deniedID = "<e2e-denied@example.test>"
	if err := os.WriteFile(denied, genMessage(rng, deniedID, "x@elsewhere.test", -1, 500, true), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runSwaks(ctx, swaks, port, "x@elsewhere.test", denied)
	if err == nil {
		t.Errorf("swaks --to x@elsewhere.test exited 0, want a failure (relay denied)\n%s", out)
	}
	if !strings.Contains(out, "550 5.7.1") {
		t.Errorf("swaks --to x@elsewhere.test: output lacks \"550 5.7.1\":\n%s", out)
	}

	g.stop(t) // every verdict written, every backend connection closed
	g.checkSpoolEmpty(t)

	// Every message arrived once, unaltered but for one Received header.
	byID := map[string][]*sinkDump{}
	noData := 0
	for _, d := range readDumps(t, dumpDir) {
		for _, r := range d.rcpts {
			if strings.Contains(r, "elsewhere.test") {
				t.Errorf("%s: smtp-sink saw the relay-denied recipient %s", d.path, r)
			}
		}
		switch {
		case !d.hasData && d.err != nil:
			noData++ // a backend transaction without DATA
		case d.err != nil:
			t.Errorf("%s: %v", d.path, d.err)
		default:
			byID[d.msgID] = append(byID[d.msgID], d)
		}
	}
	if noData > 0 {
		t.Logf("%d smtp-sink dumps of backend transactions that never reached DATA", noData)
	}
	if ds := byID[deniedID]; len(ds) > 0 {
		t.Errorf("the relay-denied message reached smtp-sink: %s", ds[0].path)
	}
	delete(byID, deniedID)
	refMsg := map[string]*swaksMsg{} // Received id -> message
	arrived := 0
	for _, m := range msgs {
		ds := byID[m.msgID]
		delete(byID, m.msgID)
		if len(ds) == 0 {
			if m.err == nil {
				t.Errorf("message %d %s: swaks succeeded but smtp-sink has no copy", m.n, m.msgID)
			}
			continue
		}
		arrived++
		if len(ds) > 1 {
			t.Errorf("message %d %s: smtp-sink has %d copies", m.n, m.msgID, len(ds))
		}
		d := ds[0]
		if want := expectedDump(m.wire); string(d.content) != string(want) {
			t.Errorf("message %d %s (%s, pipeline=%v): altered between swaks and smtp-sink: %s",
				m.n, m.msgID, d.path, m.pipeline, firstDiff(d.content, want))
		}
		if want := []string{"<" + m.rcpt + ">"}; !slices.Equal(d.rcpts, want) {
			t.Errorf("message %d: smtp-sink got recipients %q, want %q", m.n, d.rcpts, want)
		}
		checkReceived(t, d, "client.test", m.rcpt)
		refMsg[d.ref()] = m
	}
	for id, ds := range byID {
		t.Errorf("smtp-sink has %d dumps of a message the test did not send, Message-ID %q: %s", len(ds), id, ds[0].path)
	}

	// The verdict log: one accept record per message, with the backend's
	// reply, matching the Received header's id.
	recs := readVerdicts(t, g.verdicts)
	accepts := 0
	refs := map[string]bool{}
	noQueueID := 0
	sawDenied := false
	others := 0
	for _, r := range recs {
		for _, rc := range r.Rcpts {
			if rc.Addr == "x@elsewhere.test" && rc.Reply.Code == 550 && rc.Reply.Enhanced == "5.7.1" && r.Action == "reject" {
				sawDenied = true
			}
		}
		if r.Action != "accept" {
			if others++; others <= 5 && !strings.Contains(r.line, "x@elsewhere.test") {
				t.Logf("verdict record that is not an accept: %s", r.line)
			}
			continue
		}
		accepts++
		if refs[r.Ref] {
			t.Errorf("verdict ref %q used twice", r.Ref)
		}
		refs[r.Ref] = true
		if len(r.Ref) != 26 {
			t.Errorf("verdict ref %q is not 26 characters: %s", r.Ref, r.line)
		}
		if r.Reply == nil || r.Reply.Code != 250 || !strings.HasSuffix(r.Reply.Text, " (ref "+r.Ref+")") {
			t.Errorf("accept record without a 250 reply ending in its ref: %s", r.line)
		}
		switch {
		case r.Relay == nil:
			t.Errorf("accept record without relay: %s", r.line)
		case r.Relay.Code != 250 || r.Relay.Backend != sinkAddr:
			t.Errorf("accept record: relay = %+v, want code 250 from backend %s: %s", *r.Relay, sinkAddr, r.line)
		case r.Relay.QueueID == "":
			// smtp-sink (Postfix 3.7) answers the final dot with a bare
			// "250 2.0.0 Ok": there is no queue id to record. Any reply
			// naming one must have it extracted.
			noQueueID++
			if strings.Contains(r.Relay.Text, "queued as") {
				t.Errorf("accept record: relay.queue_id empty though the backend said %q: %s", r.Relay.Text, r.line)
			}
		}
		m := refMsg[r.Ref]
		if m == nil {
			t.Errorf("accept record %s matches no Received header id at smtp-sink: %s", r.Ref, r.line)
			continue
		}
		delete(refMsg, r.Ref)
		if r.MessageID != m.msgID {
			t.Errorf("accept record %s: message_id %q, but the message with that Received id is %s", r.Ref, r.MessageID, m.msgID)
		}
		if r.Size != int64(len(m.wire)) {
			t.Errorf("accept record %s (message %d): size %d, want %d (the message as received, before the gateway's header)", r.Ref, m.n, r.Size, len(m.wire))
		}
		if len(r.Rcpts) != 1 || r.Rcpts[0].Addr != m.rcpt {
			t.Errorf("accept record %s: rcpts do not name just %s: %s", r.Ref, m.rcpt, r.line)
		}
	}
	if accepts != total {
		t.Errorf("verdict log has %d accept records, want %d", accepts, total)
	}
	for ref, m := range refMsg {
		t.Errorf("message %d arrived with Received id %q, which has no accept record", m.n, ref)
	}
	if !sawDenied {
		t.Errorf("no reject record with rcpt x@elsewhere.test and reply 550 5.7.1 in the verdict log")
	}
	if noQueueID > 0 {
		t.Logf("%d accept records have no relay.queue_id: smtp-sink's reply to the final dot names none", noQueueID)
	}
	t.Logf("%d messages arrived at smtp-sink, %d accept records", arrived, accepts)
}
