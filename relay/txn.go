package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/policy"
)

// MailParams are the MAIL FROM parameters the client gave that matter to
// the backend.
type MailParams struct {
	From string // "" = null sender; already validated/quoted by the caller
	// Size is the client's SIZE= (0 = none), sent when the backend
	// advertises SIZE. It does not count the gateway's header (unknown at
	// MAIL time), so the backend's limit needs that much headroom.
	Size int64
	UTF8 bool // client gave SMTPUTF8; the backend must advertise it
	// RequireTLS: the client gave REQUIRETLS (RFC 8689). The message then
	// goes only over a backend connection with a verified certificate
	// whose server advertises REQUIRETLS, with the parameter passed on.
	RequireTLS bool
	// EightBit: the client gave BODY=8BITMIME. go-smtp declares
	// BODY=8BITMIME whenever the backend advertises it (harmless for 7-bit
	// data); when it does not, the body is sent as is, since the gateway
	// cannot downgrade (RFC 6152 §3) and such servers take 8-bit anyway.
	EightBit bool
	// Client, when set, is the client the message came from, passed on
	// before MAIL with XFORWARD or XCLIENT when the backend advertises one
	// and backend client_identity is "auto" (see Txn.identify).
	Client *ClientIdentity
	// FirstRcpt, when set, is the transaction's first recipient (already
	// validated, without the angle brackets). When the backend offers
	// PIPELINING (RFC 2920) it goes out in one write with XFORWARD and
	// MAIL, saving a round trip per command, and the Rcpt call for it,
	// which must come next, returns the reply already read.
	FirstRcpt string
	// Log, when set, is the session's logger: the transaction's lines then
	// carry its conn_id. nil means the pool's logger.
	Log *slog.Logger
}

// Result is the backend's answer to a message it accepted.
type Result struct {
	Code     int
	Enhanced [3]int
	Text     string        // backend's final reply text, enhanced codes removed
	QueueID  string        // parsed from Text ("" when none found)
	Backend  string        // "host:port" of the server
	Duration time.Duration // from Data call to final reply
}

// Txn is one mail transaction on a backend connection, from MAIL to the
// reply after the final dot. It is used by one goroutine at a time; to
// interrupt it from elsewhere, cancel the context of the running call.
type Txn struct {
	p       *Pool
	c       *conn // nil once the connection went back or was closed
	backend string
	tls     tls.ConnectionState
	tlsOK   bool
	rcpts   int
	// early is the pipelined reply to MailParams.FirstRcpt, for its Rcpt.
	early *earlyRcpt
	// err is the reply of the transport failure that broke the
	// transaction; every later call returns it.
	err *policy.Reply
	log *slog.Logger
}

// earlyRcpt is a RCPT sent with MAIL and its reply (nil: accepted).
type earlyRcpt struct {
	to  string
	err error
}

// Begin takes a connection (idle from the pool, or a new one: servers tried
// in order, failing over to the next when one is unreachable) and sends
// MAIL FROM. A pooled connection that turns out to be dead when MAIL is
// sent (the backend closed it while idle) is replaced by a new one once,
// without the caller noticing.
func (p *Pool) Begin(ctx context.Context, m MailParams) (*Txn, error) {
	if strings.ContainsAny(m.From+m.FirstRcpt, "\r\n") {
		return nil, policy.ErrInternal
	}
	fresh := false
	for {
		if ctx.Err() != nil {
			return nil, connectFailure(ctx, ctx.Err()).reply
		}
		c, r := p.acquire(ctx, fresh)
		if r != nil {
			return nil, r
		}
		t := &Txn{p: p, c: c, backend: c.srv.addr, log: m.Log}
		if t.log == nil {
			t.log = p.log
		}
		t.tls, t.tlsOK = c.tlsState()
		retry, r := t.mail(ctx, m)
		if r == nil {
			return t, nil
		}
		if !retry || fresh {
			return nil, r
		}
		t.log.Debug("backend pooled connection was stale, retrying on a new one", "backend", t.backend)
		fresh = true
	}
}

// mail sends the client's identity (identify) and MAIL FROM. retry reports
// a failure that a new connection may not have: the connection broke, or
// the backend said 421, on a connection that sat in the pool.
func (t *Txn) mail(ctx context.Context, m MailParams) (retry bool, r *policy.Reply) {
	c := t.c
	if m.UTF8 && !c.extension("SMTPUTF8") {
		// RFC 6531 §3.4: no SMTPUTF8 downgrade; the client must be told.
		t.finish(outcome{}, false)
		return false, policy.ErrUTF8Backend
	}
	if m.RequireTLS {
		// RFC 8689 §4.2.1: never downgrade; the refusals are permanent
		// because they come from our own configuration.
		if !t.tlsOK || len(t.tls.VerifiedChains) == 0 {
			t.finish(outcome{}, false)
			return false, policy.ErrRequireTLSVerify
		}
		if !c.extension("REQUIRETLS") {
			t.finish(outcome{}, false)
			return false, policy.ErrRequireTLSBackend
		}
	}
	if m.EightBit && !c.extension("8BITMIME") {
		// RFC 6152 §3 would have a relay convert to 7 bit; we cannot, and
		// servers that do not advertise 8BITMIME accept 8-bit data anyway.
		t.log.Debug("backend does not advertise 8BITMIME; sending 8-bit body as is", "backend", t.backend)
	}
	start := time.Now()
	closed, err := t.do(ctx, func() error {
		if t.canPipeline(m) {
			return t.mailPipelined(ctx, m)
		}
		if err := t.identify(ctx, m.Client); err != nil {
			// Only what broke the connection: it fails as MAIL would.
			return err
		}
		return c.client.Mail(m.From, &smtp.MailOptions{Size: m.Size, UTF8: m.UTF8, RequireTLS: m.RequireTLS})
	})
	o := classify(ctx, err, policy.ReasonBackendMail)
	o = afterCancel(ctx, o, closed)
	t.logExchange("MAIL", start, o)
	if o.reply == nil {
		return false, nil
	}
	var se *smtp.SMTPError
	isReply := errors.As(err, &se)
	// A timeout is no sign of staleness (a dead peer answers with EOF or
	// RST at once), and retrying it would double the client's wait.
	retry = c.reused && o.broken && !closed &&
		((!isReply && !isTimeout(err)) || (isReply && se.Code == 421))
	// MAIL refused leaves no transaction open (RFC 5321 §4.1.1.2): the
	// connection is fine as it is.
	t.finish(o, false)
	return retry, o.reply
}

// Rcpt sends RCPT TO for one recipient. A refusal is passed through and
// leaves the transaction usable for other recipients.
func (t *Txn) Rcpt(ctx context.Context, to string) error {
	if r := t.usable(); r != nil {
		return r
	}
	if strings.ContainsAny(to, "\r\n") {
		return policy.ErrInternal
	}
	start := time.Now()
	var closed bool
	var err error
	if e := t.early; e != nil {
		t.early = nil
		if e.to != to {
			// The backend has a recipient the caller did not ask for:
			// the transaction must not go on.
			t.log.Error("relay: Rcpt after Begin with another FirstRcpt", "first", e.to, "rcpt", to)
			t.finish(outcome{reply: policy.ErrInternal, broken: true}, false)
			return policy.ErrInternal
		}
		err = e.err
	} else {
		// Our own RCPT, not go-smtp's Client.Rcpt: that one remembers each
		// recipient for LMTP and forgets them only in Mail or Reset, which
		// the pipelined MAIL never calls, so on a pooled connection the
		// list grew for every message it carried.
		closed, err = t.do(ctx, func() error {
			_, _, err := t.c.cc.cmd(t.p.cfg.Timeouts.Command, "RCPT TO:<"+to+">")
			return err
		})
	}
	o := afterCancel(ctx, classify(ctx, err, policy.ReasonBackendRcpt), closed)
	t.logExchange("RCPT", start, o)
	if o.broken {
		t.finish(o, false)
	} else if o.reply == nil {
		t.rcpts++
	}
	return replyErr(o.reply)
}

// Data sends the message, header then body, already canonical (every line
// ending CRLF, as package spool makes it, and the whole ending with one),
// and returns the backend's reply. It returns a nil error only when the
// backend answered the whole message with 2xx; otherwise the error is the
// backend's reply passed through or a 451, and the Result is nil. Either
// way the transaction is over and Abort is a no-op.
//
// bodySize is the number of bytes body yields, or -1 when it is not known.
// When it is known, the backend offers CHUNKING (RFC 3030) and backend
// chunking is "auto", the message goes as one "BDAT n LAST" chunk with the
// command: one round trip instead of two (DATA, then the message and its
// final dot), and no dot-stuffing. Otherwise it goes with DATA, dot-stuffed
// (RFC 5321 §4.5.2), and a bare LF becomes CRLF on the way.
//
// If body fails to read, or does not yield bodySize bytes, the connection
// is closed before the final dot (or the chunk's last byte) can leave, so
// the backend discards the partial message, and Data returns ErrInternal.
// With no accepted recipient Data returns ErrNoValidRcpt without asking
// the backend.
func (t *Txn) Data(ctx context.Context, header []byte, body io.Reader, bodySize int64) (*Result, error) {
	if r := t.usable(); r != nil {
		return nil, r
	}
	if t.rcpts == 0 {
		return nil, policy.ErrNoValidRcpt
	}
	start := time.Now()
	var res *Result
	var rset bool
	cmd := "DATA"
	if bodySize >= 0 && t.p.cfg.Chunking != chunkingOff && t.c.extension("CHUNKING") {
		cmd = "BDAT"
	}
	closed, err := t.do(ctx, func() error {
		var err error
		if cmd == "BDAT" {
			res, rset, err = t.transferBDAT(header, body, bodySize)
		} else {
			res, rset, err = t.transfer(header, body)
		}
		return err
	})
	o := classify(ctx, err, policy.ReasonBackendData)
	if errors.Is(err, errBodyRead) || errors.Is(err, errChunkSize) {
		o = outcome{reply: policy.ErrInternal, broken: true}
	}
	if closed {
		if o.reply == nil {
			// The reply came before the connection was cut: the
			// backend has the message, and saying otherwise would make
			// the client send it again.
			o.broken = true
		} else {
			o = afterCancel(ctx, o, true)
		}
	}
	t.logExchange(cmd, start, o)
	// A message the backend answered counts towards MaxMessages, whatever
	// the answer.
	t.c.msgs++
	if o.reply == nil && res == nil {
		o = outcome{reply: policy.ErrBackendLost, broken: true} // cannot happen
	}
	if o.reply != nil {
		t.finish(o, rset && !o.broken)
		return nil, o.reply
	}
	res.Backend = t.backend
	res.Duration = time.Since(start)
	t.finish(o, false)
	return res, nil
}

var errOutOfStep = errors.New("relay: unexpected reply to DATA")

// errBodyRead marks a failure of the caller's body reader, as opposed to
// the connection.
var errBodyRead = errors.New("relay: reading message body")

// transfer does DATA to final reply. rset reports that DATA itself was
// refused, which may leave the transaction open at the backend.
func (t *Txn) transfer(header []byte, body io.Reader) (res *Result, rset bool, err error) {
	c := t.c
	w, err := c.client.Data()
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code/100 != 4 && se.Code/100 != 5 {
		// Anything but 354 or a refusal: the dialogue is out of step.
		return nil, false, errOutOfStep
	}
	if err != nil {
		return nil, true, err
	}
	// go-smtp puts no deadline on writing the body; ours covers all of it
	// but the last buffer, which leaves with the final dot under the
	// Final timeout.
	if err := c.bc.SetWriteDeadline(time.Now().Add(t.p.cfg.Timeouts.Data)); err != nil {
		return nil, false, err
	}
	// The message is dot-stuffed a line at a time straight onto the
	// stream go-smtp writes to (its buffer is empty after the 354); only
	// the final line break goes through go-smtp's DotWriter, whose Close
	// then sends the dot (stuff.go).
	st := getStuffer(c.cc, false)
	defer putStuffer(st)
	br := &bodyReader{r: body}
	endsLine, err := writeMessage(st, header, br)
	if err == nil && endsLine {
		_, err = io.WriteString(w, "\r\n")
	}
	if err != nil {
		// Close before CloseWithResponse could send the final dot.
		return nil, false, c.abortTransfer(br, err)
	}
	resp, err := w.CloseWithResponse()
	switch {
	case err == nil:
		return accepted(250, resp.StatusText), false, nil
	case errors.As(err, &se) && se.Code/100 == 2:
		// A 2xx other than 250 is still success (RFC 5321 §4.2.1).
		enh := [3]int(se.EnhancedCode)
		if enh[0] != 2 {
			enh = [3]int{2, 0, 0}
		}
		return &Result{Code: se.Code, Enhanced: enh, Text: se.Message, QueueID: QueueID(se.Message)}, false, nil
	default:
		return nil, false, err
	}
}

// writeMessage writes header and body through st, all but a final line
// break, and reports whether there was one (stuffer.Finish).
func writeMessage(st *stuffer, header []byte, body *bodyReader) (endsLine bool, err error) {
	if _, err := st.Write(header); err != nil {
		return false, err
	}
	buf := copyBufs.Get().(*[]byte)
	_, err = io.CopyBuffer(st, body, *buf)
	copyBufs.Put(buf)
	if err != nil {
		return false, err
	}
	return st.Finish()
}

// abortTransfer closes the connection in the middle of a message, before
// its end (final dot, or the chunk's last byte) can leave, so that the
// backend drops it, and returns the error to report: errBodyRead when the
// body failed to read, else err.
func (c *conn) abortTransfer(body *bodyReader, err error) error {
	c.close()
	if body.err != nil {
		return errors.Join(errBodyRead, body.err)
	}
	return err
}

// accepted is the Result of a 2xx reply, code and text as read.
func accepted(code int, msg string) *Result {
	enh, text := splitEnhanced(code, msg)
	return &Result{Code: code, Enhanced: enh, Text: text, QueueID: QueueID(text)}
}

// transferBDAT sends the message as one chunk, "BDAT n LAST" and then
// exactly n bytes as they are, and reads the one reply. The bytes go
// through a raw stuffer, which only turns a bare LF into CRLF (making the
// chunk too long, so the message fails rather than carry it), and a
// chunkWriter, which never lets a byte past n leave: the backend would take
// it for a command. A message of any other length closes the connection
// before the chunk is complete. rset reports a refusal, after which RFC
// 3030 §2 leaves the transaction to be reset.
func (t *Txn) transferBDAT(header []byte, body io.Reader, bodySize int64) (res *Result, rset bool, err error) {
	c := t.c
	n := int64(len(header)) + bodySize
	if err := c.bc.SetWriteDeadline(time.Now().Add(t.p.cfg.Timeouts.Data)); err != nil {
		return nil, false, err
	}
	cw := &chunkWriter{w: c.cc, left: n}
	st := getStuffer(cw, true)
	defer putStuffer(st)
	br := &bodyReader{r: body}
	var endsLine bool
	_, err = io.WriteString(c.cc, "BDAT "+strconv.FormatInt(n, 10)+" LAST\r\n")
	if err == nil {
		endsLine, err = writeMessage(st, header, br)
	}
	// The held-back line end; or, for a message not ending in one (which
	// the caller promised it would), the CRLF DATA would add, which makes
	// it longer than announced.
	if err == nil && (endsLine || cw.left < n) {
		_, err = io.WriteString(cw, "\r\n")
	}
	if err == nil {
		err = cw.finish()
	}
	if err != nil {
		return nil, false, c.abortTransfer(br, err)
	}
	code, msg, err := c.cc.send(t.p.cfg.Timeouts.Final, "")
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return accepted(code, msg), false, nil
	case errors.As(err, &se):
		return nil, true, err
	default:
		return nil, false, err
	}
}

// copyBufs saves a 32 KiB allocation per message: the body reader hides
// any WriterTo (to tell its errors from ours) and go-smtp's writer has no
// ReaderFrom, so io.Copy would allocate each time.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// bodyReader remembers its reader's error, to tell it from a write error.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Abort abandons the transaction: RSET, and the connection goes back to the
// pool, or is closed if RSET fails. It is idempotent and a no-op after Data
// or a failure; it waits for the RSET reply (Command timeout).
func (t *Txn) Abort() {
	if t == nil || t.c == nil {
		return
	}
	t.finish(outcome{}, true)
}

// Backend returns the "host:port" of the server used.
func (t *Txn) Backend() string { return t.backend }

// TLS returns the TLS state of the backend connection, and false when it is
// plaintext.
func (t *Txn) TLS() (tls.ConnectionState, bool) { return t.tls, t.tlsOK }

// usable returns why no command may be sent, or nil.
func (t *Txn) usable() *policy.Reply {
	switch {
	case t.err != nil:
		return t.err
	case t.c == nil:
		// Used after Data or Abort: the caller's bug, not the backend's.
		return policy.ErrInternal
	}
	return nil
}

// do runs f, closing the connection if ctx ends meanwhile. closed reports
// that it did; the connection is then unusable whatever f returned.
func (t *Txn) do(ctx context.Context, f func() error) (closed bool, err error) {
	raw := t.c.raw
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	err = f()
	return !stop(), err
}

// afterCancel makes an exchange that ctx cut short a transport failure of
// the context's kind, whatever the half-closed connection made of it.
func afterCancel(ctx context.Context, o outcome, closed bool) outcome {
	if !closed {
		return o
	}
	return outcome{reply: transportReply(ctx, context.Cause(ctx)), broken: true}
}

// finish ends the transaction's hold on the connection: closed when
// broken, else back to the pool, after RSET (and the EHLO go-smtp then
// insists on) when rset.
func (t *Txn) finish(o outcome, rset bool) {
	c := t.c
	defer func() { t.c = nil }()
	if o.broken {
		t.err = o.reply
		t.p.discard(c)
		return
	}
	if rset {
		start := time.Now()
		err := c.client.Reset()
		if err == nil {
			// Reset makes go-smtp forget the EHLO; greet again now, so an
			// idle connection is always ready for MAIL.
			err = c.client.Hello(t.p.helo)
		}
		t.logExchange("RSET", start, classify(context.Background(), err, ""))
		if err != nil {
			t.p.discard(c)
			return
		}
	}
	t.p.put(c)
}

func (t *Txn) logExchange(cmd string, start time.Time, o outcome) {
	log := t.log
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	args := []any{"backend", t.backend, "cmd", cmd, "dur", time.Since(start)}
	if t.c != nil {
		args = append(args, "conn", t.c.id)
	}
	if o.reply != nil {
		args = append(args, "reply", o.reply.Error(), "broken", o.broken)
	}
	log.Debug("backend exchange", args...)
}

// replyErr keeps a nil *policy.Reply from becoming a non-nil error.
func replyErr(r *policy.Reply) error {
	if r == nil {
		return nil
	}
	return r
}

// canPipeline reports whether MAIL (with the client's identity and the
// first recipient) can go out in one write: the backend offers
// PIPELINING, and the identity, if any, is XFORWARD. XCLIENT restarts the
// session with a greeting, so it cannot be pipelined.
func (t *Txn) canPipeline(m MailParams) bool {
	c := t.c
	if !c.extension("PIPELINING") {
		return false
	}
	if m.Client == nil || t.p.cfg.ClientIdentity == identityOff || c.extension("XFORWARD") {
		return true
	}
	return !c.extension("XCLIENT")
}

// mailPipelined sends XFORWARD (when the backend offers it), MAIL and the
// first RCPT in one write and reads their replies: one round trip where
// there were three. A refused XFORWARD is logged as identify does; the RCPT
// reply is kept for Rcpt. The error is MAIL's, as go-smtp's Mail returns it,
// or the transport's.
func (t *Txn) mailPipelined(ctx context.Context, m MailParams) error {
	c := t.c
	var lines []string
	if m.Client != nil && t.p.cfg.ClientIdentity != identityOff {
		if ok, names := c.client.Extension("XFORWARD"); ok {
			lines = commandLines("XFORWARD", m.Client.attrs(false, names))
		}
	}
	nx := len(lines)
	lines = append(lines, t.mailLine(m))
	if m.FirstRcpt != "" {
		lines = append(lines, "RCPT TO:<"+m.FirstRcpt+">")
	}
	start := time.Now()
	replies, err := c.cc.pipeline(t.p.cfg.Timeouts.Command, lines)
	var mailErr error
	for i, r := range replies {
		switch {
		case i < nx:
			rerr := r.err(250)
			t.logExchange("XFORWARD", start, classify(ctx, rerr, ""))
			if rerr := t.identityRefused("XFORWARD", lines[i], rerr); rerr != nil {
				return rerr // 421: the backend is closing
			}
		case i == nx:
			mailErr = r.err(250)
		case mailErr == nil:
			t.early = &earlyRcpt{to: m.FirstRcpt, err: r.err(25)}
		}
		// A RCPT behind a refused MAIL was answered 503: nothing to keep.
	}
	if err != nil {
		t.early = nil
		return err
	}
	return mailErr
}

// mailLine is MAIL FROM with the parameters go-smtp's Client.Mail would
// give it for these options.
func (t *Txn) mailLine(m MailParams) string {
	c := t.c
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + m.From + ">")
	if c.extension("8BITMIME") {
		b.WriteString(" BODY=8BITMIME")
	}
	if m.Size > 0 && c.extension("SIZE") {
		b.WriteString(" SIZE=" + strconv.FormatInt(m.Size, 10))
	}
	if m.RequireTLS {
		b.WriteString(" REQUIRETLS") // checked against the backend by mail
	}
	if m.UTF8 {
		b.WriteString(" SMTPUTF8") // likewise
	}
	return b.String()
}
