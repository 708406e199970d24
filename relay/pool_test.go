package relay

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

func TestReuse(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	for range 3 {
		mustSend(t, p, "x\r\n")
	}
	msgs := s.Accepted()
	for _, m := range msgs {
		if m.Conn != 1 {
			t.Errorf("message %s on connection %d, want all on 1", m.ID, m.Conn)
		}
	}
	if st := s.Stats(); st.Conns != 1 || st.Ehlos != 1 || st.Rsets != 0 {
		t.Errorf("sink stats %+v, want one connection, one EHLO, no RSET", st)
	}
	if st := p.Stats(); st.Dials != 1 || st.Reused != 2 {
		t.Errorf("pool stats %+v, want 1 dial, 2 reuses", st)
	}
}

func TestAbortResetsAndReuses(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	txn.Abort()
	txn.Abort() // idempotent
	if st := p.Stats(); st.Idle != 1 || st.InUse != 0 {
		t.Errorf("pool stats after Abort %+v", st)
	}
	if err := txn.Rcpt(ctx, "c@example.org"); asReply(t, err) != policy.ErrInternal {
		t.Errorf("Rcpt after Abort: %v", err)
	}
	mustSend(t, p, "x\r\n")
	// go-smtp forgets the EHLO on RSET, so Abort greets again.
	if st := s.Stats(); st.Conns != 1 || st.Rsets != 1 || st.Ehlos != 2 {
		t.Errorf("sink stats %+v, want 1 connection, 1 RSET, 2 EHLOs", st)
	}
	if m := s.Accepted()[0]; m.Conn != 1 || len(m.Rcpts) != 1 {
		t.Errorf("message %+v: the aborted recipient leaked into it", m)
	}
}

func TestMaxMessages(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(s.Addr())
	cfg.Pool.MaxMessages = 2
	p := e.pool(cfg)
	for range 5 {
		mustSend(t, p, "x\r\n")
	}
	var conns []int
	for _, m := range s.Accepted() {
		conns = append(conns, m.Conn)
	}
	if want := []int{1, 1, 2, 2, 3}; !slices.Equal(conns, want) {
		t.Errorf("connections %v, want %v", conns, want)
	}
	// The retired connections said QUIT and are gone.
	eventually(t, "retired connections to close", func() bool { return s.OpenConns() == 1 })
	if st := p.Stats(); st.Open != 1 || st.Idle != 1 {
		t.Errorf("pool stats %+v", st)
	}
}

func TestMaxIdle(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(s.Addr())
	cfg.Pool.MaxIdle = 1
	p := e.pool(cfg)
	ctx := context.Background()
	var txns []*Txn
	for range 3 {
		txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
		if err != nil {
			t.Fatal(err)
		}
		txns = append(txns, txn)
	}
	if st := p.Stats(); st.Open != 3 || st.InUse != 3 {
		t.Errorf("stats %+v, want 3 in use", st)
	}
	for _, txn := range txns {
		txn.Abort()
	}
	if st := p.Stats(); st.Open != 1 || st.Idle != 1 || st.InUse != 0 {
		t.Errorf("stats %+v, want 1 idle", st)
	}
	eventually(t, "surplus connections to close", func() bool { return s.OpenConns() == 1 })
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(s.Addr())
	cfg.Pool.IdleTimeout = 100 * time.Millisecond
	p := e.pool(cfg)
	mustSend(t, p, "x\r\n")
	// The janitor closes it, with QUIT.
	if err := s.WaitIdle(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Open != 0 || st.Idle != 0 {
		t.Errorf("stats %+v, want nothing open", st)
	}
	mustSend(t, p, "x\r\n")
	if st := s.Stats(); st.Conns != 2 {
		t.Errorf("sink saw %d connections, want 2", st.Conns)
	}
}

func TestIdleTimeoutOnGet(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	mustSend(t, p, "x\r\n")
	// Age the idle connection behind the janitor's back.
	p.mu.Lock()
	p.servers[0].idle[0].lastUsed = time.Now().Add(-time.Minute)
	p.mu.Unlock()
	mustSend(t, p, "x\r\n")
	if st := p.Stats(); st.Reused != 0 || st.Dials != 2 {
		t.Errorf("stats %+v: the expired connection was reused", st)
	}
	eventually(t, "the expired connection to close", func() bool { return s.OpenConns() == 1 })
}

func TestStaleIdleConnection(t *testing.T) {
	t.Run("closed by backend", func(t *testing.T) {
		e := newEnv(t)
		// The sink drops connections idle for 100ms, without a word.
		s := e.sink(sink.Config{IdleTimeout: 100 * time.Millisecond})
		p := e.pool(testConfig(s.Addr()))
		mustSend(t, p, "x\r\n")
		if err := s.WaitIdle(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		mustSend(t, p, "x\r\n")
		if st := p.Stats(); st.Reused != 0 || st.Dials != 2 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("backend restarted", func(t *testing.T) {
		e := newEnv(t)
		s := e.sink(sink.Config{})
		p := e.pool(testConfig(s.Addr()))
		mustSend(t, p, "x\r\n")
		addr := s.Addr()
		_ = s.Close()
		s2 := e.sink(sink.Config{Addr: addr})
		mustSend(t, p, "x\r\n")
		if n := len(s2.Accepted()); n != 1 {
			t.Errorf("new sink got %d messages", n)
		}
	})
	t.Run("421 to MAIL on a pooled connection", func(t *testing.T) {
		// The check before reuse cannot see a 421 that is still on its
		// way; MAIL then meets it, and Begin retries on a new connection.
		e := newEnv(t)
		s := e.sink(sink.Config{})
		p := e.pool(testConfig(s.Addr()))
		mustSend(t, p, "x\r\n")
		var once atomic.Bool
		s.SetConfig(func(c *sink.Config) {
			c.OnMail = func(string, string) *sink.Reply {
				if once.CompareAndSwap(false, true) {
					return &sink.Reply{Code: 421, Text: "4.4.2 Idle timeout"}
				}
				return nil
			}
		})
		mustSend(t, p, "x\r\n")
		if m := s.Accepted(); len(m) != 2 || m[1].Conn != 2 {
			t.Errorf("messages %+v, want the second on a new connection", m)
		}
	})
	t.Run("421 to MAIL on a new connection", func(t *testing.T) {
		e := newEnv(t)
		s := e.sink(sink.Config{OnMail: func(string, string) *sink.Reply {
			return &sink.Reply{Code: 421, Text: "4.3.2 Going down"}
		}})
		p := e.pool(testConfig(s.Addr()))
		_, err := p.Begin(context.Background(), MailParams{From: "a@client.test"})
		want := policy.Reply{Code: 451, Enhanced: [3]int{4, 3, 2}, Text: "Going down", Reason: policy.ReasonBackendMail}
		if got := asReply(t, err); *got != want {
			t.Errorf("Begin = %+v, want %+v", *got, want)
		}
		if st := p.Stats(); st.Open != 0 || st.Dials != 1 {
			t.Errorf("stats %+v: want the connection closed and no retry", st)
		}
	})
}

func TestAliveCheck(t *testing.T) {
	for _, peek := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		var raw net.Conn = c
		if !peek {
			raw = struct{ net.Conn }{c} // no descriptor: deadline fallback
		}
		cn := &conn{raw: raw}
		if !cn.alive() {
			t.Errorf("peek=%v: quiet connection reported dead", peek)
		}
		_, _ = srv.Write([]byte("421 4.4.2 timeout\r\n"))
		time.Sleep(50 * time.Millisecond)
		if cn.alive() {
			t.Errorf("peek=%v: connection with pending data reported alive", peek)
		}
		_ = srv.Close()
		_ = c.Close()
		_ = ln.Close()
	}
}

func TestMaxOpen(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(s.Addr())
	cfg.Pool.MaxOpen = 2
	cfg.Timeouts.Connect = 300 * time.Millisecond
	p := e.pool(cfg)
	ctx := context.Background()
	a, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := p.Begin(ctx, MailParams{From: "a@client.test"}); asReply(t, err) != policy.ErrBackendDown {
		t.Errorf("third Begin: %v, want ErrBackendDown", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("third Begin failed after %v, want about the Connect timeout", d)
	}
	// A waiting Begin gets the connection that comes back.
	var wg sync.WaitGroup
	var got *Txn
	var gotErr error
	wg.Go(func() { got, gotErr = p.Begin(ctx, MailParams{From: "a@client.test"}) })
	time.Sleep(50 * time.Millisecond)
	a.Abort()
	wg.Wait()
	if gotErr != nil {
		t.Fatalf("waiting Begin: %v", gotErr)
	}
	got.Abort()
	b.Abort()
	if st := s.Stats(); st.Conns != 2 {
		t.Errorf("sink saw %d connections, want 2", st.Conns)
	}
	// Cancelling the context ends the wait too.
	a, _ = p.Begin(ctx, MailParams{From: "a@client.test"})
	b, _ = p.Begin(ctx, MailParams{From: "a@client.test"})
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := p.Begin(cctx, MailParams{From: "a@client.test"}); asReply(t, err) != policy.ErrBackendDown {
		t.Errorf("cancelled Begin: %v", err)
	}
	a.Abort()
	b.Abort()
}

func TestMaxOpenEvictsOtherServer(t *testing.T) {
	// The only slot is held by an idle connection to server 2 (from a
	// failover); server 1 is back and must get it.
	e := newEnv(t)
	s1 := e.sink(sink.Config{})
	s2 := e.sink(sink.Config{})
	cfg := testConfig(s1.Addr(), s2.Addr())
	cfg.Pool.MaxOpen = 1
	p := e.pool(cfg)
	p.mu.Lock()
	p.servers[0].downUntil = time.Now().Add(time.Hour)
	p.mu.Unlock()
	mustSend(t, p, "x\r\n")
	p.markUp(p.servers[0])
	mustSend(t, p, "x\r\n")
	if len(s1.Accepted()) != 1 || len(s2.Accepted()) != 1 {
		t.Errorf("s1 got %d, s2 got %d; want 1 each", len(s1.Accepted()), len(s2.Accepted()))
	}
	eventually(t, "the evicted connection to close", func() bool { return s2.OpenConns() == 0 })
}

// countListener accepts connections, counts them and closes them at once:
// a server that is up but fails every greeting.
func countListener(t *testing.T) (string, *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), &n
}

func TestFailover(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(closedAddr(t), s.Addr())
	cfg.Pool.MaxIdle = 0 // a new connection every time
	p := e.pool(cfg)
	txn, err := p.Begin(context.Background(), MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if txn.Backend() != s.Addr() {
		t.Errorf("backend %s, want %s", txn.Backend(), s.Addr())
	}
	txn.Abort()
	mustSend(t, p, "x\r\n")
	if n := len(s.Accepted()); n != 1 {
		t.Errorf("sink got %d messages", n)
	}
}

func TestRetryDown(t *testing.T) {
	e := newEnv(t)
	bad, tries := countListener(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(bad, s.Addr())
	cfg.Pool.MaxIdle = 0
	cfg.RetryDown = 300 * time.Millisecond
	p := e.pool(cfg)
	mustSend(t, p, "x\r\n")
	mustSend(t, p, "x\r\n") // server 1 is down: skipped
	if n := tries.Load(); n != 1 {
		t.Errorf("server 1 tried %d times within RetryDown, want 1", n)
	}
	time.Sleep(350 * time.Millisecond)
	mustSend(t, p, "x\r\n")
	if n := tries.Load(); n != 2 {
		t.Errorf("server 1 tried %d times after RetryDown, want 2", n)
	}
	if n := len(s.Accepted()); n != 3 {
		t.Errorf("sink got %d messages, want 3", n)
	}
}

func TestAllDown(t *testing.T) {
	e := newEnv(t)
	bad1, tries1 := countListener(t)
	bad2, tries2 := countListener(t)
	p := e.pool(testConfig(bad1, closedAddr(t), bad2))
	for i := range 2 {
		_, err := p.Begin(context.Background(), MailParams{From: "a@client.test"})
		if asReply(t, err) != policy.ErrBackendDown {
			t.Errorf("Begin: %v, want ErrBackendDown", err)
		}
		// All down is no reason to try none: each is tried every time.
		if n1, n2 := tries1.Load(), tries2.Load(); n1 != int32(i+1) || n2 != int32(i+1) {
			t.Errorf("attempt %d: tries %d, %d", i+1, n1, n2)
		}
	}
	if st := p.Stats(); st.Open != 0 || st.InUse != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGreetingRefused(t *testing.T) {
	for _, code := range []int{421, 554} {
		e := newEnv(t)
		s := e.sink(sink.Config{Greeting: &sink.Reply{Code: code, Text: "4.3.2 not now"}})
		p := e.pool(testConfig(s.Addr()))
		if _, err := p.Begin(context.Background(), MailParams{From: "a@client.test"}); asReply(t, err) != policy.ErrBackendDown {
			t.Errorf("greeting %d: %v, want ErrBackendDown", code, err)
		}
	}
}

func TestProbe(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(closedAddr(t), s.Addr()))
	if err := p.Probe(context.Background()); err != nil {
		t.Errorf("Probe: %v", err)
	}
	if st := p.Stats(); st.Open != 0 {
		t.Errorf("Probe left %+v", st)
	}
	p2 := e.pool(testConfig(closedAddr(t)))
	if err := p2.Probe(context.Background()); err == nil {
		t.Error("Probe of a closed port succeeded")
	}
}

// countConn counts the writes that reach the network.
type countConn struct {
	*net.TCPConn
	mu     sync.Mutex
	writes []int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	return c.TCPConn.Write(p)
}

func (c *countConn) SyscallConn() (syscall.RawConn, error) { return c.TCPConn.SyscallConn() }

func (c *countConn) count() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.writes...)
}

func TestFewWrites(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	var cc *countConn
	p.wrap = func(c net.Conn) net.Conn {
		cc = &countConn{TCPConn: c.(*net.TCPConn)}
		return cc
	}
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	before := len(cc.count())
	body := strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
	if _, err := txn.Data(ctx, []byte(testHeader), strings.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	w := cc.count()[before:]
	// "DATA\r\n", then the message and its final dot in one write.
	if len(w) != 2 || w[0] != len("DATA\r\n") || w[1] != len(testHeader)+len(body)+len(".\r\n") {
		t.Errorf("writes during Data: %v, want [6 %d]", w, len(testHeader)+len(body)+3)
	}
	if got := string(s.Accepted()[0].Data); got != testHeader+body {
		t.Errorf("message damaged")
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Abort()
	mustSend(t, p, "x\r\n") // on a second connection, left idle
	_ = p.Close()
	_ = p.Close()
	if st := s.Stats(); st.Conns != 2 {
		t.Fatalf("sink saw %d connections", st.Conns)
	}
	eventually(t, "the idle connection to close", func() bool { return s.OpenConns() == 1 })
	// The transaction in progress finishes; its connection closes after.
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Data(ctx, nil, strings.NewReader("x\r\n"), int64(len("x\r\n"))); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIdle(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Begin(ctx, MailParams{}); asReply(t, err) != policy.ErrBackendDown {
		t.Errorf("Begin after Close: %v", err)
	}
	if st := p.Stats(); st.Open != 0 || st.InUse != 0 || st.Idle != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestConcurrent(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(s.Addr())
	cfg.Pool.MaxOpen = 4
	cfg.Pool.MaxMessages = 7
	p := e.pool(cfg)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if _, err := send(t, p, MailParams{From: "a@client.test"}, []string{"b@example.org"}, "x\r\n"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(s.Accepted()); n != 160 {
		t.Errorf("sink got %d messages, want 160", n)
	}
	if st := p.Stats(); st.Open > 4 || st.InUse != 0 {
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkRelay4KiB(b *testing.B) {
	s, err := sink.Start(sink.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	cfg := testConfig(s.Addr())
	cfg.Pool.MaxMessages = 0
	p, err := New("gw.test", cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	body := strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
	header := []byte(testHeader)
	ctx := context.Background()
	b.SetBytes(int64(len(body) + len(header)))
	b.ReportAllocs()
	for b.Loop() {
		txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
		if err != nil {
			b.Fatal(err)
		}
		if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
			b.Fatal(err)
		}
		if _, err := txn.Data(ctx, header, strings.NewReader(body), int64(len(body))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
