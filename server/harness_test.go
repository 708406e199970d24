package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/internal/verdict"
)

// The test domains: ours.test is served, everything else is foreign.
const ours = "ours.test"

// standardSink is the backend every transcript runs against: it refuses
// unknown@ours.test (550 5.1.1, multi-line), full@ours.test (452 4.2.2) and a
// message whose Subject is "reject-me" (554 5.6.0).
func standardSink() sink.Config {
	return sink.Config{
		OnRcpt: func(rcpt, _ string) *sink.Reply {
			switch strings.ToLower(rcpt) {
			case "unknown@ours.test":
				return &sink.Reply{Code: 550, Text: "5.1.1 <unknown@ours.test>: Recipient address rejected:\nUser unknown in virtual mailbox table"}
			case "full@ours.test":
				return &sink.Reply{Code: 452, Text: "4.2.2 <full@ours.test>: Mailbox full"}
			}
			return nil
		},
		OnData: func(m *sink.Message) *sink.Reply {
			if strings.Contains(string(m.Data), "Subject: reject-me") {
				return &sink.Reply{Code: 554, Text: "5.6.0 Message content rejected"}
			}
			return nil
		},
	}
}

// harness is a gateway on a loopback port relaying to an in-process sink,
// with its verdict records captured.
type harness struct {
	t    testing.TB
	srv  *Server
	sink *sink.Server
	addr string
	recs *records
	cfg  *config.Config
}

func testConfig(backend string) *config.Config {
	cfg := config.Default()
	cfg.Hostname = "mx.ours.test"
	cfg.Domains = []string{ours, "other.test"}
	cfg.Listen = []config.Listener{{Address: "127.0.0.1:0"}}
	cfg.Backend.Servers = []string{backend}
	cfg.Backend.Helo = cfg.Hostname
	cfg.Backend.Timeouts.Connect = 2 * time.Second
	cfg.Backend.Timeouts.Command = 2 * time.Second
	cfg.Backend.Timeouts.Data = 2 * time.Second
	cfg.Backend.Timeouts.Final = 2 * time.Second
	cfg.Limits.MaxMessageSize = 64 << 10
	cfg.Message.MemoryBuffer = 8 << 10
	cfg.Message.TempDir = os.TempDir()
	cfg.Limits.MaxRecipients = 5
	cfg.ShutdownGrace = 2 * time.Second
	// Never the system resolver (it is off this machine): a closed
	// loopback port, refused at once, unless a test serves zones.
	cfg.DNS.Servers = []string{"127.0.0.1:1"}
	cfg.DNS.Attempts = 1
	cfg.Checks.Greylist.Store = "memory"
	return &cfg
}

// testZones serves testdata/zones on loopback for the checks.
func testZones(t testing.TB) string {
	t.Helper()
	zones, err := zoneserver.LoadZoneDir("../testdata/zones")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := zoneserver.Start("127.0.0.1:0", zones...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Addr()
}

func newHarness(t testing.TB, sc sink.Config, mutate func(*config.Config)) *harness {
	t.Helper()
	baseline := runtime.NumGoroutine()
	sk, err := sink.Start(sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(sk.Addr())
	cfg.DNS.Servers = []string{testZones(t)}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.StartListeners([]net.Listener{ln})
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
	return h
}

// checkGoroutines fails when goroutines outlive the test (connections,
// relay janitors, timers): the count must return to the baseline.
func checkGoroutines(t testing.TB, baseline int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > baseline+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("goroutines leaked: %d now, %d before\n%s", runtime.NumGoroutine(), baseline, buf[:n])
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// records collects verdict records.
type records struct {
	mu   sync.Mutex
	buf  []byte
	list []verdict.Record
}

func (r *records) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := strings.IndexByte(string(r.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		var rec verdict.Record
		if err := json.Unmarshal(r.buf[:i], &rec); err != nil {
			return 0, err
		}
		r.list = append(r.list, rec)
		r.buf = r.buf[i+1:]
	}
}

// wait returns the first n records, waiting up to 3 s for them.
func (r *records) wait(t testing.TB, n int) []verdict.Record {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r.mu.Lock()
		l := append([]verdict.Record(nil), r.list...)
		r.mu.Unlock()
		if len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d verdict records, have %d: %+v", n, len(l), l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is a raw SMTP client for exact-reply assertions.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func (h *harness) dial() *client {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 2*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t: h.t, c: c, r: bufio.NewReader(c)}
	h.t.Cleanup(func() { c.Close() })
	return cl
}

// greet reads the banner and says EHLO.
func (h *harness) greet() *client {
	cl := h.dial()
	cl.expect("220 ")
	cl.send("EHLO client.example.test")
	cl.expect("250 ")
	return cl
}

func (cl *client) send(line string) { cl.write(line + "\r\n") }

func (cl *client) write(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply, returning all its lines.
func (cl *client) reply() []string {
	cl.t.Helper()
	var lines []string
	for {
		l, err := cl.r.ReadString('\n')
		if err != nil {
			cl.t.Fatalf("read reply (after %q): %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// expect reads one reply and checks that its last line starts with prefix.
func (cl *client) expect(prefix string) string {
	cl.t.Helper()
	lines := cl.reply()
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, prefix) {
		cl.t.Fatalf("want reply %q..., got %q", prefix, lines)
	}
	return last
}

var refInText = regexp.MustCompile(`\(ref ([0-9A-Z]{26})\)$`)

// refOf returns the reference id at the end of a reply line.
func refOf(t testing.TB, line string) string {
	t.Helper()
	m := refInText.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("reply %q carries no reference id", line)
	}
	return m[1]
}

func discardLog() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func verdictWriter(r *records) *verdict.Writer { return verdict.NewWriter(r) }

// canceledAfter returns a context that is done after d.
func canceledAfter(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	_ = cancel // released when the deadline passes
	return ctx
}

// startData opens a transaction for rcpt up to the 354 of DATA.
func (cl *client) startData(rcpt string) {
	cl.t.Helper()
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<" + rcpt + ">")
	cl.expect("250 ")
	cl.send("DATA")
	cl.expect("354 ")
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
