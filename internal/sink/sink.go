// Package sink is a small SMTP server (RFC 5321) that plays the backend mail
// server: `gateway demo` runs it in-process and stores every accepted message
// as an .eml file, and tests of the relay and the gateway use it as a backend
// that can misbehave on purpose and report leaked connections.
//
// It is written by hand over net.Conn rather than with go-smtp's server
// because it must see the raw bytes of the dialogue and be able to break the
// protocol at chosen points.
//
// Mechanism. Each connection is served by one goroutine that reads command
// lines from a bufio.Reader and answers them in order (RFC 5321 §4.1, reply
// format §4.2). Replies are buffered and flushed only when no complete
// command is waiting in the read buffer, so a pipelined group (RFC 2920) is
// answered with one write and a non-pipelining client is never left waiting.
// The mail transaction (§3.3) is MAIL, one or more RCPT, DATA; it is reset by
// RSET (§4.1.1.5), by EHLO/HELO (§4.1.4) and after every DATA, successful or
// not. DATA (§4.1.1.4) ends at <CRLF>.<CRLF> and the transparency dot of
// lines starting with "." is removed (§4.5.2). A Lenient sink also ends DATA
// at the bare-CR/bare-LF variants in LenientEODs, which is the behaviour SMTP
// smuggling exploits; it then reads the following bytes as commands, so a
// smuggled message shows up as a second Message. STARTTLS follows RFC 3207.
//
// Fault injection (Config.Greeting, OnMail, OnRcpt, OnData, Hang,
// DropAfterDataBytes) is read afresh at each point of use, so SetConfig can
// change it while connections are open. Every connection has an idle
// deadline, and Close ends every connection at once and waits for every
// goroutine, so a test that forgets a client still finishes, and one that
// leaks a connection can see it with WaitIdle.
package sink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reply is an SMTP reply the sink sends. Text may contain an enhanced code
// ("5.1.1 User unknown") and "\n" for a multi-line reply (each line gets
// "code-" except the last, "code ").
type Reply struct {
	Code int
	Text string
}

// String returns the reply as it is written on the wire (RFC 5321 §4.2):
// every line but the last is "code-text", the last "code text", each ended by
// CRLF. Carriage returns in Text are dropped so a reply can never carry a bare
// CR or split a line in a way the code did not announce.
func (r Reply) String() string {
	lines := strings.Split(strings.ReplaceAll(r.Text, "\r", ""), "\n")
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%03d", r.Code)
		if l != "" || sep == "-" {
			b.WriteString(sep + l)
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// Phase names a point of the dialogue, for Hang.
type Phase string

// The phases at which Config.Hang can stop the sink answering.
const (
	PhaseNone     Phase = ""
	PhaseGreeting Phase = "greeting" // accept the TCP connection, never send the banner
	PhaseMail     Phase = "mail"     // never answer MAIL
	PhaseRcpt     Phase = "rcpt"     // never answer RCPT
	PhaseData     Phase = "data"     // never answer the DATA command (no 354)
	PhaseEOD      Phase = "eod"      // read the whole message, never answer the final dot
)

// DefaultIdleTimeout is how long a connection may stay silent before the sink
// closes it, when Config.IdleTimeout is zero. RFC 5321 §4.5.3.2.7 asks a
// server for at least 5 minutes; the sink is shorter because it only ever
// talks to programs, and a stuck test client must not hold a goroutine long.
const DefaultIdleTimeout = 2 * time.Minute

// defaultMaxSize bounds the memory one message may take when the advertised
// extensions carry no SIZE limit.
const defaultMaxSize = 100 << 20

// DefaultExtensions returns the EHLO keywords a sink advertises when
// Config.Extensions is nil. It returns a fresh slice, so a test can drop one
// entry (say SMTPUTF8) to test capability matching.
func DefaultExtensions() []string {
	return []string{"PIPELINING", "SIZE 104857600", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"}
}

// Config describes a sink. The fault-injection fields (Greeting, OnMail,
// OnRcpt, OnData, Hang, DropAfterDataBytes) may be changed later with
// SetConfig; the others are fixed at Start. Callbacks run on connection
// goroutines, may be called concurrently, may call the Server's methods
// and must return: Close waits for them.
type Config struct {
	Addr     string // listen address; default "127.0.0.1:0"
	Hostname string // banner/EHLO name; default "sink.test"
	// Dir, if set, receives each accepted message as Dir/<queue id>.eml
	// holding Message.Data (dot-unstuffed, exactly as received). It is
	// created if missing.
	Dir string
	// Lenient makes the sink deliberately vulnerable to SMTP smuggling:
	// besides <CRLF>.<CRLF> it also ends DATA on every sequence in
	// LenientEODs, and then parses the following bytes as commands (so a
	// smuggled second message would arrive as a second Message). Used to
	// prove the gateway never forwards such sequences.
	Lenient bool
	// Extensions advertised in EHLO. nil means DefaultExtensions(); an empty
	// non-nil slice advertises none. STARTTLS is added by the sink when TLS
	// is set and must not be listed. A "SIZE n" entry also sets the largest
	// message accepted. "CHUNKING" makes the sink take BDAT (RFC 3030);
	// it is not among the defaults, so that DATA, and what the gateway
	// does to the data on its way, stays what most tests see.
	Extensions []string
	// TLS, if non-nil, makes the sink advertise and support STARTTLS
	// (RFC 3207: reset state, discard pipelined input, client must EHLO
	// again).
	TLS *tls.Config
	// Greeting replaces "220 <hostname> ESMTP sink". A 421 is sent and the
	// connection closed; any other non-2xx code (554) is answered as RFC
	// 5321 §3.1 says: 503 to every command until QUIT.
	Greeting *Reply
	// OnMail decides the reply to MAIL; nil func or nil result means
	// "250 2.1.0 Ok". Called only for syntactically valid commands.
	OnMail func(from, params string) *Reply
	// OnRcpt decides the reply to RCPT; nil means "250 2.1.5 Ok".
	OnRcpt func(rcpt, params string) *Reply
	// OnData decides the final reply to DATA; nil means
	// "250 2.0.0 Ok: queued as <ID>". m.ID is already set.
	OnData func(m *Message) *Reply
	// Hang stops answering at that phase: the sink keeps reading and
	// discarding until the client closes, the idle timeout or Close.
	Hang Phase
	// DropAfterDataBytes > 0 closes the connection abruptly once that many
	// bytes of message data have been read, unless the data ended earlier.
	DropAfterDataBytes int
	// IdleTimeout is how long the sink waits for the client (each read or
	// write); zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	Log         *slog.Logger // nil = discard

	// eodGrace overrides defaultEODGrace, so tests can make the wait
	// long enough (or short enough) to be deterministic.
	eodGrace time.Duration
}

// Message is one message the sink accepted (final reply 2xx) or was offered.
type Message struct {
	ID         string   // queue id, unique per sink, e.g. "S0000001A"
	Conn       int      // connection sequence number (1-based), to see connection reuse
	Helo       string   // the argument of the last EHLO or HELO
	From       string   // the address inside MAIL FROM:<...>
	MailParams string   // ESMTP parameters after the address, e.g. "SIZE=123 BODY=8BITMIME"
	Rcpts      []string // accepted recipients, in order
	// Data is the message data after dot-unstuffing: the bytes between
	// DATA's 354 and the end-of-data marker, minus the marker. The line
	// break that ends the last line is part of the data. Nil when the
	// message exceeded the size limit.
	Data []byte
	// Raw is the bytes on the wire, before dot-unstuffing, without the
	// end-of-data marker. With BDAT, Raw and Data are the chunks' bytes.
	Raw      []byte
	BDAT     bool // the message came in BDAT chunks (CHUNKING, RFC 3030)
	TLS      bool // the transaction happened after STARTTLS
	Accepted bool // the final reply was 2xx
}

// Stats are counters since Start.
type Stats struct {
	Conns    int // connections accepted so far
	Messages int // messages offered (DATA completed)
	Accepted int // messages whose final reply was 2xx
	Rsets    int // RSET commands
	Ehlos    int // EHLO and HELO commands answered 250
}

// Server is a running sink. Its methods are safe for concurrent use.
type Server struct {
	ln       net.Listener
	hostname string
	dir      string
	lenient  bool
	eods     []string // end-of-data sequences in force
	exts     []string
	tls      *tls.Config
	idle     time.Duration
	grace    time.Duration // see defaultEODGrace
	maxSize  int
	log      *slog.Logger

	cfgMu sync.Mutex
	cfg   Config // only the fault-injection fields are read after Start

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{}
	msgs    []Message
	stats   Stats
	changed chan struct{} // closed and replaced whenever msgs or conns change

	done chan struct{} // closed by Close, stops the accept loop's back-off
	wg   sync.WaitGroup
}

// Start listens on cfg.Addr and serves in the background until Close.
func Start(cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("sink: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := newServer(cfg)
	s.ln = ln
	s.log.Info("sink listening", "addr", ln.Addr().String(), "lenient", cfg.Lenient)
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "sink.test"
	}
	if cfg.Extensions == nil {
		cfg.Extensions = DefaultExtensions()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.eodGrace <= 0 {
		cfg.eodGrace = defaultEODGrace
	}
	return cfg
}

// newServer builds a Server without a listener from a Config that has its
// defaults; tests feed it connections through serve.
func newServer(cfg Config) *Server {
	s := &Server{
		hostname: cfg.Hostname,
		dir:      cfg.Dir,
		lenient:  cfg.Lenient,
		eods:     []string{strictEOD},
		exts:     slices.Clone(cfg.Extensions),
		tls:      cfg.TLS,
		idle:     cfg.IdleTimeout,
		grace:    cfg.eodGrace,
		maxSize:  sizeLimit(cfg.Extensions),
		log:      cfg.Log,
		cfg:      cfg,
		conns:    map[net.Conn]struct{}{},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.Lenient {
		s.eods = append(s.eods, LenientEODs...)
	}
	return s
}

// sizeLimit reads the SIZE extension (RFC 1870 §4); "SIZE 0" or none means
// no declared limit, but memory is still bounded.
func sizeLimit(exts []string) int {
	for _, e := range exts {
		kw, arg, _ := strings.Cut(e, " ")
		if strings.EqualFold(kw, "SIZE") {
			if n, err := strconv.Atoi(strings.TrimSpace(arg)); err == nil && n > 0 {
				return n
			}
		}
	}
	return defaultMaxSize
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off rather than spin.
			s.log.Warn("sink accept", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		s.serve(c)
	}
}

// serve registers c and serves it on a new goroutine. The registration and
// wg.Add happen under mu with closed checked, so Close never misses a
// connection nor races wg.Wait.
func (s *Server) serve(c net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.stats.Conns++
	seq := s.stats.Conns
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.notifyLocked()
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.forget(c)
		newSession(s, c, seq).run()
	}()
}

func (s *Server) forget(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Addr returns the address the sink listens on, e.g. "127.0.0.1:2525".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Messages returns a copy of every message offered so far, accepted and
// refused, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMessages(s.msgs, false)
}

// Accepted returns a copy of the messages whose final reply was 2xx.
func (s *Server) Accepted() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMessages(s.msgs, true)
}

// copyMessages deep-copies so that callers can neither race with nor alter
// what other callers see.
func copyMessages(ms []Message, acceptedOnly bool) []Message {
	out := []Message{}
	for _, m := range ms {
		if acceptedOnly && !m.Accepted {
			continue
		}
		m.Rcpts = slices.Clone(m.Rcpts)
		m.Data = slices.Clone(m.Data)
		m.Raw = slices.Clone(m.Raw)
		out = append(out, m)
	}
	return out
}

// WaitMessages waits until at least n messages (accepted or not) have
// arrived and returns them all. On timeout it returns those there are and an
// error.
func (s *Server) WaitMessages(n int, timeout time.Duration) ([]Message, error) {
	if s.waitFor(timeout, func() bool { return len(s.msgs) >= n }) {
		return s.Messages(), nil
	}
	ms := s.Messages()
	return ms, fmt.Errorf("sink: %d messages after %v, want %d", len(ms), timeout, n)
}

// WaitIdle waits until no connection is open and returns nil, or an error
// after timeout. Tests call it after closing their clients to prove that
// neither side leaked a connection.
func (s *Server) WaitIdle(timeout time.Duration) error {
	if s.waitFor(timeout, func() bool { return len(s.conns) == 0 }) {
		return nil
	}
	return fmt.Errorf("sink: %d connections still open after %v", s.OpenConns(), timeout)
}

// waitFor reports whether cond (called with mu held) became true within
// timeout.
func (s *Server) waitFor(timeout time.Duration, cond func() bool) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		}
	}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// OpenConns returns the number of connections currently open.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes the listener and every connection, whatever it is doing, and
// waits for all the sink's goroutines to return. Calling it again is
// harmless.
func (s *Server) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	var err error
	if !already {
		close(s.done)
		if s.ln != nil {
			err = s.ln.Close()
		}
	}
	s.wg.Wait()
	return err
}

// SetConfig changes the fault-injection fields (Greeting, OnMail, OnRcpt,
// OnData, Hang, DropAfterDataBytes) at run time. fn gets a copy of the
// current Config; changes to other fields are ignored. fn must not call
// SetConfig. The changes take effect at the next point of use, also on
// connections already open.
func (s *Server) SetConfig(fn func(*Config)) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	c := s.cfg
	fn(&c)
	s.cfg.Greeting = c.Greeting
	s.cfg.OnMail, s.cfg.OnRcpt, s.cfg.OnData = c.OnMail, c.OnRcpt, c.OnData
	s.cfg.Hang = c.Hang
	s.cfg.DropAfterDataBytes = c.DropAfterDataBytes
}

// faults returns a snapshot of the configuration for one point of use.
func (s *Server) faults() Config {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	return s.cfg
}

// newID returns the next queue id.
func (s *Server) newID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Messages++
	return fmt.Sprintf("S%07dA", s.stats.Messages)
}

// record stores an offered message (its ID was counted by newID).
func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Accepted {
		s.stats.Accepted++
	}
	s.msgs = append(s.msgs, m)
	s.notifyLocked()
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// store writes m.Data to Dir/<ID>.eml through a temporary file and a rename,
// so a reader of Dir never sees a partial message. There is no fsync: the
// folder is for demos and tests, not for surviving a crash.
func (s *Server) store(m *Message) error {
	f, err := os.CreateTemp(s.dir, ".sink-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(m.Data)
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp makes 0600
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.dir, m.ID+".eml"))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
