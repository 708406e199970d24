package policy

// Evaluation walks the SMTP stages in order. At each stage the rules of
// that stage run in file order against the facts known so far; the first
// matching terminal rule (reject, tempfail, drop, greylist) decides, and
// accept ends checking. Scores add up as rules match, and after the rules
// the thresholds turn the score into a decision, but only once the score
// can no longer fall below them: when no rule of a later stage has a
// negative score. Rules at the recipient stage run once per recipient and
// decide for that recipient only. docs/policy.md describes all of this for
// operators; the doc comments below are the contract for the caller.

import (
	"fmt"
	"slices"

	"github.com/mxgate/mxgate/internal/yamldiag"
)

// Thresholds turn the score into an action; nil means no such threshold.
// A threshold is reached when the score is greater than or equal to it.
type Thresholds struct {
	Tag, Greylist, Reject *float64
}

// Options are the policy settings outside the rules.
type Options struct {
	Thresholds Thresholds
	// Shadow is policy.mode: shadow. Every decision is computed and
	// returned marked Shadow, and none is applied: the caller relays
	// everything and records what would have happened.
	Shadow bool
}

// Engine is a compiled rule set. It is immutable and safe for concurrent
// use; each transaction gets its own Eval. A nil *Engine has no rules.
type Engine struct {
	rules []*Rule
	opts  Options
	// byStage lists rule indexes per stage index, in rule order.
	byStage [len(stages)][]int
	// negAfter[i] says a rule of a stage after stage i has a negative
	// score, so a threshold crossed at i may still be uncrossed.
	negAfter [len(stages)]bool
}

// NewEngine checks what ParseRules cannot see, that rule names are unique
// across all files (naming the file and line of both), and prepares the
// rules for evaluation, which happens in the order given.
func NewEngine(rules []*Rule, o Options) (*Engine, Errors) {
	e := &Engine{opts: o}
	var errs Errors
	first := map[string]*Rule{}
	for _, r := range rules {
		switch {
		case r == nil:
			errs = append(errs, Error{Msg: "nil rule"})
			continue
		case r.Name == "" || r.If == nil || stageIndex(r.Stage) < 0:
			errs = append(errs, Error{File: r.File, Line: r.Line, Path: r.path, Msg: "incomplete rule (a rule needs a name, a condition and a stage)"})
			continue
		}
		if f, dup := first[r.Name]; dup {
			where := fmt.Sprintf("%s:%d", f.File, f.Line)
			if f.File == r.File {
				where = fmt.Sprintf("line %d", f.Line)
			}
			errs = append(errs, Error{File: r.File, Line: r.Line, Path: yamldiag.JoinPath(r.path, "name"),
				Msg: fmt.Sprintf("duplicate rule name %q (first used at %s)", r.Name, where)})
			continue
		}
		first[r.Name] = r
		e.rules = append(e.rules, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	e.opts.Thresholds = Thresholds{copyFloat(o.Thresholds.Tag), copyFloat(o.Thresholds.Greylist), copyFloat(o.Thresholds.Reject)}
	for i, r := range e.rules {
		si := stageIndex(r.Stage)
		e.byStage[si] = append(e.byStage[si], i)
		if !r.Shadow && r.Score < 0 {
			for j := range si {
				e.negAfter[j] = true
			}
		}
	}
	return e, nil
}

// copyFloat keeps the engine immutable if the caller reuses its pointers.
func copyFloat(p *float64) *float64 {
	if p == nil {
		return nil
	}
	f := *p
	return &f
}

// Rules returns the rules in evaluation order. The rules are shared; do
// not modify them.
func (e *Engine) Rules() []*Rule {
	if e == nil {
		return nil
	}
	return slices.Clone(e.rules)
}

// NewEval starts the evaluation of one transaction.
func (e *Engine) NewEval() *Eval {
	if e == nil {
		e = &Engine{}
	}
	return &Eval{e: e, last: -1, seen: make([]bool, len(e.rules))}
}

// Eval is the evaluation state of one transaction. It is not safe for
// concurrent use.
//
// In global shadow mode (Options.Shadow) the flags below say what would
// have happened, exactly as in enforcing mode; the caller must not act on
// them (it relays everything). Rules are still evaluated after the point
// where enforcement would have stopped, so that the record shows every rule
// that matched: they are recorded in Matches and counted in Score, but they
// set no flags and return no outcome.
type Eval struct {
	// Score is the sum of the scores of the non-shadow rules that matched,
	// each counted once.
	Score float64
	// Matches is every rule that matched, in evaluation order, each once.
	Matches []Match
	// SkipGreylist: an accept or skip_greylist rule matched at a stage
	// before rcpt (or at data), so the transaction is not greylisted, by a
	// check or by a greylist rule or threshold.
	SkipGreylist bool
	// Accepted: an accept rule matched; stop checking and relay. An accept
	// rule at the rcpt stage accepts its recipient only (RcptAccepted);
	// the transaction is Accepted at data when every recipient that was
	// not refused was accepted by a rule, so one allowed recipient cannot
	// carry a message past the checks for the others.
	Accepted bool
	// Tag: a tag rule matched or the score reached the tag threshold.
	Tag bool
	// RcptAccepted and RcptSkipGreylist are Accepted and SkipGreylist for
	// the recipient of the latest Stage(StageRcpt, …) call: set by the
	// transaction's flags or by a rule of that call.
	RcptAccepted     bool
	RcptSkipGreylist bool

	e    *Engine
	last int    // index of the latest stage evaluated; -1 before any
	done bool   // decided for the whole transaction: an outcome or accept
	seen []bool // per rule: matched once already (Match recorded, score counted)

	rcptCalls, rcptAccepts, rcptRefused int
}

// Match records one rule that matched.
type Match struct {
	Rule   string
	Action Action // "" for a rule that only scores
	Score  float64
	// Shadow is the rule's own mode: shadow (global shadow mode is shown
	// on the Outcome instead).
	Shadow bool
	Stage  Stage
}

// Outcome is a terminal decision.
type Outcome struct {
	// Action is reject, tempfail, drop or greylist.
	Action Action
	// Reply is the rule's own reply or the action's default; its Reason is
	// ReasonRule or ReasonScore.
	Reply *Reply
	// Rule is the deciding rule's name, or "threshold:reject" or
	// "threshold:greylist".
	Rule  string
	Stage Stage
	// Shadow: decided in global shadow mode and not to be applied; the
	// caller records it and carries on.
	Shadow bool
}

// call is the state of one Stage call.
type call struct {
	stage Stage
	// observe: a decision was made (in this call or before it); rules are
	// only recorded from here on, in global shadow mode.
	observe bool
	out     *Outcome
}

// Stage evaluates the rules of stage, in order, against v and returns the
// decision, or nil to go on.
//
// Calls must come in stage order. A call for a stage before one already
// evaluated, or a second call for a stage other than rcpt, returns nil;
// rules of an earlier stage that did not match because a fact was missing
// then are not run again.
//
// The first matching terminal rule decides, and later rules of the stage
// are not evaluated (the scores of the rules before it, and its own,
// count). accept makes every later stage return nil without evaluating
// anything and sets Accepted and SkipGreylist. skip_greylist and tag set
// their flags. A greylist decision (rule or threshold) is skipped while
// greylisting is skipped. Shadow rules are recorded in Matches and change
// nothing. After the rules, when none decided, the reject and greylist
// thresholds decide if the score reached them and no rule of a later stage
// has a negative score (the last stage with scoring rules is always such a
// point); the tag threshold sets Tag at the same point. Once an outcome was
// returned, later calls return nil.
//
// At the rcpt stage the caller calls Stage once per recipient with rcpt and
// rcpt.domain set to it. An outcome, and an accept, concern that recipient
// only, and the next call evaluates the rcpt rules again; each rule's
// score counts and its Match is recorded only the first time it matches.
// Thresholds are applied after every call, to the transaction's score so
// far, so a threshold reached at one recipient is normally still reached
// at the next and at data.
func (ev *Eval) Stage(stage Stage, v *Values) *Outcome {
	i := stageIndex(stage)
	if ev.e == nil || i < 0 || i < ev.last || (i == ev.last && stage != StageRcpt) {
		return nil
	}
	ev.last = i
	switch stage {
	case StageRcpt:
		ev.rcptCalls++
		ev.RcptAccepted, ev.RcptSkipGreylist = ev.Accepted, ev.SkipGreylist
	case StageData:
		if !ev.done && ev.rcptAccepts > 0 && ev.rcptAccepts == ev.rcptCalls-ev.rcptRefused {
			ev.Accepted, ev.SkipGreylist, ev.done = true, true, true
		}
	}
	shadow := ev.e.opts.Shadow
	if ev.done && !shadow {
		return nil
	}
	c := &call{stage: stage, observe: ev.done}
	for _, ri := range ev.e.byStage[i] {
		if c.observe && !shadow {
			break
		}
		ev.rule(ev.e.rules[ri], ri, v, c)
	}
	if !c.observe {
		c.out = ev.thresholds(stage, i)
	}
	if c.out == nil {
		return nil
	}
	if stage == StageRcpt {
		ev.rcptRefused++
	} else {
		ev.done = true
	}
	c.out.Shadow = shadow
	return c.out
}

// rule evaluates one rule and applies what it does.
func (ev *Eval) rule(r *Rule, ri int, v *Values, c *call) {
	if !r.If.Match(v, ev.Score) {
		return
	}
	if !ev.seen[ri] {
		ev.seen[ri] = true
		ev.Matches = append(ev.Matches, Match{Rule: r.Name, Action: r.Action, Score: r.Score, Shadow: r.Shadow, Stage: c.stage})
		if !r.Shadow {
			ev.Score += r.Score
		}
	}
	if r.Shadow || c.observe {
		return
	}
	rcpt := c.stage == StageRcpt
	switch r.Action {
	case ActionTag:
		ev.Tag = true
	case ActionSkipGreylist:
		ev.RcptSkipGreylist = true
		if !rcpt {
			ev.SkipGreylist = true
		}
	case ActionAccept:
		c.observe = true
		ev.RcptAccepted, ev.RcptSkipGreylist = true, true
		if rcpt {
			ev.rcptAccepts++
		} else {
			ev.Accepted, ev.SkipGreylist, ev.done = true, true, true
		}
	case ActionGreylist, ActionReject, ActionTempfail, ActionDrop:
		if r.Action == ActionGreylist && ev.skipGreylist(c.stage) {
			return
		}
		c.observe = true
		c.out = &Outcome{Action: r.Action, Reply: r.Reply, Rule: r.Name, Stage: c.stage}
		if c.out.Reply == nil {
			c.out.Reply = defaultReply(r.Action)
		}
	}
}

func (ev *Eval) skipGreylist(stage Stage) bool {
	return ev.SkipGreylist || (stage == StageRcpt && ev.RcptSkipGreylist)
}

// thresholds applies the thresholds after the rules of stage i.
func (ev *Eval) thresholds(stage Stage, i int) *Outcome {
	if ev.e.negAfter[i] {
		return nil // a later rule may still bring the score down
	}
	t := ev.e.opts.Thresholds
	if t.Tag != nil && ev.Score >= *t.Tag {
		ev.Tag = true
	}
	if t.Reject != nil && ev.Score >= *t.Reject {
		return &Outcome{Action: ActionReject, Reply: ErrScoreReject, Rule: "threshold:reject", Stage: stage}
	}
	if t.Greylist != nil && ev.Score >= *t.Greylist && !ev.skipGreylist(stage) {
		return &Outcome{Action: ActionGreylist, Reply: ErrScoreGreylist, Rule: "threshold:greylist", Stage: stage}
	}
	return nil
}

// defaultReply is the reply of a terminal action without a reply of its
// own.
func defaultReply(a Action) *Reply {
	switch a {
	case ActionReject:
		return ErrPolicyReject
	case ActionTempfail:
		return ErrPolicyTempfail
	case ActionDrop:
		return ErrPolicyDrop
	}
	return ErrPolicyGreylist
}
