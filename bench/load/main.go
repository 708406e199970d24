// Command load is the SMTP load generator of the benchmark scripts: it sends
// one fixed message n times over c concurrent sessions to a server on
// loopback (the gateway, or a backend directly) and prints the throughput
// and the per-message latency.
//
//	load -addr 127.0.0.1:2525 -c 10 -n 5000 -size 4096 [-per-conn 1] [-rate 0] [-json]
//	load -ports 2    # print two free loopback ports, one per line
//
// Each message is one mail transaction (RFC 5321 §3.3) without pipelining:
// MAIL (with SIZE=, RFC 1870 §6, when the server offers it), RCPT, DATA, the
// dot-stuffed message (§4.5.2) and its end-of-data marker in one write, then
// the next MAIL or QUIT. With -per-conn 1 every message has its own
// connection, banner and EHLO, as with Postfix's smtp-source.
//
// Two latencies are measured for every accepted message. session runs from
// the dial (with -per-conn 1) or from MAIL (with -per-conn > 1, for every
// message on the connection) to the 250 that ends DATA. data runs from the
// moment the write carrying the end-of-data marker has returned to that 250:
// the time the server takes to decide, once it has the whole message.
// Failed messages are counted by reply code but give no latency sample.
//
// By default every session sends its next message as soon as the last one
// is answered (a closed loop): the throughput is the most the server gives,
// and the latency then includes the wait for a CPU the client, the server
// and its backend share. With -rate R the load is an open loop instead:
// message i is due at R per second after the start of the phase, whatever
// the server does, and its session latency runs from when it was due, not
// from when a session got round to it. A server that falls behind is then
// charged for the wait (no coordinated omission), and at a rate below
// saturation the latency is what the server adds, not queueing.
//
// The address must be a loopback IP literal: the tool never resolves a name
// and never connects anywhere else.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailures    = 1   // at least one measured message was not accepted
	exitUsage       = 2   // bad flags, unreadable key, non-loopback address
	exitInterrupted = 130 // SIGINT or SIGTERM: the report covers the run so far
)

// maxSize bounds -size: the message is held in memory twice (plain and
// dot-stuffed), and nothing a benchmark needs is near it.
const maxSize = 64 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal a second one kills the process at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; main only adds the signals, so tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if cfg.ports > 0 {
		return freePorts(stdout, stderr, cfg.ports)
	}
	msg, err := prepareMessage(cfg, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return exitUsage
	}
	j := newJob(cfg, msg, stderr)
	if cfg.Warmup > 0 {
		t, _ := j.phase(ctx, cfg.Warmup, "warmup")
		if n := t.failed(); n > 0 {
			fmt.Fprintf(stderr, "load: warmup: %d of %d messages failed\n", n, cfg.Warmup)
		}
	}
	t, elapsed := j.phase(ctx, cfg.N, "")
	rep := newReport(cfg, len(msg), t, elapsed, ctx.Err() != nil)
	if cfg.json {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "load:", err)
		}
	} else {
		fmt.Fprintln(stdout, rep.human())
	}
	switch {
	case rep.Interrupted:
		return exitInterrupted
	case rep.Fail > 0:
		return exitFailures
	}
	return exitOK
}

// flagValues are the flags of a run as the JSON report echoes them.
type flagValues struct {
	Addr         string  `json:"addr"`
	C            int     `json:"c"`
	N            int     `json:"n"`
	Size         int     `json:"size"`
	PerConn      int     `json:"per_conn"`
	From         string  `json:"from"`
	To           string  `json:"to"`
	Helo         string  `json:"helo"`
	Warmup       int     `json:"warmup"`
	Timeout      string  `json:"timeout"`
	Rate         float64 `json:"rate,omitempty"`
	DKIMKey      string  `json:"dkim_key,omitempty"`
	DKIMDomain   string  `json:"dkim_domain,omitempty"`
	DKIMSelector string  `json:"dkim_selector,omitempty"`
}

// config is the parsed and validated command line.
type config struct {
	flagValues
	addr    netip.AddrPort // loopback, IPv4-mapped addresses unmapped
	timeout time.Duration
	json    bool
	ports   int
}

const usageHead = `usage: load -addr 127.0.0.1:PORT [-c 10] [-n 5000] [-size 4096] [-per-conn 1] [-rate R]
            [-from ADDR] [-to ADDR] [-helo NAME] [-warmup 200] [-timeout 30s] [-json]
            [-dkim-key FILE [-dkim-domain DOMAIN] [-dkim-selector bench]]
       load -ports K

Sends n copies of one message to an SMTP server on loopback over c concurrent
sessions, after warmup uncounted ones, and prints the throughput and the
session and data latencies (p50, p90, p99, max). Exit status: 0 every message
got 250, 1 some did not, 2 usage error, 130 interrupted (the report covers the
run so far).

`

// parseArgs parses and checks the command line. It prints its own errors
// (and the usage, for a bad flag) to stderr.
func parseArgs(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Addr, "addr", "", "the server's address, a loopback IP literal and port (`127.0.0.1:PORT` or [::1]:PORT)")
	fs.IntVar(&cfg.C, "c", 10, "concurrent sessions")
	fs.IntVar(&cfg.N, "n", 5000, "messages to send and measure")
	fs.IntVar(&cfg.Size, "size", 4096, "approximate message size in bytes, headers (and DKIM-Signature) included")
	fs.IntVar(&cfg.PerConn, "per-conn", 1, "messages per connection; 1 dials anew for every message")
	fs.Float64Var(&cfg.Rate, "rate", 0, "offer `R` messages per second over all sessions, latency counted from when each was due (an open loop); 0: as fast as the server answers")
	fs.StringVar(&cfg.From, "from", "sender@example.test", "envelope sender and From: address")
	fs.StringVar(&cfg.To, "to", "user@dest.test", "envelope recipient and To: address")
	fs.StringVar(&cfg.Helo, "helo", "client.example.test", "EHLO name")
	fs.IntVar(&cfg.Warmup, "warmup", 200, "messages sent first and not counted")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "deadline of each step: the dial, each command and its reply, the message and its reply")
	fs.StringVar(&cfg.DKIMKey, "dkim-key", "", "sign the message once with the PEM private key in `FILE` (PKCS#1 or PKCS#8 RSA, PKCS#8 Ed25519)")
	fs.StringVar(&cfg.DKIMDomain, "dkim-domain", "", "DKIM d= (default: the domain of -from)")
	fs.StringVar(&cfg.DKIMSelector, "dkim-selector", "bench", "DKIM s=")
	fs.BoolVar(&cfg.json, "json", false, "print the report as one JSON object")
	fs.IntVar(&cfg.ports, "ports", 0, "print `K` free loopback TCP ports, one per line, and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := cfg.check(fs); err != nil {
		fmt.Fprintf(stderr, "load: %v\n(load -h lists the flags)\n", err)
		return nil, err
	}
	return cfg, nil
}

// check validates the flags and fills in the derived fields.
func (cfg *config) check(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.ports != 0 {
		if cfg.ports < 0 || cfg.ports > 1000 {
			return fmt.Errorf("-ports %d: want 1 to 1000", cfg.ports)
		}
		return nil
	}
	ap, err := loopbackAddr(cfg.Addr)
	if err != nil {
		return err
	}
	cfg.addr = ap
	for _, c := range []struct {
		name     string
		val, min int
	}{{"c", cfg.C, 1}, {"n", cfg.N, 1}, {"per-conn", cfg.PerConn, 1}, {"size", cfg.Size, 0}, {"warmup", cfg.Warmup, 0}} {
		if c.val < c.min {
			return fmt.Errorf("-%s %d: must be at least %d", c.name, c.val, c.min)
		}
	}
	if cfg.Size > maxSize {
		return fmt.Errorf("-size %d: at most %d", cfg.Size, maxSize)
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) || cfg.Rate > 1e6 {
		return fmt.Errorf("-rate %v: want 0 (no pacing) up to 1000000 messages per second", cfg.Rate)
	}
	if cfg.timeout <= 0 {
		return fmt.Errorf("-timeout %v: must be positive", cfg.timeout)
	}
	cfg.Timeout = cfg.timeout.String()
	for _, a := range []struct{ name, val string }{{"from", cfg.From}, {"to", cfg.To}} {
		if err := checkMailbox(a.val); err != nil {
			return fmt.Errorf("-%s %q: %v", a.name, a.val, err)
		}
	}
	if err := checkToken(cfg.Helo); err != nil {
		return fmt.Errorf("-helo %q: %v", cfg.Helo, err)
	}
	return cfg.checkDKIM(fs)
}

func (cfg *config) checkDKIM(fs *flag.FlagSet) error {
	if cfg.DKIMKey == "" {
		var err error
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "dkim-domain" || f.Name == "dkim-selector" {
				err = fmt.Errorf("-%s needs -dkim-key", f.Name)
			}
		})
		cfg.DKIMDomain, cfg.DKIMSelector = "", ""
		return err
	}
	if cfg.DKIMDomain == "" {
		cfg.DKIMDomain = domainOf(cfg.From)
	}
	for _, a := range []struct{ name, val string }{{"dkim-domain", cfg.DKIMDomain}, {"dkim-selector", cfg.DKIMSelector}} {
		if err := checkToken(a.val); err != nil || strings.ContainsAny(a.val, ";=@") {
			return fmt.Errorf("-%s %q: not a domain name", a.name, a.val)
		}
	}
	return nil
}

// loopbackAddr parses an address that must be a loopback IP literal and a
// port. It resolves nothing, so no name can ever send the load elsewhere.
func loopbackAddr(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, errors.New("-addr is required (127.0.0.1:PORT or [::1]:PORT)")
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: %v", s, err)
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if _, aerr := netip.ParseAddr(host); aerr != nil {
			return netip.AddrPort{}, fmt.Errorf("-addr %q: the host must be a loopback IP literal (127.0.0.0/8 or ::1), not a name: this tool sends only to loopback and resolves nothing", s)
		}
		return netip.AddrPort{}, fmt.Errorf("-addr %q: %v", s, err)
	}
	a := ap.Addr().Unmap()
	if a.Zone() != "" || !a.IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: %s is not a loopback address (127.0.0.0/8 or ::1): this tool sends only to loopback", s, ap.Addr())
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("-addr %q: port 0", s)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// checkToken accepts printable ASCII without spaces or angle brackets, so a
// flag can never break the command line it is written into.
func checkToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || r == '<' || r == '>' {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

func checkMailbox(s string) error {
	if err := checkToken(s); err != nil {
		return err
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return errors.New("want local@domain")
	}
	return nil
}

// domainOf returns the part after the last '@' of a checked mailbox.
func domainOf(mailbox string) string {
	return mailbox[strings.LastIndexByte(mailbox, '@')+1:]
}

// freePorts prints k free loopback ports. They are closed again before the
// caller uses them: a small race with other programs, fine for a benchmark.
func freePorts(stdout, stderr io.Writer, k int) int {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return exitFailures
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		fmt.Fprintln(stdout, ln.Addr().(*net.TCPAddr).Port)
	}
	return exitOK
}

// job is what the workers of a run share; only fails and the queue are
// written concurrently.
type job struct {
	cfg      *config
	wire     []byte // the dot-stuffed message and the end-of-data marker
	mail     string // MAIL without SIZE=
	mailSize string // MAIL with SIZE=
	dialer   net.Dialer
	fails    *failLog
}

func newJob(cfg *config, msg []byte, stderr io.Writer) *job {
	mail := "MAIL FROM:<" + cfg.From + ">"
	return &job{
		cfg:      cfg,
		wire:     dotStuff(msg),
		mail:     mail,
		mailSize: mail + " SIZE=" + strconv.Itoa(len(msg)),
		// Go sets TCP_NODELAY on every TCP connection by default.
		dialer: net.Dialer{Timeout: cfg.timeout},
		fails:  &failLog{w: stderr, seen: map[string]bool{}},
	}
}

// queue hands out the messages of a phase, in order, and says when each is
// due when the load is paced.
type queue struct {
	n     int64
	next  atomic.Int64
	start time.Time     // of the phase
	every time.Duration // between two messages; 0: not paced
}

// take hands out the next message and returns when it is due: now when
// the load is not paced. ok is false when none is left or ctx ended while
// waiting for the message's turn.
func (q *queue) take(ctx context.Context) (due time.Time, ok bool) {
	i := q.next.Add(1) - 1
	if i >= q.n {
		return time.Time{}, false
	}
	if q.every == 0 {
		return time.Now(), true
	}
	due = q.start.Add(time.Duration(i) * q.every)
	if wait := time.Until(due); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
	return due, true
}

// tally is what one worker measured; the workers' tallies are merged at the
// end of a phase, so the hot path takes no lock.
type tally struct {
	ok, conns     int
	fail          map[string]int // by reply code, or "io"
	session, data []time.Duration
}

func (t *tally) failed() int {
	n := 0
	for _, v := range t.fail {
		n += v
	}
	return n
}

// phase sends n messages over the configured number of workers and returns
// their merged tally and the wall time it took.
func (j *job) phase(ctx context.Context, n int, label string) (tally, time.Duration) {
	start := time.Now()
	q := &queue{n: int64(n), start: start}
	if j.cfg.Rate > 0 {
		q.every = time.Duration(float64(time.Second) / j.cfg.Rate)
	}
	tallies := make([]tally, min(j.cfg.C, n))
	var wg sync.WaitGroup
	for i := range tallies {
		t := &tallies[i]
		t.fail = map[string]int{}
		t.session = make([]time.Duration, 0, n/len(tallies)+1)
		t.data = make([]time.Duration, 0, n/len(tallies)+1)
		wg.Go(func() { j.worker(ctx, q, t, label) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := tally{fail: map[string]int{}}
	for _, t := range tallies {
		all.ok += t.ok
		all.conns += t.conns
		for k, v := range t.fail {
			all.fail[k] += v
		}
		all.session = append(all.session, t.session...)
		all.data = append(all.data, t.data...)
	}
	return all, elapsed
}

// worker dials connections and sends up to -per-conn messages on each until
// the queue is empty or the run is interrupted. A message's session clock
// starts when it is due (queue.take), which unpaced is before the dial with
// -per-conn 1 and before MAIL otherwise. Paced, it is the due time, dial
// included for the first message of a connection.
func (j *job) worker(ctx context.Context, q *queue, t *tally, label string) {
	for ctx.Err() == nil {
		start, ok := q.take(ctx)
		if !ok {
			return
		}
		t.conns++
		c, err := j.dial(ctx)
		if err != nil {
			j.record(ctx, t, label, 0, 0, err)
			continue
		}
		if j.cfg.PerConn > 1 && q.every == 0 {
			start = time.Now() // from MAIL, the dial not counted
		}
		for k := 1; ; k++ {
			session, data, err := j.send(c, start)
			j.record(ctx, t, label, session, data, err)
			if err != nil && !c.recover(err) {
				break
			}
			if k >= j.cfg.PerConn || ctx.Err() != nil {
				c.cmd(2, "QUIT") // its outcome does not matter
				break
			}
			if start, ok = q.take(ctx); !ok {
				c.cmd(2, "QUIT")
				break
			}
		}
		c.close()
	}
}

// record counts one message. A message cut short by an interrupt is
// neither accepted nor failed: it is not counted at all.
func (j *job) record(ctx context.Context, t *tally, label string, session, data time.Duration, err error) {
	switch {
	case err == nil:
		t.ok++
		t.session = append(t.session, session)
		t.data = append(t.data, data)
	case ctx.Err() != nil:
	default:
		t.fail[failCode(err)]++
		j.fails.note(label, err)
	}
}

// replyError is a reply other than the one expected. It prints as on the
// wire, which textproto.Error does not (it quotes the text).
type replyError struct{ te *textproto.Error }

func (e replyError) Error() string { return fmt.Sprintf("%03d %s", e.te.Code, e.te.Msg) }
func (e replyError) Unwrap() error { return e.te }

// readReply reads one (possibly multiline) reply, which must have the code
// expect (1 to 3 digits, compared as textproto does).
func (c *conn) readReply(expect int) (string, error) {
	_, msg, err := c.tp.ReadResponse(expect)
	if te, ok := err.(*textproto.Error); ok {
		err = replyError{te}
	}
	return msg, err
}

// failCode is the reply code of a failure, or "io" for anything else
// (refused connection, reset, timeout, malformed reply).
func failCode(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return strconv.Itoa(te.Code)
	}
	return "io"
}

// failLog prints the first few distinct failures to stderr as they happen.
type failLog struct {
	mu   sync.Mutex
	w    io.Writer
	seen map[string]bool
}

const maxFailLines = 5

func (f *failLog) note(label string, err error) {
	line := strings.ReplaceAll(err.Error(), "\n", " / ")
	if label != "" {
		line = label + ": " + line
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) >= maxFailLines || f.seen[line] {
		return
	}
	f.seen[line] = true
	fmt.Fprintf(f.w, "load: %s\n", line)
	if len(f.seen) == maxFailLines {
		fmt.Fprintln(f.w, "load: further distinct failures are only counted")
	}
}

// conn is one client connection.
type conn struct {
	ctx     context.Context
	nc      net.Conn
	tp      *textproto.Conn
	timeout time.Duration
	size    bool // the server offered SIZE
	stop    func() bool
}

// dial connects, reads the banner and says EHLO.
func (j *job) dial(ctx context.Context) (*conn, error) {
	nc, err := j.dialer.DialContext(ctx, "tcp", j.cfg.addr.String())
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &conn{ctx: ctx, nc: nc, tp: textproto.NewConn(nc), timeout: j.cfg.timeout}
	// An interrupt ends whatever exchange is under way at once.
	c.stop = context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	if err := c.step(); err != nil {
		c.close()
		return nil, err
	}
	if _, err := c.readReply(220); err != nil {
		c.close()
		return nil, fmt.Errorf("banner: %w", err)
	}
	ext, err := c.cmd(2, "EHLO "+j.cfg.Helo)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	// The reply's first line is the greeting, each further one a keyword
	// and its parameters (RFC 5321 §4.1.1.1).
	for _, l := range strings.Split(ext, "\n")[1:] {
		kw, _, _ := strings.Cut(l, " ")
		c.size = c.size || strings.EqualFold(kw, "SIZE")
	}
	return c, nil
}

// step sets the deadline of the next exchange. It fails once the run is
// interrupted: the check comes after the deadline is set, so an interrupt
// either is seen here or resets the deadline after it.
func (c *conn) step() error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	return c.ctx.Err()
}

// cmd sends one command line and reads its reply.
func (c *conn) cmd(expect int, line string) (string, error) {
	if err := c.step(); err != nil {
		return "", err
	}
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return "", err
	}
	return c.readReply(expect)
}

// send runs one mail transaction. start is when the session clock started.
func (j *job) send(c *conn, start time.Time) (session, data time.Duration, err error) {
	mail := j.mail
	if c.size {
		mail = j.mailSize
	}
	if _, err := c.cmd(2, mail); err != nil {
		return 0, 0, fmt.Errorf("MAIL: %w", err)
	}
	if _, err := c.cmd(2, "RCPT TO:<"+j.cfg.To+">"); err != nil {
		return 0, 0, fmt.Errorf("RCPT: %w", err)
	}
	if _, err := c.cmd(354, "DATA"); err != nil {
		return 0, 0, fmt.Errorf("DATA: %w", err)
	}
	if err := c.step(); err != nil {
		return 0, 0, err
	}
	// The message and the marker go in one flush; a write this large
	// bypasses the bufio buffer and reaches the socket in one call.
	if _, err := c.tp.W.Write(j.wire); err != nil {
		return 0, 0, fmt.Errorf("message: %w", err)
	}
	if err := c.tp.W.Flush(); err != nil {
		return 0, 0, fmt.Errorf("message: %w", err)
	}
	sent := time.Now()
	if _, err := c.readReply(250); err != nil {
		return 0, 0, fmt.Errorf("end of data: %w", err)
	}
	end := time.Now()
	return end.Sub(start), end.Sub(sent), nil
}

// recover makes the connection ready for another transaction after the
// failure err, and reports whether it could. A reply other than 421 leaves
// the session usable after RSET (RFC 5321 §4.1.1.5); 421 and I/O errors
// end it.
func (c *conn) recover(err error) bool {
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code == 421 {
		return false
	}
	_, err = c.cmd(2, "RSET")
	return err == nil
}

func (c *conn) close() {
	c.stop()
	c.tp.Close()
}

// report is the outcome of the measured phase, printed as one line or as
// JSON with these field names.
type report struct {
	Sent         int            `json:"sent"`
	OK           int            `json:"ok"`
	Fail         int            `json:"fail"`
	Secs         float64        `json:"secs"`
	MsgsPerSec   float64        `json:"msgs_per_sec"` // accepted messages only
	SessionP50Ms float64        `json:"session_p50_ms"`
	SessionP90Ms float64        `json:"session_p90_ms"`
	SessionP99Ms float64        `json:"session_p99_ms"`
	SessionMaxMs float64        `json:"session_max_ms"`
	DataP50Ms    float64        `json:"data_p50_ms"`
	DataP90Ms    float64        `json:"data_p90_ms"`
	DataP99Ms    float64        `json:"data_p99_ms"`
	DataMaxMs    float64        `json:"data_max_ms"`
	FailByCode   map[string]int `json:"fail_by_code"`
	Conns        int            `json:"conns"`
	MessageBytes int            `json:"message_bytes"`
	Interrupted  bool           `json:"interrupted"`
	Flags        flagValues     `json:"flags"`
}

func newReport(cfg *config, size int, t tally, elapsed time.Duration, interrupted bool) *report {
	fail := t.failed()
	r := &report{
		Sent: t.ok + fail, OK: t.ok, Fail: fail,
		Secs:         round(elapsed.Seconds(), 3),
		FailByCode:   t.fail,
		Conns:        t.conns,
		MessageBytes: size,
		Interrupted:  interrupted,
		Flags:        cfg.flagValues,
	}
	r.SessionP50Ms, r.SessionP90Ms, r.SessionP99Ms, r.SessionMaxMs = quantiles(t.session)
	r.DataP50Ms, r.DataP90Ms, r.DataP99Ms, r.DataMaxMs = quantiles(t.data)
	if elapsed > 0 {
		r.MsgsPerSec = round(float64(t.ok)/elapsed.Seconds(), 1)
	}
	return r
}

// human is the one-line form of the report.
func (r *report) human() string {
	s := fmt.Sprintf("sent=%d ok=%d fail=%d secs=%.3f msgs_per_sec=%.1f"+
		" session_p50_ms=%.3f session_p90_ms=%.3f session_p99_ms=%.3f session_max_ms=%.3f"+
		" data_p50_ms=%.3f data_p90_ms=%.3f data_p99_ms=%.3f data_max_ms=%.3f",
		r.Sent, r.OK, r.Fail, r.Secs, r.MsgsPerSec,
		r.SessionP50Ms, r.SessionP90Ms, r.SessionP99Ms, r.SessionMaxMs,
		r.DataP50Ms, r.DataP90Ms, r.DataP99Ms, r.DataMaxMs)
	if r.Fail > 0 {
		var codes []string
		for _, k := range slices.Sorted(maps.Keys(r.FailByCode)) {
			codes = append(codes, fmt.Sprintf("%s:%d", k, r.FailByCode[k]))
		}
		s += " fail_by_code=" + strings.Join(codes, ",")
	}
	if r.Interrupted {
		s += " interrupted=true"
	}
	return s
}

// percentile returns the nearest-rank p-quantile of sorted samples, 0 when
// there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// quantiles returns p50, p90, p99 and the maximum of samples, in
// milliseconds. It sorts samples.
func quantiles(samples []time.Duration) (p50, p90, p99, maxi float64) {
	slices.Sort(samples)
	ms := func(p float64) float64 {
		return round(float64(percentile(samples, p))/float64(time.Millisecond), 3)
	}
	return ms(0.50), ms(0.90), ms(0.99), ms(1)
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
