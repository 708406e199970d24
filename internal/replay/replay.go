// Package replay re-decides recorded transactions under a (changed) policy
// and reports what would change: `gateway replay`. It reads the facts each
// verdict record carries, so it needs no DNS and no network, and runs the
// same rule engine the gateway runs, stage by stage, as the session does.
package replay

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// Decision is the policy's verdict on a transaction, as replay compares
// them: "pass" (the policy let it through), "tag", or a terminal action.
type Decision string

// Pass means no rule or threshold stopped or tagged the transaction.
const Pass Decision = "pass"

// Change is one transaction whose decision would change.
type Change struct {
	Ref  string   `json:"ref"`
	Old  Decision `json:"old"`
	New  Decision `json:"new"`
	Rule string   `json:"rule"` // the rule responsible: the new deciding rule, else the old one
}

// Group counts the changes of one rule and one old→new pair.
type Group struct {
	Rule    string   `json:"rule"`
	Old     Decision `json:"old"`
	New     Decision `json:"new"`
	Count   int      `json:"count"`
	Samples []string `json:"samples"` // a few refs
}

// Report is the result of a replay.
type Report struct {
	Records  int     `json:"records"`  // lines read
	Replayed int     `json:"replayed"` // transactions re-decided
	Skipped  int     `json:"skipped"`  // records without facts (connections, transactions ended before MAIL)
	Changed  int     `json:"changed"`
	Groups   []Group `json:"groups"`
	changes  []Change
}

// Run re-decides every record read from r under eng.
func Run(eng *policy.Engine, r io.Reader, name string) (*Report, error) {
	rep := &Report{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		rep.Records++
		var rec verdict.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: not a verdict record: %v", name, line, err)
		}
		if rec.Schema != verdict.Schema {
			return nil, fmt.Errorf("%s:%d: verdict record schema %d, this version reads %d", name, line, rec.Schema, verdict.Schema)
		}
		if len(rec.Facts) == 0 {
			rep.Skipped++
			continue
		}
		c, err := redecide(eng, &rec)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: ref %s: %v", name, line, rec.Ref, err)
		}
		rep.Replayed++
		if c != nil {
			rep.changes = append(rep.changes, *c)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	rep.group()
	return rep, nil
}

// old is the decision recorded: what the policy did, or in shadow mode what
// it would have done.
func old(rec *verdict.Record) (Decision, string) {
	if rec.Shadow != nil {
		return Decision(rec.Shadow.Action), rec.Shadow.Rule
	}
	for _, r := range rec.Rules {
		if r.Action == policy.ActionGreylist && !r.Shadow && rec.Greylist != nil {
			// A rule said greylist; whether the store then deferred or
			// passed the attempt is the store's state, which replay
			// cannot know, so the decision compared is "greylist".
			// (With checks.greylist.when: always greylisting is not a
			// policy decision, and replay leaves it out.)
			return Decision(policy.ActionGreylist), r.Name
		}
	}
	switch {
	case rec.Reason == policy.ReasonRule || rec.Reason == policy.ReasonScore:
		return Decision(rec.Action), deciding(rec)
	case rec.Action == policy.ActionTag:
		return Decision(policy.ActionTag), "threshold:tag"
	}
	return Pass, ""
}

// deciding names the rule that made a recorded policy decision.
func deciding(rec *verdict.Record) string {
	if rec.Reason == policy.ReasonScore {
		return "threshold:" + string(rec.Action)
	}
	for _, r := range rec.Rules {
		if !r.Shadow && r.Action == rec.Action {
			return r.Name
		}
	}
	return "(unknown rule)"
}

// redecide runs the engine over the recorded facts, stage by stage, as the
// session did: the early stages, then each recipient that passed the
// checks no rule can change (syntax, our domains, limits), then DATA when
// the transaction got that far.
func redecide(eng *policy.Engine, rec *verdict.Record) (*Change, error) {
	vals, err := policy.ValuesFromMap(rec.Facts)
	if err != nil {
		return nil, err
	}
	ev := eng.NewEval()
	var out *policy.Outcome
	first := func(o *policy.Outcome) {
		if out == nil && o != nil && !o.Shadow {
			out = o
		}
	}
	for _, st := range []policy.Stage{policy.StageConnect, policy.StageHelo, policy.StageMail} {
		first(ev.Stage(st, vals))
	}
	if out == nil {
		eligible, refused := 0, 0
		var last *policy.Outcome
		for _, r := range rec.Rcpts {
			if !policyCouldSee(r.Reason) {
				continue
			}
			a, err := address.ParseRecipient(r.Addr, true)
			if err != nil {
				continue
			}
			eligible++
			vals.Set("rcpt", a.String())
			vals.Set("rcpt.domain", a.Domain)
			if o := ev.Stage(policy.StageRcpt, vals); o != nil && !o.Shadow {
				refused++
				last = o
			}
		}
		if eligible > 0 && refused == eligible {
			out = last // every recipient refused: the transaction is
		}
		if out == nil && eligible > refused {
			if _, reached := rec.Facts["size"]; reached {
				first(ev.Stage(policy.StageData, vals))
			}
		}
	}
	now, rule := Pass, ""
	switch {
	case out != nil:
		now, rule = Decision(out.Action), out.Rule
	case ev.Tag:
		now, rule = Decision(policy.ActionTag), "threshold:tag"
	}
	was, wasRule := old(rec)
	if now == was {
		return nil, nil
	}
	if rule == "" {
		rule = wasRule
	}
	return &Change{Ref: rec.Ref, Old: was, New: now, Rule: rule}, nil
}

// policyCouldSee reports whether a recipient got as far as the rules: the
// relay check, syntax and limits come first, and the backend's refusals
// come after.
func policyCouldSee(r policy.Reason) bool {
	switch r {
	case policy.ReasonRelayDenied, policy.ReasonBadRecipient, policy.ReasonTooManyRcpts, policy.ReasonSMTPUTF8, policy.ReasonRequireTLS:
		return false
	}
	return true
}

func (rep *Report) group() {
	idx := map[[3]string]*Group{}
	for _, c := range rep.changes {
		k := [3]string{c.Rule, string(c.Old), string(c.New)}
		g := idx[k]
		if g == nil {
			g = &Group{Rule: c.Rule, Old: c.Old, New: c.New}
			idx[k] = g
		}
		g.Count++
		if len(g.Samples) < 3 {
			g.Samples = append(g.Samples, c.Ref)
		}
	}
	for _, g := range idx {
		rep.Groups = append(rep.Groups, *g)
	}
	sort.Slice(rep.Groups, func(i, j int) bool {
		a, b := rep.Groups[i], rep.Groups[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Rule+string(a.Old)+string(a.New) < b.Rule+string(b.Old)+string(b.New)
	})
	rep.Changed = len(rep.changes)
}

// Print writes the report for people.
func (rep *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%d records: %d transactions re-decided, %d without facts skipped (connections, transactions that ended before MAIL).\n",
		rep.Records, rep.Replayed, rep.Skipped)
	if rep.Changed == 0 {
		fmt.Fprintln(w, "No decision would change.")
		return
	}
	fmt.Fprintf(w, "%d decisions would change:\n\n", rep.Changed)
	fmt.Fprintf(w, "  %6s  %-18s  %s\n", "count", "old -> new", "rule (examples)")
	for _, g := range rep.Groups {
		fmt.Fprintf(w, "  %6d  %-18s  %s (%s)\n", g.Count, string(g.Old)+" -> "+string(g.New), g.Rule, strings.Join(g.Samples, ", "))
	}
}
