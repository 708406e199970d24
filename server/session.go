package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/refid"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
	"github.com/mxgate/mxgate/relay"
)

// connState is what the gateway knows about one TCP connection. It lives in
// the connection wrapper, not in the go-smtp Session, because go-smtp makes
// a new Session at every HELO/EHLO after STARTTLS (libraries.md §1.2).
type connState struct {
	id       string
	ip       netip.Addr
	port     int
	listener string
	start    time.Time
	rt       *Runtime // the snapshot this connection was accepted with
	srv      *Server
	conn     *conn
	log      *slog.Logger

	// pending are the connection's connect-stage checks, started when it
	// was admitted.
	pending *checks.Pending

	mu     sync.Mutex
	ptr    string // reverse DNS, once the fcrdns check ran
	fcrdns *bool
	helo   string
	tls    *verdict.TLS
	txns   int  // verdict records written for transactions
	inTxn  bool // a transaction is open (shutdown waits for it)
}

func (st *connState) client() verdict.Client {
	st.mu.Lock()
	defer st.mu.Unlock()
	return verdict.Client{IP: st.ip.String(), Port: st.port, PTR: st.ptr, FCrDNS: st.fcrdns, Helo: st.helo, TLS: st.tls}
}

func (st *connState) busy() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.inTxn
}

// session is one go-smtp Session: from a HELO/EHLO to the next STARTTLS or
// the end of the connection. Its methods may run concurrently (go-smtp runs
// Data in its own goroutine for BDAT while Reset or Logout can arrive), so
// all state is under mu. Every method returns nil or a bare *smtp.SMTPError
// made by toSMTP, nothing else.
type session struct {
	st *connState
	rt *Runtime

	mu sync.Mutex
	tx *txn
}

// txn is one mail transaction, from MAIL FROM to the end of DATA, RSET or
// the end of the connection.
type txn struct {
	ref     string
	start   time.Time
	from    address.Addr
	opts    smtp.MailOptions
	rec     verdict.Record
	rcpts   []address.Addr // accepted by us and by the backend
	backend *relay.Txn
	// mailErr is the backend's refusal of MAIL FROM: every later RCPT of
	// this transaction gets the same answer instead of asking again.
	mailErr *policy.Reply
	// lastRefusal is the most recent refusal of a recipient, the reason a
	// transaction ends as "reject" when no recipient was accepted.
	lastRefusal *policy.Reply
	lastStage   policy.Stage
	// bareCRAtMail is the connection's bare-CR count when MAIL was given.
	bareCRAtMail int64

	vals *policy.Values // the facts known so far
	eval *policy.Eval   // the rule engine's state for this transaction
	// pending is a reject decided at connect, HELO or MAIL, delivered at
	// every RCPT (policy.delay_reject).
	pending *policy.Outcome
	// shadowed is the first decision policy.mode: shadow kept from
	// taking effect.
	shadowed *policy.Outcome
	// applied is the policy outcome that ends the transaction, if any.
	applied *policy.Outcome
	// results are the check results so far, in the order they came.
	results []checks.Result
	// rcptChecks were started at MAIL and are joined at the first RCPT.
	rcptChecks *checks.Pending
	// policyGreylist: a rule or the greylist threshold said greylist.
	policyGreylist bool
	// charged: the message rate limit was taken for this transaction.
	charged bool
}

// noteRcpt records one RCPT and what it was answered.
func (tx *txn) noteRcpt(to string, r *policy.Reply) {
	rec := verdict.Rcpt{Addr: to, Reason: policy.ReasonAccepted}
	if r != nil {
		tx.lastRefusal = r
		rec.Reason = r.Reason
		rec.Reply = verdict.ReplyOf(r, tx.ref)
	} else {
		// go-smtp's fixed text for an accepted RCPT: the record holds
		// exactly what the client was sent.
		rec.Reply = verdict.Reply{Code: 250, Enhanced: "2.0.0", Text: "I'll make sure <" + to + "> gets this"}
	}
	tx.rec.Rcpts = append(tx.rec.Rcpts, rec)
}

// NewSession is called by go-smtp at the first HELO/EHLO (and again after
// STARTTLS).
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	gc := connOf(c.Conn())
	if gc == nil {
		return nil, toSMTP(policy.ErrInternal, "")
	}
	st := gc.st
	st.mu.Lock()
	st.helo = c.Hostname()
	if cs, ok := c.TLSConnectionState(); ok {
		st.tls = &verdict.TLS{Version: tls.VersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite)}
		gc.encrypted.Store(true)
	}
	st.mu.Unlock()
	return &session{st: st, rt: st.rt}, nil
}

func (s *session) log() *slog.Logger { return s.st.log }

// fail converts a reply for go-smtp, keeping a nil reply a nil error (a
// typed nil pointer in an error interface would not be nil).
func fail(r *policy.Reply, ref string) error {
	if r == nil {
		return nil
	}
	return toSMTP(r, ref)
}

// Mail starts a transaction. The backend is not contacted yet: that waits
// for the first recipient that passes local policy.
func (s *session) Mail(from string, opts *smtp.MailOptions) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.recovered(&err)
	if hook := testPanicHook.Load(); hook != nil {
		(*hook)("mail")
	}
	if s.tx != nil {
		// go-smtp accepts a nested MAIL and keeps the first one's
		// recipients (libraries.md §1.2); refuse it instead.
		return fail(policy.ErrNestedMail, s.tx.ref)
	}
	tx := s.newTxn(from, *opts)
	if r := s.mailDecision(tx, from); r != nil {
		s.finish(tx, r, tx.lastStage, "")
		return fail(r, tx.ref)
	}
	s.tx = tx
	s.st.mu.Lock()
	s.st.inTxn = true
	s.st.mu.Unlock()
	return nil
}

// Rcpt checks one recipient: its syntax, that its domain is ours (the
// no-open-relay rule), then asks the backend, opening the backend
// transaction with the first recipient that passed.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.recovered(&err)
	if hook := testPanicHook.Load(); hook != nil {
		(*hook)("rcpt")
	}
	tx := s.tx
	if tx == nil {
		return fail(policy.ErrInternal, "")
	}
	tx.lastStage = policy.StageRcpt
	r := s.rcpt(tx, to)
	tx.noteRcpt(to, r)
	return fail(r, tx.ref)
}

func (s *session) rcpt(tx *txn, to string) *policy.Reply {
	addr, r := s.rcptDecision(tx, to)
	if r != nil {
		return r
	}
	if tx.mailErr != nil {
		return tx.mailErr
	}
	ctx := s.ctx()
	if tx.backend == nil {
		bt, err := s.rt.Relay.Begin(ctx, relay.MailParams{
			From: tx.from.String(), Size: tx.opts.Size, UTF8: tx.opts.UTF8,
			RequireTLS: tx.opts.RequireTLS, EightBit: tx.opts.Body == smtp.Body8BitMIME, Log: s.log(),
			Client:    relay.ClientIdentityOf(s.st.client()),
			FirstRcpt: addr.String(),
		})
		if err != nil {
			r := asReply(err, s.log())
			if r.Permanent() {
				tx.mailErr = r
			}
			return r
		}
		tx.backend = bt
	}
	if err := tx.backend.Rcpt(ctx, addr.String()); err != nil {
		return asReply(err, s.log())
	}
	tx.rcpts = append(tx.rcpts, addr)
	return nil
}

// Data reads the message, then relays it and passes the backend's final
// reply back. It answers 250 only when the backend answered 2xx to the
// whole message (design.md §1.1).
func (s *session) Data(r io.Reader) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.recovered(&err)
	tx := s.tx
	if tx == nil {
		// A BDAT transfer reset by RSET before Data got the lock.
		return fail(policy.ErrDataAborted, "")
	}
	tx.lastStage = policy.StageData
	if hook := testPanicHook.Load(); hook != nil {
		(*hook)("data")
	}
	rep, detail := s.data(tx, r)
	s.finish(tx, rep, policy.StageData, detail)
	if rep.Code/100 == 2 {
		return toSMTP(rep, tx.ref)
	}
	return fail(rep, tx.ref)
}

// Panics counts panics in session methods, each recovered and answered
// 451 4.3.0 (go-smtp's own recovery would answer 421 4.0.0 and close);
// tests fail when it is not what they expect.
var Panics atomic.Int64

// testPanicHook, when set (by tests), is called at the start of Mail, Rcpt
// and Data with "mail", "rcpt" or "data". It is atomic because a test sets
// it while sessions of earlier tests may still be winding down.
var testPanicHook atomic.Pointer[func(stage string)]

// recovered turns a panic in Mail, Rcpt or Data into 451 4.3.0 with a
// reference id (the transaction's, when there is one), logged with the
// stack and counted in Panics; the connection stays open. It must be
// deferred after the method's deferred Unlock, so that it runs with s.mu
// still held. A panic in Data also ends the transaction, so its record
// says internal error rather than that the client gave up.
func (s *session) recovered(err *error) {
	v := recover()
	if v == nil {
		return
	}
	Panics.Add(1)
	ref := refid.New(time.Now())
	if s.tx != nil {
		ref = s.tx.ref
	}
	log := s.log()
	if log == nil {
		log = slog.Default()
	}
	log.Error("panic in session", "panic", fmt.Sprint(v), "ref", ref, "stack", string(debug.Stack()))
	if tx := s.tx; tx != nil && tx.lastStage == policy.StageData {
		s.finish(tx, policy.ErrInternal, policy.StageData, "internal error")
	}
	*err = toSMTP(policy.ErrInternal, ref)
}

// Reset ends the transaction (RSET, a new EHLO, the end of every DATA).
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandon()
}

// Logout ends the session (QUIT, connection close, STARTTLS).
func (s *session) Logout() error {
	s.Reset()
	return nil
}

// abandon records a transaction the client ended before the end of DATA and
// abandons it on the backend with RSET.
func (s *session) abandon() {
	tx := s.tx
	if tx == nil {
		return
	}
	if r := tx.refusal(); r != nil {
		s.finish(tx, r, tx.lastStage, "")
		return
	}
	s.finish(tx, nil, tx.lastStage, "")
}

// refusal is the reply that ended a transaction whose every recipient was
// refused: the policy's, when a rule or threshold refused it (a reject
// delayed from MAIL is the reason even if the last RCPT was also foreign),
// else the last refusal. nil when a recipient was accepted.
func (tx *txn) refusal() *policy.Reply {
	if len(tx.rcpts) > 0 || tx.lastRefusal == nil {
		return nil
	}
	if tx.applied != nil {
		return tx.applied.Reply
	}
	return tx.lastRefusal
}
