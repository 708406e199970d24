package server

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
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
	if s.rt.Spool.BareNewline == spool.RejectBareNewline && s.st.conn.bareCR.Load() > tx.bareCRAtMail {
		return policy.ErrBareNewline, "bare CR in the raw input (hidden by the DATA reader's dot handling)"
	}
	tx.rec.Size = msg.Size()
	tx.rec.MessageID, tx.rec.HeaderFrom = headerFacts(msg.Header())

	start := time.Now()
	res, err := tx.backend.Data(s.st.srv.ctx, s.received(tx, time.Now()), msg.Open())
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

// headerFacts extracts Message-ID and the From address for the record.
func headerFacts(h []byte) (msgID, from string) {
	m, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(h), strings.NewReader("\r\n")))
	if err != nil {
		return "", ""
	}
	msgID = clip(strings.TrimSpace(m.Header.Get("Message-Id")), 256)
	raw := m.Header.Get("From")
	if a, err := mail.ParseAddress(raw); err == nil {
		from = a.Address
	} else {
		from = strings.TrimSpace(raw)
	}
	return msgID, clip(from, 256)
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
	rec := &tx.rec
	rec.Client = s.st.client()
	rec.Stage = stage
	rec.Detail = detail
	rec.DurationMS = time.Since(tx.start).Milliseconds()
	switch {
	case rep == nil:
		rec.Action, rec.Reason = policy.ActionAbort, policy.ReasonClientAbort
	default:
		rec.Reason = rep.Reason
		rec.Action = actionOf(rep)
		rp := verdict.ReplyOf(rep, tx.ref)
		rec.Reply = &rp
	}
	s.st.srv.record(rec)
	if s.tx == tx {
		s.tx = nil
	}
	s.st.mu.Lock()
	s.st.txns++
	s.st.inTxn = false
	s.st.mu.Unlock()
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
