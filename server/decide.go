package server

import (
	"strings"

	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// The policy's part of a transaction: the facts known so far, the rule
// engine's evaluation state, and what it decided. The engine decides;
// this file only applies its outcomes at the right moment (design.md §5).

// earlyStages are evaluated together at MAIL: their facts are all known by
// then, and a reject decided at them is delivered at the first RCPT (when
// policy.delay_reject is on) so the envelope is recorded.
var earlyStages = []policy.Stage{policy.StageConnect, policy.StageHelo, policy.StageMail}

// evaluate runs the engine for the given stages and returns the first
// outcome that takes effect. Outcomes in global shadow mode are recorded by
// the engine (in its matches) and never returned.
func (tx *txn) evaluate(stages ...policy.Stage) *policy.Outcome {
	for _, st := range stages {
		out := tx.eval.Stage(st, tx.vals)
		if out == nil {
			continue
		}
		out.Reply = out.Reply.Expand(tx.vals) // {fact} placeholders of the rule's reply
		if out.Shadow {
			if tx.shadowed == nil {
				tx.shadowed = out
			}
			continue
		}
		return out
	}
	return nil
}

// recordPolicy copies the evaluation into the verdict record: the score,
// every rule that matched, and the facts the decision was made from, so
// `gateway replay` can re-decide it without DNS.
func (tx *txn) recordPolicy(headerFacts map[string]bool) {
	if tx.eval == nil {
		return
	}
	rec := &tx.rec
	rec.Score = tx.eval.Score
	rec.Rules = rec.Rules[:0]
	for _, m := range tx.eval.Matches {
		rec.Rules = append(rec.Rules, verdict.Rule{Name: m.Rule, Action: m.Action, Score: m.Score, Shadow: m.Shadow, Stage: m.Stage})
	}
	rec.Facts = tx.vals.Map()
	for name := range rec.Facts {
		if strings.HasPrefix(name, "header.") && !headerFacts[name] {
			delete(rec.Facts, name)
		}
	}
	if tx.shadowed != nil {
		rec.Shadow = &verdict.Shadow{Action: tx.shadowed.Action, Rule: tx.shadowed.Rule, Stage: tx.shadowed.Stage,
			Reply: verdict.ReplyOf(tx.shadowed.Reply, tx.ref)}
	}
}
