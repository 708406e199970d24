package relay

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

// step names the call of a transaction a fault hits.
type step int

const (
	stepBegin step = iota
	stepRcpt
	stepData
)

// runTxn runs a transaction up to the first failure and says at which step
// and with what error it failed.
func runTxn(ctx context.Context, p *Pool, body string) (step, error) {
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		return stepBegin, err
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		// A broken transaction keeps answering with the same reply.
		if again := txn.Rcpt(ctx, "c@example.org"); again != err {
			return stepRcpt, again
		}
		txn.Abort()
		return stepRcpt, err
	}
	_, err = txn.Data(ctx, []byte(testHeader), strings.NewReader(body), int64(len(body)))
	if err != nil {
		if _, again := txn.Data(ctx, nil, strings.NewReader(body), int64(len(body))); again != err {
			return stepData, again
		}
	}
	return stepData, err
}

func TestHang(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		phase sink.Phase
		step  step
	}{
		{sink.PhaseGreeting, stepBegin},
		{sink.PhaseMail, stepBegin},
		{sink.PhaseRcpt, stepRcpt},
		{sink.PhaseData, stepData},
		{sink.PhaseEOD, stepData},
	} {
		for _, exts := range sinkExtensions {
			t.Run(string(tc.phase)+"/"+exts.name, func(t *testing.T) {
				e := newEnv(t)
				s := e.sink(sink.Config{Hang: tc.phase, Extensions: exts.exts})
				p := e.pool(short(testConfig(s.Addr()), timeout))
				start := time.Now()
				step, err := runTxn(context.Background(), p, "x\r\n")
				d := time.Since(start)
				if step != tc.step || asReply(t, err) != policy.ErrBackendTimout {
					t.Errorf("failed at step %d with %v, want step %d with ErrBackendTimout", step, err, tc.step)
				}
				if d < timeout || d > timeout+time.Second {
					t.Errorf("took %v, want about %v", d, timeout)
				}
				if st := p.Stats(); st.Open != 0 || st.InUse != 0 {
					t.Errorf("stats %+v: a timed-out connection must be closed", st)
				}
				if len(s.Accepted()) != 0 {
					t.Error("the sink accepted a message")
				}
			})
		}
	}
}

func TestDropDuringData(t *testing.T) {
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, exts := range sinkExtensions {
			e := newEnv(t)
			s := e.sink(sink.Config{DropAfterDataBytes: 1000, Extensions: exts.exts})
			p := e.pool(testConfig(s.Addr()))
			body := strings.Repeat(strings.Repeat("y", 78)+"\r\n", size/80)
			step, err := runTxn(context.Background(), p, body)
			if step != stepData || asReply(t, err) != policy.ErrBackendLost {
				t.Errorf("%d bytes, %s: step %d error %v, want ErrBackendLost from Data", size, exts.name, step, err)
			}
			if st := s.Stats(); st.Accepted != 0 || st.Messages != 0 {
				t.Errorf("sink stats %+v, want no message", st)
			}
			if st := p.Stats(); st.Open != 0 {
				t.Errorf("pool stats %+v", st)
			}
		}
	}
}

func TestBodyWriteTimeout(t *testing.T) {
	// The backend takes DATA (or BDAT) and then stops reading: the body
	// write must time out by itself, go-smtp would wait for ever.
	for _, ehlo := range []string{"250-scripted\r\n250 8BITMIME\r\n", "250-scripted\r\n250 CHUNKING\r\n"} {
		bodyWriteTimeout(t, ehlo)
	}
}

func bodyWriteTimeout(t *testing.T, ehlo string) {
	e := newEnv(t)
	addr := scripted(t, ehlo, func(net.Conn, *bufio.Reader) {})
	cfg := testConfig(addr)
	cfg.Timeouts.Data = 300 * time.Millisecond
	p := e.pool(cfg)
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = txn.Data(ctx, nil, &lines{n: 64 << 20}, 64<<20)
	if asReply(t, err) != policy.ErrBackendTimout {
		t.Errorf("Data: %v, want ErrBackendTimout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Data took %v", d)
	}
}

func TestEHLORefused(t *testing.T) {
	e := newEnv(t)
	addr := scripted(t, "554 5.7.1 go away\r\n", nil)
	p := e.pool(testConfig(addr))
	if _, err := p.Begin(context.Background(), MailParams{From: "a@client.test"}); asReply(t, err) != policy.ErrBackendDown {
		t.Errorf("Begin: %v, want ErrBackendDown", err)
	}
}

func TestProtocolError(t *testing.T) {
	// A reply to the final dot that is no reply: the connection is lost.
	e := newEnv(t)
	addr := scripted(t, "250 scripted\r\n", func(c net.Conn, r *bufio.Reader) {
		for {
			l, err := r.ReadString('\n')
			if err != nil || l == ".\r\n" {
				break
			}
		}
		_, _ = c.Write([]byte("2x0 garbage\r\n"))
	})
	p := e.pool(testConfig(addr))
	step, err := runTxn(context.Background(), p, "x\r\n")
	if step != stepData || asReply(t, err) != policy.ErrBackendLost {
		t.Errorf("step %d error %v, want ErrBackendLost from Data", step, err)
	}
}

func TestContextCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		phase sink.Phase
		step  step
		// deadline: the context times out rather than being cancelled.
		deadline bool
		want     *policy.Reply
	}{
		{"greeting cancelled", sink.PhaseGreeting, stepBegin, false, policy.ErrBackendDown},
		{"greeting deadline", sink.PhaseGreeting, stepBegin, true, policy.ErrBackendTimout},
		{"rcpt cancelled", sink.PhaseRcpt, stepRcpt, false, policy.ErrBackendLost},
		{"eod cancelled", sink.PhaseEOD, stepData, false, policy.ErrBackendLost},
		{"eod deadline", sink.PhaseEOD, stepData, true, policy.ErrBackendTimout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.sink(sink.Config{Hang: tc.phase})
			p := e.pool(testConfig(s.Addr())) // 2s timeouts: the context must win
			ctx, cancel := context.WithCancel(context.Background())
			if tc.deadline {
				ctx, cancel = context.WithTimeout(context.Background(), 150*time.Millisecond)
			} else {
				time.AfterFunc(150*time.Millisecond, cancel)
			}
			defer cancel()
			start := time.Now()
			step, err := runTxn(ctx, p, "x\r\n")
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v after the context ended", d)
			}
			if step != tc.step || asReply(t, err) != tc.want {
				t.Errorf("step %d error %v, want step %d %v", step, err, tc.step, tc.want)
			}
			if st := p.Stats(); st.Open != 0 {
				t.Errorf("stats %+v", st)
			}
			// A cancelled Begin is not the server's fault.
			p.mu.Lock()
			down := !p.servers[0].downUntil.IsZero()
			p.mu.Unlock()
			if down {
				t.Error("server marked down because the context ended")
			}
		})
	}
	t.Run("already done", func(t *testing.T) {
		e := newEnv(t)
		s := e.sink(sink.Config{})
		p := e.pool(testConfig(s.Addr()))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := p.Begin(ctx, MailParams{From: "a@client.test"}); asReply(t, err) != policy.ErrBackendDown {
			t.Errorf("Begin: %v", err)
		}
		if st := s.Stats(); st.Conns != 0 {
			t.Errorf("dialled with a dead context")
		}
	})
}

func TestHangOnPooledConnection(t *testing.T) {
	// A timeout on a pooled connection is not staleness: no second try.
	const timeout = 300 * time.Millisecond
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(short(testConfig(s.Addr()), timeout))
	mustSend(t, p, "x\r\n")
	s.SetConfig(func(c *sink.Config) { c.Hang = sink.PhaseMail })
	start := time.Now()
	if _, err := p.Begin(context.Background(), MailParams{From: "a@client.test"}); asReply(t, err) != policy.ErrBackendTimout {
		t.Errorf("Begin: %v, want ErrBackendTimout", err)
	}
	if d := time.Since(start); d > 2*timeout {
		t.Errorf("Begin took %v: it retried a timeout", d)
	}
	if st := p.Stats(); st.Dials != 1 || st.Open != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPooledConnectionLostAtMail(t *testing.T) {
	// The backend hangs up when MAIL arrives on a connection that already
	// carried a message, too late for the check before reuse to see it:
	// Begin moves to a new connection without the caller noticing.
	e := newEnv(t)
	addr := listen(t, serveOneMessage)
	p := e.pool(testConfig(addr))
	mustSend(t, p, "x\r\n")
	mustSend(t, p, "x\r\n")
	if st := p.Stats(); st.Dials != 2 || st.Reused != 1 {
		t.Errorf("stats %+v, want the reuse to fail over to a second dial", st)
	}
}

// serveOneMessage takes one message and closes the connection when the
// next MAIL comes.
func serveOneMessage(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	_, _ = c.Write([]byte("220 one\r\n"))
	mails := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
		case "EHLO":
			_, _ = c.Write([]byte("250 one\r\n"))
		case "MAIL":
			if mails++; mails > 1 {
				return
			}
			_, _ = c.Write([]byte("250 ok\r\n"))
		case "DATA":
			_, _ = c.Write([]byte("354 go on\r\n"))
			for line != ".\r\n" {
				if line, err = r.ReadString('\n'); err != nil {
					return
				}
			}
			_, _ = c.Write([]byte("250 queued as ONE\r\n"))
		case "QUIT":
			_, _ = c.Write([]byte("221 bye\r\n"))
			return
		default:
			_, _ = c.Write([]byte("250 ok\r\n"))
		}
	}
}
