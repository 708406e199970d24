package server

import (
	"fmt"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/ratelimit"
	"github.com/mxgate/mxgate/internal/refid"
	"github.com/mxgate/mxgate/internal/spool"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// The decision steps of a transaction, without any I/O: the session runs
// them before it talks to the backend, and `gateway explain` runs the very
// same steps for a transaction that never was.

// newTxn starts the transaction of a MAIL FROM.
func (s *session) newTxn(from string, opts smtp.MailOptions) *txn {
	now := time.Now()
	tx := &txn{ref: refid.New(now), start: now, opts: opts, lastStage: policy.StageMail}
	if s.st.conn != nil {
		tx.bareCRAtMail = s.st.conn.bareCR.Load()
	}
	tx.rec = verdict.Record{Ref: tx.ref, ConnID: s.st.id, Listener: s.st.listener, MailFrom: &from}
	if opts.Size > 0 {
		tx.rec.Size = opts.Size
	}
	tx.rec.RequireTLS = opts.RequireTLS
	if s.rt.Checks != nil {
		// Room for every result at once (and greylisting's), not a
		// reallocation per stage.
		n := s.rt.Checks.Len() + 1
		tx.results = make([]checks.Result, 0, n)
		tx.rec.Checks = make([]verdict.Check, 0, n)
	}
	return tx
}

// mailDecision checks the sender and runs the rules of the stages known at
// MAIL. It returns the reply that ends the transaction now, or nil; a
// reject delayed to RCPT (policy.delay_reject) is kept in tx.pending.
func (s *session) mailDecision(tx *txn, from string) *policy.Reply {
	if tx.opts.RequireTLS && s.st.tls == nil {
		// go-smtp advertises REQUIRETLS only after STARTTLS but takes the
		// parameter in any session (RFC 8689 §4.1: only over TLS).
		tx.lastRefusal = policy.ErrRequireTLSPlain
		return policy.ErrRequireTLSPlain
	}
	addr, err := address.ParseSender(from, tx.opts.UTF8)
	if err != nil {
		r := asReply(err, s.log())
		tx.lastRefusal = r
		return r
	}
	tx.from = addr
	tx.vals = s.st.connValues()
	tx.vals.Set("mail_from", addr.String())
	tx.vals.Set("mail_from.domain", addr.Domain)
	s.runChecks(tx)
	tx.eval = s.rt.Cfg.Policy.Engine.NewEval()
	out := s.protocolOutcome()
	if out != nil && out.Shadow {
		tx.shadowed, out = out, nil
	}
	if out == nil {
		out = tx.evaluate(earlyStages...)
	}
	if out == nil {
		return nil
	}
	if out.Action == policy.ActionGreylist {
		tx.policyGreylist = true // greylisted per recipient, at RCPT
		return nil
	}
	if out.Action != policy.ActionDrop && s.rt.Cfg.Policy.DelayReject {
		tx.pending, tx.applied = out, out // delivered at every RCPT, the envelope recorded
		return nil
	}
	s.decided(tx, out)
	tx.lastStage = out.Stage
	return out.Reply
}

// rcptDecision checks one recipient: the limit, its syntax, that its domain
// is ours (the no-open-relay rule, before any rule can accept), a reject
// delayed from MAIL, and the rules of the RCPT stage.
func (s *session) rcptDecision(tx *txn, to string) (address.Addr, *policy.Reply) {
	if len(tx.rcpts) >= s.rt.Cfg.Limits.MaxRecipients {
		return address.Addr{}, policy.ErrTooManyRcpts
	}
	addr, err := address.ParseRecipient(to, tx.opts.UTF8)
	if err != nil {
		return addr, asReply(err, s.log())
	}
	if !s.rt.Domains.Contains(addr.Domain) {
		return addr, policy.ErrRelayDenied
	}
	if tx.pending != nil {
		return addr, tx.pending.Reply
	}
	s.joinRcptChecks(tx)
	tx.vals.Set("rcpt", addr.String())
	tx.vals.Set("rcpt.domain", addr.Domain)
	if out := tx.evaluate(policy.StageRcpt); out != nil {
		if out.Action != policy.ActionGreylist {
			s.decided(tx, out)
			return addr, out.Reply
		}
		tx.policyGreylist = true
	}
	if r := s.greylistRcpt(tx, addr); r != nil {
		return addr, r
	}
	// Rate limits are taken only by attempts that got past greylisting,
	// so a greylisted sender's retries cost it nothing (and the message
	// limit once per transaction).
	if !tx.charged {
		if r := s.rateLimited(ratelimit.Messages, policy.ErrRateMessages); r != nil {
			return addr, r
		}
		tx.charged = true
	}
	if r := s.rateLimited(ratelimit.Recipients, policy.ErrRateRecipients); r != nil {
		return addr, r
	}
	return addr, nil
}

// dataDecision judges the buffered message: bare CRs the DATA reader hid,
// then the rules of the DATA stage (and the thresholds).
func (s *session) dataDecision(tx *txn, msg *spool.Message) *policy.Reply {
	if s.st.conn != nil && s.rt.Spool.BareNewline == spool.RejectBareNewline && s.st.conn.bareCR.Load() > tx.bareCRAtMail {
		tx.rec.Detail = "bare CR in the raw input (hidden by the DATA reader's dot handling)"
		return policy.ErrBareNewline
	}
	tx.rec.Size = msg.Size()
	var received int
	tx.rec.MessageID, tx.rec.HeaderFrom, received = setDataValues(tx.vals, msg.Size(), msg.Header(), s.rt.headerFacts)
	if received > s.rt.Cfg.Limits.MaxReceived {
		tx.rec.Detail = fmt.Sprintf("%d Received header fields", received)
		return policy.ErrMailLoop
	}
	s.runDataChecks(tx, msg)
	if out := tx.evaluate(policy.StageData); out != nil {
		if out.Action != policy.ActionGreylist {
			s.decided(tx, out)
			return out.Reply
		}
		// A score only complete at DATA says greylist: every recipient's
		// triplet must pass (RFC 6647 §2.2 allows deferring after DATA).
		tx.policyGreylist = true
		for _, rc := range tx.rcpts {
			if r := s.greylistRcpt(tx, rc); r != nil {
				return r
			}
		}
	}
	return nil
}

// decided applies what an outcome means beyond its reply: a drop closes the
// connection once the reply is written.
func (s *session) decided(tx *txn, out *policy.Outcome) {
	if out.Stage != policy.StageRcpt {
		tx.applied = out // a rcpt-stage outcome refuses one recipient, not the transaction
	}
	if out.Action == policy.ActionDrop && s.st.conn != nil {
		s.st.conn.closeAfterReply.Store(true)
	}
}
