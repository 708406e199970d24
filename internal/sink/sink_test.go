package sink

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"
)

// TestMain fails the package if any sink goroutine outlives the tests: each
// test closes its sinks, so none may remain.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if stacks := sinkGoroutines(5 * time.Second); stacks != "" {
			fmt.Fprintf(os.Stderr, "leaked sink goroutines:\n%s\n", stacks)
			code = 1
		}
	}
	os.Exit(code)
}

// sinkGoroutines waits up to d for the goroutines running sink code to end
// and returns the stacks of those that did not.
func sinkGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "internal/sink.(*Server)") ||
				strings.Contains(g, "internal/sink.(*session)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start starts a sink that is closed, and checked for open connections, when
// the test ends.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := s.OpenConns(); n != 0 {
			t.Errorf("%d connections open after Close", n)
		}
	})
	return s
}

// client is the test's side of a raw SMTP dialogue.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// readReply reads one reply and checks its syntax (RFC 5321 §4.2): every
// line ends in CRLF and has the same code, followed by "-" on all lines but
// the last.
func readReply(r *bufio.Reader) (code int, lines []string, err error) {
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return 0, lines, err
		}
		if len(l) < 5 || !strings.HasSuffix(l, "\r\n") {
			return 0, lines, fmt.Errorf("bad reply line %q", l)
		}
		l = l[:len(l)-2]
		n, err := strconv.Atoi(l[:3])
		if err != nil || (code != 0 && n != code) {
			return 0, lines, fmt.Errorf("bad code in %q after %q", l, lines)
		}
		code = n
		lines = append(lines, l)
		if len(l) == 3 || l[3] == ' ' {
			return code, lines, nil
		}
		if l[3] != '-' {
			return 0, lines, fmt.Errorf("bad separator in %q", l)
		}
	}
}

// expect reads one reply, fails the test unless it has the code, and returns
// its lines.
func (c *client) expect(code int) []string {
	c.t.Helper()
	got, lines, err := readReply(c.r)
	if err != nil {
		c.t.Fatalf("want %d, got error %v", code, err)
	}
	if got != code {
		c.t.Fatalf("want %d, got %q", code, lines)
	}
	return lines
}

// silent fails the test if anything arrives within d.
func (c *client) silent(d time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadByte()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("want silence for %v, got %q, %v", d, b, err)
	}
}

// closed fails the test unless the sink closes the connection (rather than
// the client's deadline expiring) before anything else arrives.
func (c *client) closed() {
	c.t.Helper()
	b, err := c.r.ReadByte()
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		c.t.Fatalf("want the connection closed, got %q, %v", b, err)
	}
}

// step sends send (if any) and expects replies with the codes in want.
type step struct {
	send string
	want []int
}

// dialogue connects to addr, expects the 220 greeting, runs script and
// returns the lines of every reply after the greeting.
func dialogue(t *testing.T, addr string, script []step) []string {
	t.Helper()
	c := dial(t, addr)
	c.expect(220)
	var lines []string
	for _, st := range script {
		if st.send != "" {
			c.send(st.send)
		}
		for _, code := range st.want {
			lines = append(lines, c.expect(code)...)
		}
	}
	return lines
}

var queuedRE = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as (S\d{7}A)$`)

// queuedID returns the queue id in a default final reply.
func queuedID(t *testing.T, line string) string {
	t.Helper()
	m := queuedRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("final reply %q is not the default", line)
	}
	return m[1]
}

func TestReplyString(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want string
	}{
		{Reply{250, "2.0.0 Ok"}, "250 2.0.0 Ok\r\n"},
		{Reply{550, "5.1.1 User unknown\n5.1.1 Try another"}, "550-5.1.1 User unknown\r\n550 5.1.1 Try another\r\n"},
		{Reply{250, ""}, "250\r\n"},
		{Reply{250, "a\r\nb"}, "250-a\r\n250 b\r\n"},
		{Reply{421, "4.3.2 bare\rCR"}, "421 4.3.2 bareCR\r\n"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestTransactionPipelined(t *testing.T) {
	s := start(t, Config{})
	c := dial(t, s.Addr())
	if got := c.expect(220); got[0] != "220 sink.test ESMTP sink" {
		t.Errorf("greeting %q", got)
	}
	c.send("EHLO client.test\r\n")
	c.expect(250)
	c.send("MAIL FROM:<a@x.test> SIZE=20 BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("Subject: hi\r\n\r\nbody\r\n.\r\n")
	id1 := queuedID(t, c.expect(250)[0])
	// The transaction ended with DATA: a new MAIL needs no RSET.
	c.send("MAIL FROM:<>\r\nRCPT TO:<d@y.test>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("x\r\n.\r\nQUIT\r\n")
	id2 := queuedID(t, c.expect(250)[0])
	c.expect(221)
	c.closed()

	ms := s.Messages()
	if len(ms) != 2 {
		t.Fatalf("got %d messages", len(ms))
	}
	want := Message{
		ID: id1, Conn: 1, Helo: "client.test", From: "a@x.test",
		MailParams: "SIZE=20 BODY=8BITMIME", Rcpts: []string{"b@y.test", "c@y.test"},
		Data: []byte("Subject: hi\r\n\r\nbody\r\n"), Raw: []byte("Subject: hi\r\n\r\nbody\r\n"),
		Accepted: true,
	}
	if got := fmt.Sprintf("%+v", ms[0]); got != fmt.Sprintf("%+v", want) {
		t.Errorf("message 1:\n got %s\nwant %+v", got, want)
	}
	if m := ms[1]; m.ID != id2 || id2 == id1 || m.Conn != 1 || m.From != "" ||
		!slices.Equal(m.Rcpts, []string{"d@y.test"}) || string(m.Data) != "x\r\n" {
		t.Errorf("message 2: %+v", m)
	}
	if st := s.Stats(); st != (Stats{Conns: 1, Messages: 2, Accepted: 2, Ehlos: 1}) {
		t.Errorf("stats %+v", st)
	}
	if err := s.WaitIdle(2 * time.Second); err != nil {
		t.Error(err)
	}
}

// TestPipelinedRepliesShareOneWrite uses net.Pipe, where one Read returns at
// most what one Write sent, so it sees how the sink groups its writes.
func TestPipelinedRepliesShareOneWrite(t *testing.T) {
	s := newServer(withDefaults(Config{}))
	defer s.Close()
	srv, cli := net.Pipe()
	defer cli.Close()
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	s.serve(srv)
	buf := make([]byte, 4096)
	read := func() string {
		n, err := cli.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q", got)
	}
	io.WriteString(cli, "EHLO c\r\n")
	read()
	io.WriteString(cli, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n")
	want := "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	if got := read(); got != want {
		t.Errorf("one read got %q, want %q", got, want)
	}
}

func TestEHLO(t *testing.T) {
	tlsCfg, _ := selfSigned(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		cmd  string
		want []string
	}{
		{"default", Config{}, "EHLO c", []string{"250-sink.test", "250-PIPELINING",
			"250-SIZE 104857600", "250-8BITMIME", "250-SMTPUTF8", "250 ENHANCEDSTATUSCODES"}},
		{"none", Config{Hostname: "mx.test", Extensions: []string{}}, "EHLO c", []string{"250 mx.test"}},
		{"starttls", Config{Extensions: []string{"8BITMIME"}, TLS: tlsCfg}, "EHLO c",
			[]string{"250-sink.test", "250-8BITMIME", "250 STARTTLS"}},
		{"helo", Config{}, "HELO c", []string{"250 sink.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.cfg)
			got := dialogue(t, s.Addr(), []step{{tc.cmd + "\r\n", []int{250}}})
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	const (
		ehlo = "EHLO c\r\n"
		mail = "MAIL FROM:<a@x.test>\r\n"
		rcpt = "RCPT TO:<b@y.test>\r\n"
	)
	for _, tc := range []struct {
		name   string
		exts   []string
		script []step
	}{
		{"case-insensitive", nil, []step{{"ehlo c\r\n", []int{250}},
			{"mail from:<a@x>\r\nrcpt to:<b@y>\r\ndata\r\n", []int{250, 250, 354}},
			{".\r\n", []int{250}}, {"quit\r\n", []int{221}}}},
		{"bare LF", nil, []step{{"EHLO c\n", []int{250}}, {"NOOP\n", []int{250}}}},
		{"unknown", nil, []step{{"VRFY x\r\nSTARTTLS\r\n\r\n", []int{502, 502, 500}}}},
		{"MAIL before EHLO", nil, []step{{mail, []int{503}}, {ehlo + mail, []int{250, 250}}}},
		{"RCPT before MAIL", nil, []step{{ehlo + rcpt, []int{250, 503}}}},
		{"DATA without RCPT", nil, []step{{ehlo + mail + "DATA\r\n", []int{250, 250, 503}}}},
		{"nested MAIL", nil, []step{{ehlo + mail + mail, []int{250, 250, 503}}}},
		{"syntax", nil, []step{{"EHLO\r\n" + ehlo, []int{501, 250}},
			{"MAIL FROM:a@x\r\nMAIL TO:<a@x>\r\nMAIL FROM:<a@x>x\r\n", []int{501, 501, 501}},
			{"MAIL FROM: <a@x>\r\nRCPT TO:<>\r\nRCPT TO:b@y\r\nDATA x\r\n", []int{250, 501, 501, 501}}}},
		{"RSET", nil, []step{{ehlo + mail + rcpt + "RSET\r\nDATA\r\n" + rcpt, []int{250, 250, 250, 250, 503, 503}}}},
		{"EHLO resets", nil, []step{{ehlo + mail + rcpt + ehlo + "DATA\r\n", []int{250, 250, 250, 250, 503}}}},
		{"unadvertised params", []string{"8BITMIME"}, []step{{ehlo, []int{250}},
			{"MAIL FROM:<a@x> SMTPUTF8\r\nMAIL FROM:<a@x> SIZE=10\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\n", []int{555, 555, 250}},
			{"RCPT TO:<b@y> NOTIFY=NEVER\r\n", []int{555}}}},
		{"SIZE", []string{"SIZE 100"}, []step{{ehlo, []int{250}},
			{"MAIL FROM:<a@x> SIZE=101\r\nMAIL FROM:<a@x> SIZE=x\r\nMAIL FROM:<a@x> SIZE=100\r\n", []int{552, 501, 250}}}},
		{"long line", nil, []step{{"NOOP " + strings.Repeat("x", 5000) + "\r\nNOOP\r\n", []int{500, 250}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Config{Extensions: tc.exts})
			dialogue(t, s.Addr(), tc.script)
		})
	}
}

// selfSigned returns a server config with a fresh ECDSA P-256 certificate
// for sink.test and a pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	c := testutil.SelfSigned(t, "sink.test")
	return c.ServerConfig(), c.Pool
}

func TestSTARTTLS(t *testing.T) {
	srvCfg, pool := selfSigned(t)
	s := start(t, Config{TLS: srvCfg})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO c\r\nMAIL FROM:<plain@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("x\r\n.\r\n")
	c.expect(250)
	// The NOOP pipelined after STARTTLS came in clear text: RFC 3207 has the
	// server drop it, so the first reply over TLS must answer MAIL.
	c.send("STARTTLS\r\nNOOP\r\n")
	c.expect(220)
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pool, ServerName: "sink.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	c.send("MAIL FROM:<a@x>\r\n")
	c.expect(503) // EHLO again first
	c.send("EHLO c\r\n")
	if got := c.expect(250); slices.Contains(got, "250 STARTTLS") || slices.Contains(got, "250-STARTTLS") {
		t.Errorf("STARTTLS advertised under TLS: %q", got)
	}
	c.send("STARTTLS\r\nMAIL FROM:<tls@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
	c.expect(503)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("y\r\n.\r\nQUIT\r\n")
	c.expect(250)
	c.expect(221)
	ms := s.Messages()
	if len(ms) != 2 || ms[0].TLS || ms[0].From != "plain@x" || !ms[1].TLS || ms[1].From != "tls@x" {
		t.Errorf("got %+v", ms)
	}
}

func TestDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool") // Start creates it
	s := start(t, Config{Dir: dir, OnData: func(m *Message) *Reply {
		if m.From == "refuse@x" {
			return &Reply{554, "5.7.1 no"}
		}
		return nil
	}})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO c\r\n")
	c.expect(250)
	for _, from := range []string{"a@x", "refuse@x", "b@x"} {
		c.send("MAIL FROM:<" + from + ">\r\nRCPT TO:<r@y>\r\nDATA\r\n")
		c.expect(250)
		c.expect(250)
		c.expect(354)
		c.send("From: " + from + "\r\n\r\n..dot\r\n.\r\n")
		if from == "refuse@x" {
			c.expect(554)
		} else {
			c.expect(250)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	acc := s.Accepted()
	if len(ents) != 2 || len(acc) != 2 {
		t.Fatalf("files %v, accepted %d", ents, len(acc))
	}
	for _, m := range acc {
		p := filepath.Join(dir, m.ID+".eml")
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, m.Data) || !bytes.HasSuffix(b, []byte("\r\n.dot\r\n")) {
			t.Errorf("%s: %q, %v", p, b, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v", p, fi.Mode(), err)
		}
	}
}

func TestWaitIdle(t *testing.T) {
	s := start(t, Config{})
	c1, c2 := dial(t, s.Addr()), dial(t, s.Addr())
	c1.expect(220) // the sink has accepted both once each has its banner
	c2.expect(220)
	if n := s.OpenConns(); n != 2 {
		t.Errorf("OpenConns = %d, want 2", n)
	}
	if err := s.WaitIdle(50 * time.Millisecond); err == nil {
		t.Error("WaitIdle = nil with two clients connected")
	}
	c1.conn.Close()
	c2.send("QUIT\r\n")
	c2.expect(221)
	if err := s.WaitIdle(2 * time.Second); err != nil {
		t.Error(err)
	}
	if n, st := s.OpenConns(), s.Stats(); n != 0 || st.Conns != 2 {
		t.Errorf("OpenConns = %d, stats %+v", n, st)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := start(t, Config{IdleTimeout: 100 * time.Millisecond})
	c := dial(t, s.Addr())
	c.expect(220)
	t0 := time.Now()
	c.closed()
	if d := time.Since(t0); d < 80*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
	if err := s.WaitIdle(2 * time.Second); err != nil {
		t.Error(err)
	}
}

func TestWaitMessages(t *testing.T) {
	s := start(t, Config{})
	if ms, err := s.WaitMessages(1, 50*time.Millisecond); err == nil || len(ms) != 0 {
		t.Errorf("no traffic: %v, %v", ms, err)
	}
	done := make(chan struct{})
	go func() { // no t.Fatal off the test goroutine: the wait below checks
		defer close(done)
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
		io.Copy(io.Discard, conn)
	}()
	ms, err := s.WaitMessages(1, 5*time.Second)
	<-done
	if err != nil || len(ms) != 1 || !ms[0].Accepted {
		t.Errorf("got %+v, %v", ms, err)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	idle := dial(t, s.Addr())
	idle.expect(220)
	inTxn := dial(t, s.Addr())
	inTxn.expect(220)
	inTxn.send("EHLO c\r\nMAIL FROM:<a@x>\r\n")
	inTxn.expect(250)
	inTxn.expect(250)
	inData := dial(t, s.Addr())
	inData.expect(220)
	inData.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
	for _, code := range []int{250, 250, 250, 354} {
		inData.expect(code)
	}
	inData.send("partial")

	t0 := time.Now()
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if n := s.OpenConns(); n != 0 {
		t.Errorf("OpenConns = %d after Close", n)
	}
	for _, c := range []*client{idle, inTxn, inData} {
		c.closed()
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, sinkGoroutines(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Error("still listening after Close")
	}
}
