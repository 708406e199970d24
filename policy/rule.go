package policy

// A rule is a condition over facts and what to do when it holds: an
// action, a score, or both. Conditions are trees of three combinators (all,
// any, not) over fact conditions, each of which compares one fact with a
// list of matchers. The tree is built once, when the rules are loaded, with
// every pattern compiled and every literal normalised, so evaluating a rule
// during a transaction is cheap and cannot fail.

import (
	"strings"

	"github.com/mxgate/mxgate/internal/yamldiag"
)

// Rule is one parsed, validated rule.
type Rule struct {
	// Name is unique across all rule files and is a metric label.
	Name string
	// If is the condition.
	If Cond
	// Action is what a match does; "" when the rule only scores.
	Action Action
	// Score is added to the transaction's score when the rule matches; it
	// may be negative.
	Score float64
	// Reply replaces the action's default reply; nil keeps the default.
	// Its Reason is ReasonRule.
	Reply *Reply
	// Shadow rules are evaluated and recorded but change nothing.
	Shadow bool
	// Stage is when the rule runs: the latest stage among its facts.
	Stage Stage
	// Facts are the fact names the condition uses, sorted and deduplicated.
	Facts []string
	// File and Line locate the rule (the line of its "- name:" item).
	File string
	Line int

	// path is the rule's key path ("policy.rules[3]"), for messages that
	// come after parsing (a name used in two files).
	path string
}

// Cond is a condition over the facts of a transaction.
//
// A fact that is not set never matches, whatever the matcher, so `not` of
// a condition on it holds: {not: {header.x-spam: "yes"}} is true for a
// message without that header. The same goes for a fact whose check did
// not run or failed; write rules so that a missing fact errs on the side of
// delivering mail.
type Cond interface {
	// Match reports whether the condition holds for v. score is the
	// transaction's score at this point, the value of the score fact.
	Match(v *Values, score float64) bool
	// String renders the condition on one line for `gateway explain`, e.g.
	// any(helo: /^localhost/, not(helo.valid: true)).
	String() string
}

// allCond holds when every part holds: the list under `all`, or a mapping
// with several keys.
type allCond []Cond

func (c allCond) Match(v *Values, score float64) bool {
	for _, p := range c {
		if !p.Match(v, score) {
			return false
		}
	}
	return true
}

func (c allCond) String() string { return "all(" + joinConds(c) + ")" }

// anyCond holds when some part holds.
type anyCond []Cond

func (c anyCond) Match(v *Values, score float64) bool {
	for _, p := range c {
		if p.Match(v, score) {
			return true
		}
	}
	return false
}

func (c anyCond) String() string { return "any(" + joinConds(c) + ")" }

// notCond holds when its condition does not.
type notCond struct{ c Cond }

func (c notCond) Match(v *Values, score float64) bool { return !c.c.Match(v, score) }

func (c notCond) String() string { return "not(" + c.c.String() + ")" }

func joinConds(cs []Cond) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

// Error is one problem with a rule, reported like every YAML problem
// (file:line: path: message).
type Error = yamldiag.Error

// Errors is every problem found, one per line when formatted.
type Errors = yamldiag.Errors
