package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

// The session benchmarks run whole SMTP sessions through the real server
// (listener, checks, policy, spool, relay) to the in-process sink, all on
// loopback; DNS goes only to the harness's zone server. The client is
// 127.0.0.5, whose reverse DNS is forward-confirmed in the test zones,
// sending as alice@example.test (SPF pass, DMARC pass through SPF), so the
// message is clean and relayed: the path most mail takes. After the first
// session every DNS answer comes from the resolver's cache.
//
// Every figure is the whole process: the client, the sink and the
// harness (which decodes each verdict record) allocate too, and the sink
// keeps every message, so run them briefly. Run without -v: under -v the
// harness logs every session at debug level.

// benchClientIP is the client: forward-confirmed rDNS in the test zones.
const benchClientIP = "127.0.0.5"

// benchMsgsPerConn is how many messages BenchmarkSessionReuse sends on one
// connection before it opens the next.
const benchMsgsPerConn = 20

// benchYAML is a configuration with a few operator rules in front of the
// shipped set; none of them matches the benchmarks' mail, so every rule is
// evaluated. Only its policy is used.
const benchYAML = `
hostname: mx.ours.test
domains: [ours.test]
backend: { servers: ["127.0.0.1:10025"] }
checks: { greylist: { store: memory } }
policy:
  default_rules: true
  rules:
    - name: partners
      if: { client.ip: [192.0.2.0/24, "2001:db8::/32"] }
      action: accept
    - name: no-bounces-to-lists
      if: { mail_from: "", rcpt: lists@ours.test }
      action: reject
      reply: 550 5.7.1 This list does not take bounces
    - name: block-spammer
      if: { mail_from.domain: [spammer.test, "*.spammer.test"] }
      action: reject
    - name: suspicious-mailer
      if: { header.x-mailer: "/(?i)mass ?mailer/" }
      score: 4
    - name: big-and-unauthenticated
      if: { size: "> 1000000", not: { dmarc: pass } }
      score: 2
`

// benchConfig uses benchYAML's rules and the shipped default rules,
// compiled by the configuration loader as the gateway compiles them, and
// the test DNS block list.
func benchConfig(t testing.TB) func(*config.Config) {
	t.Helper()
	loaded, err := config.Parse("bench.yaml", []byte(benchYAML))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) {
		c.Policy.Engine = loaded.Policy.Engine
		withDNSBL(c)
	}
}

// benchMessage is a clean message of about 4 KiB, CRLF, without the
// end-of-data marker.
var benchMessage = func() string {
	var sb strings.Builder
	sb.WriteString("From: Alice <alice@example.test>\r\n" +
		"To: Bob <bob@ours.test>\r\n" +
		"Subject: Minutes of Tuesday's meeting\r\n" +
		"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
		"Message-ID: <minutes-1@example.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n")
	line := "The quick brown fox jumps over the lazy dog, then files its report.\r\n"
	for sb.Len()+len(line) <= 4096 {
		sb.WriteString(line)
	}
	return sb.String()
}()

// benchSession is a raw SMTP client that returns errors rather than
// failing the benchmark, so RunParallel's goroutines can use it.
type benchSession struct {
	c net.Conn
	r *bufio.Reader
}

// openSession connects from benchClientIP, reads the banner and says EHLO.
func openSession(addr string) (*benchSession, error) {
	c, err := dialFromAddr(addr, benchClientIP)
	if err != nil {
		return nil, err
	}
	s := &benchSession{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := s.expect("220 "); err != nil {
		c.Close()
		return nil, err
	}
	if err := s.command("EHLO mail.example.test", "250 "); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// command sends one line and expects a reply starting with prefix.
func (s *benchSession) command(line, prefix string) error {
	if _, err := io.WriteString(s.c, line+"\r\n"); err != nil {
		return err
	}
	return s.expect(prefix)
}

// expect reads one reply, all its lines, and checks the last one's prefix.
func (s *benchSession) expect(prefix string) error {
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading reply (want %q): %w", prefix, err)
		}
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, prefix) {
			return fmt.Errorf("want reply %q..., got %q", prefix, strings.TrimRight(l, "\r\n"))
		}
		return nil
	}
}

// send runs one transaction, MAIL to the final 250.
func (s *benchSession) send() error {
	s.c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, c := range [][2]string{
		{"MAIL FROM:<alice@example.test>", "250 "},
		{"RCPT TO:<bob@ours.test>", "250 "},
		{"DATA", "354 "},
		{benchMessage + ".", "250 "},
	} {
		if err := s.command(c[0], c[1]); err != nil {
			return err
		}
	}
	return nil
}

// quit ends the session and waits for the server to close first, as it
// does after 221, so TIME_WAIT stays on the server's side and a long run
// does not use up the client's ports.
func (s *benchSession) quit() error {
	defer s.c.Close()
	if err := s.command("QUIT", "221 "); err != nil {
		return err
	}
	if _, err := s.r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after 221: want EOF, got %v", err)
	}
	return nil
}

// oneSession is a whole session delivering one message.
func oneSession(addr string) error {
	s, err := openSession(addr)
	if err != nil {
		return err
	}
	if err := s.send(); err != nil {
		s.c.Close()
		return err
	}
	return s.quit()
}

// reportMsgs reports the message rate and checks that the sink took every
// message: the relay is synchronous, so each 250 was the sink's.
func reportMsgs(b *testing.B, h *harness, msgs int) {
	b.Helper()
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	if got := h.sink.Stats().Accepted; got != msgs {
		b.Fatalf("the sink accepted %d messages, want %d", got, msgs)
	}
}

// BenchmarkSessionNewConn measures one clean message per connection:
// connect, banner, EHLO, MAIL, RCPT, DATA with 4 KiB, relay, QUIT. This
// is what most inbound sessions look like.
func BenchmarkSessionNewConn(b *testing.B) { benchNewConn(b, standardSink()) }

// BenchmarkSessionNewConnBDAT is BenchmarkSessionNewConn to a backend
// that offers CHUNKING, so the gateway relays with BDAT: a round trip
// less, and no dot-stuffing. (The in-process sink also reads a chunk more
// cheaply than DATA, so part of the difference is the sink's.)
func BenchmarkSessionNewConnBDAT(b *testing.B) {
	sc := standardSink()
	sc.Extensions = append(sink.DefaultExtensions(), "CHUNKING")
	benchNewConn(b, sc)
}

func benchNewConn(b *testing.B, sc sink.Config) {
	h := newHarness(b, sc, benchConfig(b))
	b.ReportAllocs()
	msgs := 0
	for b.Loop() {
		if err := oneSession(h.addr); err != nil {
			b.Fatal(err)
		}
		msgs++
	}
	reportMsgs(b, h, msgs)
}

// BenchmarkSessionReuse measures one clean 4 KiB message when a client
// sends benchMsgsPerConn messages per connection: the per-transaction cost
// with the connection's (banner, EHLO, connect-stage checks) amortised.
func BenchmarkSessionReuse(b *testing.B) {
	h := newHarness(b, standardSink(), benchConfig(b))
	var s *benchSession
	defer func() {
		if s != nil {
			s.c.Close()
		}
	}()
	b.ReportAllocs()
	msgs := 0
	for b.Loop() {
		if s == nil {
			var err error
			if s, err = openSession(h.addr); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.send(); err != nil {
			b.Fatal(err)
		}
		msgs++
		if msgs%benchMsgsPerConn == 0 {
			if err := s.quit(); err != nil {
				b.Fatal(err)
			}
			s = nil
		}
	}
	if s != nil {
		if err := s.quit(); err != nil {
			b.Fatal(err)
		}
		s = nil
	}
	reportMsgs(b, h, msgs)
}

// BenchmarkSessionParallel is BenchmarkSessionNewConn with several
// clients at once (4 per GOMAXPROCS, well under the per-IP connection
// limit): the cost of a session when sessions contend for the CPU, the
// resolver cache, the relay pool and the verdict writer.
func BenchmarkSessionParallel(b *testing.B) {
	h := newHarness(b, standardSink(), benchConfig(b))
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := oneSession(h.addr); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if !b.Failed() {
		reportMsgs(b, h, b.N)
	}
}

// TestBenchSession keeps the benchmarks honest under plain go test: their
// session is accepted and relayed, with every check passing and no rule
// matching, so they measure the clean path they claim to.
func TestBenchSession(t *testing.T) {
	h := newHarness(t, standardSink(), benchConfig(t))
	if err := oneSession(h.addr); err != nil {
		t.Fatal(err)
	}
	rec := h.recs.wait(t, 1)[0]
	if rec.Action != policy.ActionAccept || len(rec.Rules) != 0 || len(h.sink.Accepted()) != 1 {
		t.Fatalf("action %q, rules %+v, relayed %d", rec.Action, rec.Rules, len(h.sink.Accepted()))
	}
	for fact, want := range map[string]any{"client.fcrdns": "pass", "dnsbl.score": 0.0, "spf": "pass", "dmarc": "pass"} {
		if got := rec.Facts[fact]; got != want {
			t.Errorf("fact %s = %v, want %v (facts %v)", fact, got, want, rec.Facts)
		}
	}
}
