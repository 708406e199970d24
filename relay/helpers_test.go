package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

// testConfig is a backend configuration with timeouts short enough for
// tests and long enough for -race on a busy machine.
func testConfig(servers ...string) config.Backend {
	return config.Backend{
		Servers: servers,
		TLS:     config.BackendTLS{Mode: modeNone},
		Timeouts: config.BackendTimeouts{
			Connect: 2 * time.Second,
			Command: 2 * time.Second,
			Data:    2 * time.Second,
			Final:   2 * time.Second,
		},
		Pool: config.Pool{
			MaxIdle:     4,
			MaxOpen:     8,
			IdleTimeout: 10 * time.Second,
			MaxMessages: 100,
		},
		RetryDown: 10 * time.Second,
	}
}

// short makes every timeout d, for tests that wait for one.
func short(cfg config.Backend, d time.Duration) config.Backend {
	cfg.Timeouts = config.BackendTimeouts{Connect: d, Command: d, Data: d, Final: d}
	return cfg
}

// env is one test's sinks and pool. Its cleanup closes the pool, checks
// that no connection is left at any sink, closes the sinks and waits for the
// goroutine count to return to where it was.
type env struct {
	t     testing.TB
	sinks []*sink.Server
	pools []*Pool
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t}
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		for _, p := range e.pools {
			if err := p.Close(); err != nil {
				t.Errorf("Pool.Close: %v", err)
			}
		}
		for _, s := range e.sinks {
			if err := s.WaitIdle(3 * time.Second); err != nil {
				t.Errorf("after Pool.Close: %v", err)
			}
			_ = s.Close()
		}
		checkGoroutines(t, base)
	})
	return e
}

// checkGoroutines waits for the goroutine count to come back to base.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) sink(cfg sink.Config) *sink.Server {
	e.t.Helper()
	s, err := sink.Start(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sinks = append(e.sinks, s)
	return s
}

func (e *env) pool(cfg config.Backend) *Pool {
	e.t.Helper()
	p, err := New("gw.test", cfg, testLogger(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	e.pools = append(e.pools, p)
	return p
}

// testLogger logs at debug level into the test's output, shown with -v or
// on failure, so the exchanges can be read when a test breaks.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&syncWriter{w: t.Output()}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncWriter struct {
	mu sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

const testHeader = "Received: from client.test by gw.test; Sat, 22 Nov 2025 12:00:00 +0000\r\n"

// send runs a whole transaction and returns Data's result.
func send(t testing.TB, p *Pool, m MailParams, rcpts []string, body string) (*Result, error) {
	t.Helper()
	ctx := context.Background()
	txn, err := p.Begin(ctx, m)
	if err != nil {
		return nil, err
	}
	for _, r := range rcpts {
		if err := txn.Rcpt(ctx, r); err != nil {
			txn.Abort()
			return nil, err
		}
	}
	return txn.Data(ctx, []byte(testHeader), strings.NewReader(body), int64(len(body)))
}

// mustSend is send for transactions that must succeed.
func mustSend(t testing.TB, p *Pool, body string) *Result {
	t.Helper()
	res, err := send(t, p, MailParams{From: "a@client.test"}, []string{"b@example.org"}, body)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return res
}

// asReply checks that err is a *policy.Reply, as every error of the
// package must be.
func asReply(t testing.TB, err error) *policy.Reply {
	t.Helper()
	var r *policy.Reply
	if !errors.As(err, &r) || r == nil {
		t.Fatalf("error %v (%T) is not a *policy.Reply", err, err)
	}
	return r
}

// eventually polls cond for up to 3 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testCert returns a self-signed certificate for 127.0.0.1 and
// "backend.test" and the path of a PEM file holding it as a CA.
func testCert(t testing.TB) (tls.Certificate, string) {
	c := testutil.SelfSigned(t, "backend.test", "127.0.0.1")
	return c.TLS, c.CAFile
}

// scripted is a minimal backend for what the sink cannot do: it greets,
// answers EHLO/MAIL/RCPT with 250 and DATA with 354, then calls afterData
// with the connection (which may stop reading), and closes it when the
// test ends. BDAT calls afterData at once, with the chunk unread.
func scripted(t testing.TB, ehlo string, afterData func(net.Conn, *bufio.Reader)) string {
	return listen(t, func(c net.Conn) { serveScript(c, ehlo, afterData) })
}

// listen serves each connection with handle until the test ends, when it
// closes the connections and waits for the handlers.
func listen(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				<-done
				_ = c.Close()
			})
			wg.Go(func() { handle(c) })
		}
	})
	return ln.Addr().String()
}

func serveScript(c net.Conn, ehlo string, afterData func(net.Conn, *bufio.Reader)) {
	r := bufio.NewReader(c)
	_, _ = c.Write([]byte("220 scripted\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			_, _ = c.Write([]byte(ehlo))
		case "DATA":
			_, _ = c.Write([]byte("354 go on\r\n"))
			afterData(c, r)
			return
		case "BDAT":
			afterData(c, r) // the chunk follows the command at once
			return
		case "QUIT":
			_, _ = c.Write([]byte("221 bye\r\n"))
			return
		default:
			_, _ = c.Write([]byte("250 ok\r\n"))
		}
	}
}

// lines is a reader of about n bytes of CRLF lines, made as they are read.
type lines struct {
	n   int
	off int // position in line
}

const line72 = "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"

func (l *lines) Read(p []byte) (int, error) {
	if l.n <= 0 && l.off == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && (l.n > 0 || l.off != 0) {
		k := copy(p[n:], line72[l.off:])
		n += k
		l.n -= k
		l.off = (l.off + k) % len(line72)
	}
	return n, nil
}
