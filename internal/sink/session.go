package sink

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// deadlineConn renews the deadline before every read and write, so a client
// that stops talking (or reading) is dropped after the idle timeout whatever
// the session is doing, TLS handshake included.
type deadlineConn struct {
	net.Conn
	idle  time.Duration
	until time.Time // if set, the read deadline instead of now+idle
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	t := d.until
	if t.IsZero() {
		t = time.Now().Add(d.idle)
	}
	d.Conn.SetReadDeadline(t)
	return d.Conn.Read(p)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	d.Conn.SetWriteDeadline(time.Now().Add(d.idle))
	return d.Conn.Write(p)
}

// session is the state of one connection. Only its own goroutine touches it.
type session struct {
	s   *Server
	dc  *deadlineConn
	r   *bufio.Reader
	w   *bufio.Writer
	seq int
	log *slog.Logger

	greeted bool   // EHLO or HELO accepted since the start or STARTTLS
	helo    string // its argument
	tls     bool

	// The mail transaction (RFC 5321 §3.3).
	mail   bool // MAIL accepted
	from   string
	params string
	rcpts  []string
	chunks []byte // BDAT data so far (RFC 3030)
	bdat   bool   // a BDAT chunk came in this transaction
	over   bool   // the chunks went past the size limit
}

func newSession(s *Server, c net.Conn, seq int) *session {
	dc := &deadlineConn{Conn: c, idle: s.idle}
	return &session{
		s:   s,
		dc:  dc,
		r:   bufio.NewReader(dc),
		w:   bufio.NewWriter(dc),
		seq: seq,
		log: s.log.With("conn", seq),
	}
}

var errLongLine = errors.New("line too long")

// run serves the connection until QUIT, an error or a fault that ends it.
func (c *session) run() {
	f := c.s.faults()
	if f.Hang == PhaseGreeting {
		c.hang()
		return
	}
	greeting := Reply{220, c.s.hostname + " ESMTP sink"}
	if f.Greeting != nil {
		greeting = *f.Greeting
	}
	c.reply(greeting)
	if greeting.Code == 421 {
		c.w.Flush()
		return
	}
	refusing := greeting.Code/100 != 2
	for {
		line, err := c.readLine()
		if err == errLongLine {
			c.reply(Reply{500, "5.5.2 Line too long"})
			continue
		}
		if err != nil {
			c.log.Debug("sink connection ends", "err", err)
			return
		}
		c.log.Debug("sink command", "line", line)
		if refusing {
			if !c.refused(line) {
				return
			}
			continue
		}
		if !c.dispatch(line) {
			return
		}
	}
}

// readLine returns the next command line without its line ending (LF, with
// or without CR). Pending replies are flushed first unless a complete line
// is already buffered: that is what lets pipelined replies share one write
// without ever making a client wait for an answer it is owed.
func (c *session) readLine() (string, error) {
	buffered, _ := c.r.Peek(c.r.Buffered())
	if bytes.IndexByte(buffered, '\n') < 0 {
		if err := c.w.Flush(); err != nil {
			return "", err
		}
	}
	b, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = c.r.ReadSlice('\n')
		}
		if err == nil {
			err = errLongLine
		}
		return "", err
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b[:len(b)-1]), "\r"), nil
}

// reply queues r; errors surface at the next flush.
func (c *session) reply(r Reply) {
	c.w.WriteString(r.String())
}

// answer queues r and reports whether the session goes on: a 421 means the
// server is closing the channel (RFC 5321 §3.8), so the sink does.
func (c *session) answer(r Reply) bool {
	c.reply(r)
	if r.Code == 421 {
		c.w.Flush()
		return false
	}
	return true
}

// hang sends what is owed so far, then swallows input until the client or
// Close ends the connection, or the idle timeout does.
func (c *session) hang() {
	c.w.Flush()
	c.log.Debug("sink hangs")
	io.Copy(io.Discard, c.r)
}

// refused handles a command after a non-2xx greeting: RFC 5321 §3.1 has the
// server wait for QUIT and answer anything else with 503.
func (c *session) refused(line string) bool {
	verb, _, _ := strings.Cut(line, " ")
	if strings.EqualFold(verb, "QUIT") {
		c.reply(Reply{221, "2.0.0 Bye"})
		c.w.Flush()
		return false
	}
	c.reply(Reply{503, "5.5.1 Bad sequence of commands"})
	return true
}

// dispatch runs one command and reports whether the session goes on.
func (c *session) dispatch(line string) bool {
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	switch verb = strings.ToUpper(verb); {
	case verb == "EHLO" || verb == "HELO":
		c.ehlo(verb, arg)
	case verb == "MAIL":
		return c.mailCmd(arg)
	case verb == "RCPT":
		return c.rcptCmd(arg)
	case verb == "DATA":
		return c.dataCmd(arg)
	case verb == "BDAT" && c.s.advertises("CHUNKING"):
		return c.bdatCmd(arg)
	case verb == "RSET":
		c.reset()
		c.s.count(func(st *Stats) { st.Rsets++ })
		c.reply(Reply{250, "2.0.0 Ok"})
	case verb == "NOOP":
		c.reply(Reply{250, "2.0.0 Ok"})
	case verb == "QUIT":
		c.reply(Reply{221, "2.0.0 Bye"})
		c.w.Flush()
		return false
	case verb == "STARTTLS" && c.s.tls != nil:
		return c.starttls(arg)
	case verb == "":
		c.reply(Reply{500, "5.5.2 Syntax error"})
	default:
		c.reply(Reply{502, "5.5.2 Command not recognized"})
	}
	return true
}

// reset ends the mail transaction (RFC 5321 §4.1.1.5).
func (c *session) reset() {
	c.mail, c.from, c.params, c.rcpts = false, "", "", nil
	c.chunks, c.bdat, c.over = nil, false, false
}

func (c *session) ehlo(verb, arg string) {
	if arg == "" {
		c.reply(Reply{501, "5.5.4 Syntax: " + verb + " hostname"})
		return
	}
	c.reset()
	c.greeted, c.helo = true, arg
	c.s.count(func(st *Stats) { st.Ehlos++ })
	if verb == "HELO" {
		c.reply(Reply{250, c.s.hostname})
		return
	}
	lines := append([]string{c.s.hostname}, c.s.exts...)
	if c.s.tls != nil && !c.tls {
		lines = append(lines, "STARTTLS")
	}
	c.reply(Reply{250, strings.Join(lines, "\n")})
}

func (c *session) mailCmd(arg string) bool {
	f := c.s.faults()
	if f.Hang == PhaseMail {
		c.hang()
		return false
	}
	switch {
	case !c.greeted:
		c.reply(Reply{503, "5.5.1 Send EHLO first"})
		return true
	case c.mail:
		c.reply(Reply{503, "5.5.1 Nested MAIL command"})
		return true
	}
	from, params, ok := parsePath(arg, "FROM:")
	if !ok {
		c.reply(Reply{501, "5.5.4 Syntax: MAIL FROM:<address> [parameters]"})
		return true
	}
	if r := c.checkParams(params, mailParamExt); r != nil {
		c.reply(*r)
		return true
	}
	r := Reply{250, "2.1.0 Ok"}
	if f.OnMail != nil {
		if cr := f.OnMail(from, params); cr != nil {
			r = *cr
		}
	}
	if r.Code/100 == 2 {
		c.mail, c.from, c.params, c.rcpts = true, from, params, nil
	}
	return c.answer(r)
}

func (c *session) rcptCmd(arg string) bool {
	f := c.s.faults()
	if f.Hang == PhaseRcpt {
		c.hang()
		return false
	}
	if !c.mail {
		c.reply(Reply{503, "5.5.1 Need MAIL command"})
		return true
	}
	rcpt, params, ok := parsePath(arg, "TO:")
	if !ok || rcpt == "" {
		c.reply(Reply{501, "5.1.3 Syntax: RCPT TO:<address> [parameters]"})
		return true
	}
	if r := c.checkParams(params, rcptParamExt); r != nil {
		c.reply(*r)
		return true
	}
	r := Reply{250, "2.1.5 Ok"}
	if f.OnRcpt != nil {
		if cr := f.OnRcpt(rcpt, params); cr != nil {
			r = *cr
		}
	}
	if r.Code/100 == 2 {
		c.rcpts = append(c.rcpts, rcpt)
	}
	return c.answer(r)
}

// parsePath splits `FROM:<path> params` (keyword case-insensitive, spaces
// after the colon tolerated as most servers do).
func parsePath(arg, keyword string) (path, params string, ok bool) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", "", false
	}
	rest := strings.TrimLeft(arg[len(keyword):], " ")
	end := strings.IndexByte(rest, '>')
	if !strings.HasPrefix(rest, "<") || end < 0 {
		return "", "", false
	}
	after := rest[end+1:]
	if after != "" && after[0] != ' ' {
		return "", "", false
	}
	return rest[1:end], strings.TrimSpace(after), true
}

// mailParamExt and rcptParamExt map each ESMTP parameter the sink knows to
// the extension that must have been advertised for a client to use it.
var (
	mailParamExt = map[string]string{
		"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8",
		"RET": "DSN", "ENVID": "DSN", "AUTH": "AUTH", "REQUIRETLS": "REQUIRETLS",
	}
	rcptParamExt = map[string]string{"NOTIFY": "DSN", "ORCPT": "DSN"}
)

// checkParams refuses parameters of extensions the sink did not advertise
// (555, RFC 5321 §4.1.1.11), so a client that ignores the EHLO reply is
// caught, and checks the values the sink can check (RFC 1870, RFC 6152).
func (c *session) checkParams(params string, known map[string]string) *Reply {
	for _, p := range strings.Fields(params) {
		kw, val, _ := strings.Cut(p, "=")
		kw = strings.ToUpper(kw)
		ext, ok := known[kw]
		if !ok || !c.s.advertises(ext) {
			return &Reply{555, "5.5.4 Unsupported parameter " + kw}
		}
		switch kw {
		case "SIZE":
			n, err := strconv.ParseUint(val, 10, 63)
			if err != nil {
				return &Reply{501, "5.5.4 Bad SIZE value"}
			}
			if n > uint64(c.s.maxSize) {
				return &Reply{552, "5.3.4 Message size exceeds fixed limit"}
			}
		case "BODY":
			if v := strings.ToUpper(val); v != "7BIT" && v != "8BITMIME" {
				return &Reply{501, "5.5.4 Bad BODY value"}
			}
		}
	}
	return nil
}

// advertises reports whether the EHLO reply lists keyword ext.
func (s *Server) advertises(ext string) bool {
	for _, e := range s.exts {
		kw, _, _ := strings.Cut(e, " ")
		if strings.EqualFold(kw, ext) {
			return true
		}
	}
	return false
}

func (c *session) dataCmd(arg string) bool {
	f := c.s.faults()
	if f.Hang == PhaseData {
		c.hang()
		return false
	}
	switch {
	case arg != "":
		c.reply(Reply{501, "5.5.4 Syntax: DATA"})
		return true
	case !c.mail || len(c.rcpts) == 0:
		c.reply(Reply{503, "5.5.1 Need RCPT command"})
		return true
	case c.bdat:
		// RFC 3030 §3: no DATA in a transaction that used BDAT.
		c.reply(Reply{503, "5.5.1 DATA after BDAT"})
		return true
	}
	c.reply(Reply{354, "End data with <CR><LF>.<CR><LF>"})
	raw, tooBig, err := c.readData(f.DropAfterDataBytes)
	if err != nil {
		c.log.Debug("sink data aborted", "err", err)
		return false
	}
	m := c.message(raw)
	if !tooBig {
		m.Data = unstuff(raw, c.s.lenient)
	}
	return c.end(m, tooBig)
}

// message is the transaction's message so far, with raw as its Raw.
func (c *session) message(raw []byte) Message {
	return Message{
		Conn: c.seq, Helo: c.helo, From: c.from, MailParams: c.params,
		Rcpts: c.rcpts, Raw: raw, TLS: c.tls,
	}
}

// bdatCmd reads one BDAT chunk (RFC 3030): exactly its size in bytes,
// whatever they hold, then the reply; LAST ends the message as the final
// dot of DATA does. A chunk outside a transaction is read and refused, so
// that its bytes are not taken for commands.
func (c *session) bdatCmd(arg string) bool {
	f := c.s.faults()
	if f.Hang == PhaseData {
		c.hang()
		return false
	}
	size, last, ok := parseBDAT(arg)
	if !ok {
		// The chunk's length is unknown, so neither is where the next
		// command starts: give up on the connection.
		c.answer(Reply{501, "5.5.4 Syntax: BDAT size [LAST]"})
		c.w.Flush()
		return false
	}
	from := len(c.chunks)
	if f.DropAfterDataBytes > 0 && from+size > f.DropAfterDataBytes {
		_, _ = io.CopyN(io.Discard, c.r, int64(f.DropAfterDataBytes-from))
		c.log.Debug("sink data aborted", "err", errDropped)
		return false
	}
	if c.over || from+size > c.s.maxSize {
		c.over = true
		if _, err := io.CopyN(io.Discard, c.r, int64(size)); err != nil {
			return false
		}
	} else {
		c.chunks = append(c.chunks, make([]byte, size)...)
		if _, err := io.ReadFull(c.r, c.chunks[from:]); err != nil {
			c.log.Debug("sink data aborted", "err", err)
			return false
		}
	}
	switch {
	case !c.mail || len(c.rcpts) == 0:
		c.chunks, c.over = nil, false
		c.reply(Reply{503, "5.5.1 Need RCPT command"})
		return true
	case !last:
		c.bdat = true
		c.reply(Reply{250, "2.0.0 " + strconv.Itoa(size) + " octets received"})
		return true
	}
	m := c.message(c.chunks)
	m.BDAT = true
	if !c.over {
		m.Data = c.chunks
		if m.Data == nil {
			m.Data = []byte{} // an empty message, not one over the limit
		}
	}
	return c.end(m, c.over)
}

// parseBDAT reads "size" or "size LAST".
func parseBDAT(arg string) (size int, last bool, ok bool) {
	n, rest, _ := strings.Cut(arg, " ")
	size, err := strconv.Atoi(n)
	if err != nil || size < 0 || n[0] == '+' {
		return 0, false, false
	}
	switch rest = strings.TrimSpace(rest); {
	case rest == "":
		return size, false, true
	case strings.EqualFold(rest, "LAST"):
		return size, true, true
	}
	return 0, false, false
}

// end finishes the transaction of m, after DATA's final dot or the last
// BDAT chunk: the fault hooks, the final reply, the record.
func (c *session) end(m Message, tooBig bool) bool {
	c.reset()
	m.ID = c.s.newID()
	if f := c.s.faults(); f.Hang == PhaseEOD {
		c.s.record(m)
		c.hang()
		return false
	}
	r := c.finalReply(&m, tooBig, c.s.faults().OnData)
	m.Accepted = r.Code/100 == 2
	c.s.record(m)
	c.log.Info("sink message", "id", m.ID, "from", m.From, "rcpts", len(m.Rcpts),
		"bytes", len(m.Data), "code", r.Code)
	return c.answer(r)
}

// finalReply decides the reply to the end of data and, for a 2xx, stores the
// message before saying so.
func (c *session) finalReply(m *Message, tooBig bool, onData func(*Message) *Reply) Reply {
	if tooBig {
		return Reply{552, "5.3.4 Message size exceeds fixed limit"}
	}
	r := Reply{250, "2.0.0 Ok: queued as " + m.ID}
	if onData != nil {
		if cr := onData(m); cr != nil {
			r = *cr
		}
	}
	if r.Code/100 == 2 && c.s.dir != "" {
		if err := c.s.store(m); err != nil {
			c.log.Error("sink store", "id", m.ID, "err", err)
			return Reply{451, "4.3.0 Cannot store message"}
		}
	}
	return r
}

// starttls upgrades the connection (RFC 3207 §4.2): the session starts
// over, EHLO included, and whatever the client pipelined after STARTTLS came
// in clear text and must not be obeyed as if it came over TLS
// (CVE-2011-0411). Replacing the bufio.Reader drops it along with the old
// reader's buffer.
func (c *session) starttls(arg string) bool {
	switch {
	case arg != "":
		c.reply(Reply{501, "5.5.4 Syntax: STARTTLS"})
		return true
	case c.tls:
		c.reply(Reply{503, "5.5.1 TLS already active"})
		return true
	}
	c.reply(Reply{220, "2.0.0 Ready to start TLS"})
	if err := c.w.Flush(); err != nil {
		return false
	}
	tc := tls.Server(c.dc, c.s.tls)
	if err := tc.Handshake(); err != nil {
		c.log.Debug("sink TLS handshake", "err", err)
		return false
	}
	c.r, c.w = bufio.NewReader(tc), bufio.NewWriter(tc)
	c.tls, c.greeted, c.helo = true, false, ""
	c.reset()
	return true
}
