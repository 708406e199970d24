package server

import (
	"io"
	"time"

	"github.com/mxgate/mxgate/internal/spool"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// data buffers the message (canonical CRLF, size capped, spilling to a
// temporary file past the memory threshold), then relays it. It returns the
// reply for the client and a detail for the record.
func (s *session) data(tx *txn, r io.Reader) (*policy.Reply, string) {
	if tx.backend == nil {
		return policy.ErrInternal, "DATA without a backend transaction"
	}
	s.st.conn.inData.Store(true)
	msg, err := spool.Read(r, s.rt.Spool)
	s.st.conn.inData.Store(false)
	if err != nil {
		rep := asReply(err, s.log())
		if rep == policy.ErrLineTooLong {
			// go-smtp closes the connection after a line over the limit,
			// answering again on its own; ours must be the only answer.
			s.st.conn.closeAfterReply.Store(true)
		}
		if rep.Reason == policy.ReasonInternal || rep.Reason == policy.ReasonDataAborted || rep.Reason == policy.ReasonDataTimeout {
			return rep, err.Error()
		}
		return rep, ""
	}
	defer msg.Close()
	if r := s.dataDecision(tx, msg); r != nil {
		return r, tx.rec.Detail
	}

	head, body, bodySize, err := s.headers(tx, msg)
	if err != nil {
		return asReply(err, s.log()), err.Error()
	}
	start := time.Now()
	res, err := tx.backend.Data(s.ctx(), head, body, bodySize)
	rel := &verdict.Relay{Backend: tx.backend.Backend(), MS: time.Since(start).Milliseconds()}
	tx.rec.Relay = rel
	if err != nil {
		rep := asReply(err, s.log())
		if rep.Reason == policy.ReasonBackendData {
			rel.Code, rel.Text = rep.Code, rep.Text
		}
		return rep, ""
	}
	rel.Code, rel.Text, rel.QueueID = res.Code, res.Text, res.QueueID
	return policy.Passthrough(res.Code, res.Enhanced, res.Text, policy.ReasonAccepted), ""
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// finish writes the transaction's verdict record and ends it. rep is what
// the client was (or is about to be) sent; nil means the client ended the
// transaction itself.
func (s *session) finish(tx *txn, rep *policy.Reply, stage policy.Stage, detail string) {
	if tx.backend != nil {
		tx.backend.Abort() // RSET on the backend unless the message went through
	}
	s.complete(tx, rep, stage, detail)
	s.st.srv.record(&tx.rec)
	if s.tx == tx {
		s.tx = nil
	}
	s.st.mu.Lock()
	s.st.txns++
	s.st.inTxn = false
	s.st.mu.Unlock()
}

// complete fills the transaction's verdict record from how it ended.
func (s *session) complete(tx *txn, rep *policy.Reply, stage policy.Stage, detail string) {
	tx.recordPolicy(s.rt.headerFacts)
	rec := &tx.rec
	rec.Client = s.st.client()
	rec.Stage = stage
	if detail != "" {
		rec.Detail = detail
	}
	rec.DurationMS = time.Since(tx.start).Milliseconds()
	switch {
	case rep == nil:
		rec.Action, rec.Reason = policy.ActionAbort, policy.ReasonClientAbort
	default:
		rec.Reason = rep.Reason
		rec.Action = actionOf(rep)
		if rec.Action == policy.ActionAccept && tx.eval != nil && tx.eval.Tag {
			rec.Action = policy.ActionTag
		}
		if tx.applied != nil && rep == tx.applied.Reply {
			rec.Action, rec.Stage = tx.applied.Action, tx.applied.Stage
		}
		if rep.Reason == policy.ReasonGreylisted {
			rec.Action = policy.ActionGreylist
		}
		rp := verdict.ReplyOf(rep, tx.ref)
		rec.Reply = &rp
	}
}

// actionOf names what a final reply did to the transaction.
func actionOf(r *policy.Reply) policy.Action {
	switch r.Code / 100 {
	case 2:
		return policy.ActionAccept
	case 4:
		return policy.ActionTempfail
	default:
		return policy.ActionReject
	}
}
