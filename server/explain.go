package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/checks"

	"github.com/mxgate/mxgate/internal/spool"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// ExplainInput is one transaction to explain.
type ExplainInput struct {
	IP      netip.Addr
	Helo    string
	From    string
	Rcpts   []string
	Message io.Reader // nil: no message, so DATA-stage rules are not evaluated
	TLS     bool
}

// Step is one command of the transaction and the reply it would get.
type Step struct {
	Command string
	Reply   verdict.Reply
}

// RuleTrace says what one rule did in an explained transaction.
type RuleTrace struct {
	Rule    *policy.Rule
	Matched bool
	Shadow  bool
	// Why it was not evaluated: "" when it was.
	Skipped string
}

// Explanation is the whole story of one explained transaction.
type Explanation struct {
	Steps  []Step
	Rules  []RuleTrace
	Record verdict.Record
	// Relayed: the message passed and would go to the backend.
	Relayed bool
}

// Explain runs the decision steps of a transaction (the very functions the
// SMTP session runs) without SMTP and without the backend.
func Explain(rt *Runtime, in ExplainInput, log *slog.Logger) (*Explanation, error) {
	st := &connState{id: "explain", ip: in.IP.Unmap(), helo: in.Helo, rt: rt, log: log}
	if in.TLS {
		st.tls = &verdict.TLS{Version: "TLS 1.3", Cipher: "(explain)"}
	}
	s := &session{st: st, rt: rt}
	if rt.Checks != nil {
		st.pending = checks.Start(context.Background(), rt.Checks.Connect, checks.Input{IP: st.ip}, rt.Cfg.Checks.Timeout)
	}
	tx := s.newTxn(in.From, smtp.MailOptions{UTF8: !isASCII(in.From + strings.Join(in.Rcpts, ""))})
	ex := &Explanation{}
	step := func(cmd string, r *policy.Reply, ok verdict.Reply) {
		if r != nil {
			ok = verdict.ReplyOf(r, tx.ref)
		}
		ex.Steps = append(ex.Steps, Step{Command: cmd, Reply: ok})
	}
	end := func(r *policy.Reply, stage policy.Stage) (*Explanation, error) {
		s.complete(tx, r, stage, "")
		ex.Record = tx.rec
		ex.Rules = trace(rt.Cfg.Policy.Engine, tx, stage)
		return ex, nil
	}

	r := s.mailDecision(tx, in.From)
	step("MAIL FROM:<"+in.From+">", r, verdict.Reply{Code: 250, Enhanced: "2.0.0", Text: "Roger, accepting mail from <" + in.From + ">"})
	if r != nil {
		return end(r, tx.lastStage)
	}
	for _, to := range in.Rcpts {
		addr, r := s.rcptDecision(tx, to)
		tx.noteRcpt(to, r)
		step("RCPT TO:<"+to+">", r, tx.rec.Rcpts[len(tx.rec.Rcpts)-1].Reply)
		if r == nil {
			tx.rcpts = append(tx.rcpts, addr)
		}
	}
	if len(tx.rcpts) == 0 {
		return end(tx.refusal(), policy.StageRcpt)
	}
	if in.Message == nil {
		return end(nil, policy.StageRcpt)
	}
	msg, err := spool.Read(in.Message, rt.Spool)
	if err != nil {
		r := asReply(err, log)
		step("DATA", r, verdict.Reply{})
		return end(r, policy.StageData)
	}
	defer msg.Close()
	if r := s.dataDecision(tx, msg); r != nil {
		step("DATA", r, verdict.Reply{})
		return end(r, policy.StageData)
	}
	ex.Relayed = true
	ok := &policy.Reply{Code: 250, Enhanced: [3]int{2, 0, 0}, Text: "(the backend's reply)", Reason: policy.ReasonAccepted}
	step("DATA", ok, verdict.Reply{})
	return end(ok, policy.StageData)
}

// trace says for every rule whether it matched, and why it was not
// evaluated when it was not.
func trace(e *policy.Engine, tx *txn, reached policy.Stage) []RuleTrace {
	matched := map[string]policy.Match{}
	if tx.eval != nil {
		for _, m := range tx.eval.Matches {
			matched[m.Rule] = m
		}
	}
	var out []RuleTrace
	for _, r := range e.Rules() {
		t := RuleTrace{Rule: r}
		m, ok := matched[r.Name]
		switch {
		case ok:
			t.Matched, t.Shadow = true, m.Shadow
		case tx.eval != nil && tx.eval.Accepted:
			t.Skipped = "an accept rule decided before it"
		case tx.vals == nil || stageIndex(r.Stage) > stageIndex(reached):
			t.Skipped = "its stage (" + string(r.Stage) + ") was not reached"
		default:
			var missing []string
			for _, f := range r.Facts {
				if _, ok := tx.vals.Get(f); !ok && f != "score" {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 && !r.If.Match(tx.vals, tx.eval.Score) {
				t.Skipped = "no value for " + strings.Join(missing, ", ")
			}
		}
		out = append(out, t)
	}
	return out
}

func stageIndex(s policy.Stage) int {
	for i, st := range []policy.Stage{policy.StageConnect, policy.StageHelo, policy.StageMail, policy.StageRcpt, policy.StageData} {
		if st == s {
			return i
		}
	}
	return -1
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Print writes the explanation for people.
func (ex *Explanation) Print(w io.Writer, rt *Runtime) {
	rec := &ex.Record
	fmt.Fprintf(w, "Transaction: client %s, HELO %s\n\n", rec.Client.IP, orNone(rec.Client.Helo))
	fmt.Fprintf(w, "Checks:\n")
	if len(rec.Checks) == 0 {
		fmt.Fprintf(w, "  (none ran: the transaction ended before MAIL, or none is configured)\n")
	}
	for _, c := range rec.Checks {
		fmt.Fprintf(w, "  %-16s %-12s %s\n", c.Name, c.Result, c.Detail)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Rules, in evaluation order:\n")
	for _, t := range ex.Rules {
		res := "no match"
		switch {
		case t.Matched && t.Shadow:
			res = "MATCH (shadow: recorded only)"
		case t.Matched:
			res = "MATCH"
		case t.Skipped != "":
			res = "not evaluated: " + t.Skipped
		}
		eff := string(t.Rule.Action)
		if t.Rule.Score != 0 {
			eff = strings.TrimSpace(fmt.Sprintf("%s score %+g", eff, t.Rule.Score))
		}
		fmt.Fprintf(w, "  %-8s %-28s %-22s %s\n", t.Rule.Stage, t.Rule.Name, eff, res)
		fmt.Fprintf(w, "  %-8s %-28s if %s   (%s:%d)\n", "", "", t.Rule.If.String(), t.Rule.File, t.Rule.Line)
	}
	th := rt.Cfg.Policy.Thresholds
	fmt.Fprintf(w, "\nScore: %g   (thresholds: tag %s, reject %s)\n\n", rec.Score, thr(th.Tag.Set, th.Tag.Value), thr(th.Reject.Set, th.Reject.Value))
	fmt.Fprintf(w, "What the client would be told:\n")
	for _, s := range ex.Steps {
		fmt.Fprintf(w, "  %-40s %d %s %s\n", s.Command, s.Reply.Code, s.Reply.Enhanced, s.Reply.Text)
	}
	fmt.Fprintf(w, "\nResult: %s (reason %s, stage %s)", rec.Action, rec.Reason, rec.Stage)
	if rec.Shadow != nil {
		fmt.Fprintf(w, "; in shadow mode, would have been %s by %s", rec.Shadow.Action, rec.Shadow.Rule)
	}
	if ex.Relayed {
		fmt.Fprintf(w, "; relayed to %s", strings.Join(rt.Cfg.Backend.Servers, " or "))
	}
	fmt.Fprintln(w)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func thr(set bool, v float64) string {
	if !set {
		return "none"
	}
	return fmt.Sprint(v)
}
