package server

import (
	"context"
	"net/netip"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/ratelimit"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// startConnChecks starts the checks that need only the client's address as
// soon as the connection is admitted (the guard's onAdmit hook), so their
// DNS latency overlaps the pre-greeting wait and the HELO (design.md §2).
func (s *Server) startConnChecks(c *conn) {
	st := c.st
	rt := st.rt
	if rt.Checks == nil {
		return
	}
	st.pending = checks.Start(s.ctx, rt.Checks.Connect, checks.Input{IP: st.ip}, rt.Cfg.Checks.Timeout)
}

// connResults waits for the connection's checks (bounded by their
// deadline) and returns their results; the same for every transaction of
// the connection.
func (st *connState) connResults() []checks.Result {
	if st.pending == nil {
		return nil
	}
	return st.pending.Wait()
}

// checkInput is what the transaction's checks may know at MAIL.
func (s *session) checkInput(tx *txn) checks.Input {
	return checks.Input{IP: s.st.ip, Helo: s.st.client().Helo, MailFrom: tx.from.String(), MailDomain: tx.from.Domain}
}

// runChecks runs the checks of the HELO and MAIL stages for a transaction,
// starts those joined at the first RCPT (SPF), and applies every result
// known at MAIL (the connection's too).
func (s *session) runChecks(tx *txn) {
	rt := s.rt
	s.apply(tx, s.st.connResults())
	if rt.Checks == nil {
		return
	}
	in := s.checkInput(tx)
	list := append(append([]checks.Check(nil), rt.Checks.Helo...), rt.Checks.Mail...)
	s.apply(tx, checks.Start(s.ctx(), list, in, rt.Cfg.Checks.Timeout).Wait())
	if len(rt.Checks.Rcpt) > 0 {
		tx.rcptChecks = checks.Start(s.ctx(), rt.Checks.Rcpt, in, rt.Cfg.Checks.Timeout)
	}
}

// joinRcptChecks applies the checks started at MAIL, once, at the first
// RCPT that needs them.
func (s *session) joinRcptChecks(tx *txn) {
	if tx.rcptChecks != nil {
		s.apply(tx, tx.rcptChecks.Wait())
		tx.rcptChecks = nil
	}
}

// runDataChecks runs the DATA-stage checks in order (DKIM, then DMARC from
// SPF and DKIM) over the message as received.
func (s *session) runDataChecks(tx *txn, msg checks.Message) {
	if s.rt.Checks == nil || len(s.rt.Checks.Data) == 0 {
		return
	}
	s.joinRcptChecks(tx)
	in := s.checkInput(tx)
	in.Message, in.Prior = msg, tx.results
	s.apply(tx, checks.RunInOrder(s.ctx(), s.rt.Checks.Data, in, s.rt.Cfg.Checks.Timeout))
}

// apply turns check results into facts for the rules and entries for the
// verdict record, and keeps them for the checks that build on them and
// for the Authentication-Results header.
func (s *session) apply(tx *txn, results []checks.Result) {
	tx.results = append(tx.results, results...)
	for _, r := range results {
		for name, v := range r.Facts {
			if err := tx.vals.Set(name, v); err != nil {
				s.log().Error("check set a bad fact", "check", r.Name, "fact", name, "err", err)
			}
		}
		tx.rec.Checks = append(tx.rec.Checks, verdict.Check{
			Name: r.Name, Result: r.Result, Detail: r.Detail, Score: r.Score, MS: r.Elapsed.Milliseconds(),
		})
	}
	s.noteClient(tx)
}

// noteClient copies reverse DNS into the connection's client block.
func (s *session) noteClient(tx *txn) {
	// The record's client block shows reverse DNS too.
	st := s.st
	st.mu.Lock()
	if v, ok := tx.vals.Get("client.ptr"); ok {
		st.ptr, _ = v.(string)
	}
	if v, ok := tx.vals.Get("client.fcrdns"); ok {
		pass := v == "pass"
		st.fcrdns = &pass
	}
	st.mu.Unlock()
}

// protocolOutcome turns what the listener saw (a client that talked
// before the greeting, or pipelined without PIPELINING) into a reject
// delivered at the first RCPT, when the configuration says "enforce".
func (s *session) protocolOutcome() *policy.Outcome {
	c := s.st.conn
	if c == nil {
		return nil
	}
	p := s.rt.Cfg.Checks
	var out *policy.Outcome
	switch {
	case c.Pregreet() == "early" && p.Pregreet.Action != "ignore":
		out = &policy.Outcome{Action: policy.ActionReject, Reply: policy.ErrPregreet, Rule: "pregreet", Stage: policy.StageConnect}
	case c.EarlyPipelining() && p.Protocol.EarlyPipelining != "ignore":
		out = &policy.Outcome{Action: policy.ActionReject, Reply: policy.ErrEarlyPipelining, Rule: "early_pipelining", Stage: policy.StageHelo}
	}
	if out != nil && s.rt.Cfg.Policy.Mode == "shadow" {
		out.Shadow = true // recorded as what would have happened, not applied
	}
	return out
}

// rateLimited reports a rate-limit refusal for kind, or nil. A store
// failure fails open: mail is not refused because the limiter broke.
func (s *session) rateLimited(kind ratelimit.Kind, reply *policy.Reply) *policy.Reply {
	l := s.rt.Limiter
	if l == nil || !l.Enabled(kind) || s.st.conn == nil {
		return nil
	}
	ok, _, err := l.Allow(context.Background(), kind, s.st.ip, 1)
	if err != nil {
		s.log().Warn("rate limiter failed; allowing", "kind", string(kind), "err", err)
	}
	if ok {
		return nil
	}
	return reply
}

// ctx is the context of the session's DNS and backend work: the server's,
// cancelled when the shutdown grace period is over; a background one when
// there is no server (gateway explain).
func (s *session) ctx() context.Context {
	if s.st.srv == nil {
		return context.Background()
	}
	return s.st.srv.ctx
}

// connRate is the connection rate limit (checks.ratelimit.connections),
// applied before a connection takes a slot. The limiter fails open.
func (s *Server) connRate(ip netip.Addr) *policy.Reply {
	l := s.rt.Load().Limiter
	if l == nil || !l.Enabled(ratelimit.Connections) {
		return nil
	}
	ok, _, err := l.Allow(context.Background(), ratelimit.Connections, ip, 1)
	if err != nil {
		s.log.Warn("rate limiter failed; allowing", "kind", "connections", "err", err)
	}
	if ok {
		return nil
	}
	return policy.ErrRateConnections
}
