package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// step is one Stage call in a scenario.
type step struct {
	stage Stage
	facts map[string]any // set before the call; ip facts as strings
	want  string         // the outcome's Rule, "" for nil, "shadow:" prefix when Shadow
}

type fs = map[string]any

func f64(f float64) *float64 { return &f }

// TestEval runs transactions through rule sets, one Stage call per step.
// matches lists each Match as "rule@stage", with " (shadow)" for a shadow
// rule.
func TestEval(t *testing.T) {
	tests := []struct {
		name     string
		rules    string
		opts     Options
		steps    []step
		score    float64
		matches  []string
		accepted bool
		skip     bool
		tag      bool
	}{
		{
			name: "first terminal rule decides, scores before it count",
			rules: lines(
				"- {name: s1, if: {mail_from: ''}, score: 1}",
				"- {name: r1, if: {mail_from: ''}, action: reject, score: 0.5}",
				"- {name: s2, if: {mail_from: ''}, score: 2}",
				"- {name: r2, if: {mail_from: ''}, action: tempfail}",
				"- {name: later, if: {rcpt: a@x.example}, action: tempfail}",
			),
			steps: []step{
				{StageConnect, nil, ""}, {StageHelo, nil, ""},
				{StageMail, fs{"mail_from": ""}, "r1"},
				{StageRcpt, fs{"rcpt": "a@x.example"}, ""},
				{StageData, nil, ""},
			},
			score:   1.5,
			matches: []string{"s1@mail", "r1@mail"},
		},
		{
			name: "accept ends checking, in its stage and after",
			rules: lines(
				"- {name: ours, if: {client.ip: 192.0.2.0/24}, action: accept, score: -1}",
				"- {name: same-stage, if: {client.ip: 192.0.2.0/24}, action: reject}",
				"- {name: helo, if: {helo: x.example}, action: reject}",
			),
			opts:     Options{Thresholds: Thresholds{Reject: f64(-5)}},
			steps:    []step{{StageConnect, fs{"client.ip": "192.0.2.9"}, ""}, {StageHelo, fs{"helo": "x.example"}, ""}, {StageData, nil, ""}},
			score:    -1,
			matches:  []string{"ours@connect"},
			accepted: true, skip: true,
		},
		{
			name: "skip_greylist skips greylist rules and threshold, not the rest",
			rules: lines(
				"- {name: known, if: {mail_from: '*@news.example'}, action: skip_greylist, score: 1}",
				"- {name: grey, if: {rcpt.domain: x.example}, action: greylist, score: 2}",
				"- {name: size, if: {size: '> 10'}, action: reject}",
			),
			opts: Options{Thresholds: Thresholds{Greylist: f64(1)}},
			steps: []step{
				{StageMail, fs{"mail_from": "a@news.example"}, ""},
				{StageRcpt, fs{"rcpt": "b@x.example", "rcpt.domain": "x.example"}, ""},
				{StageData, fs{"size": 11}, "size"},
			},
			score:   3,
			matches: []string{"known@mail", "grey@rcpt", "size@data"},
			skip:    true,
		},
		{
			name:    "tag action",
			rules:   "- {name: t, if: {subject: /sale/}, action: tag, score: 1}\n",
			steps:   []step{{StageData, fs{"subject": "big sale"}, ""}},
			score:   1,
			matches: []string{"t@data"},
			tag:     true,
		},
		{
			name: "shadow rule is recorded and changes nothing",
			rules: lines(
				"- {name: w1, if: {helo: x.example}, action: reject, mode: shadow}",
				"- {name: w2, if: {helo: x.example}, action: accept, score: 50, mode: shadow}",
				"- {name: w3, if: {helo: x.example}, action: tag, mode: shadow}",
				"- {name: w4, if: {helo: x.example}, action: skip_greylist, mode: shadow}",
				"- {name: real, if: {helo: x.example}, action: tempfail}",
			),
			opts:    Options{Thresholds: Thresholds{Reject: f64(10)}},
			steps:   []step{{StageHelo, fs{"helo": "x.example"}, "real"}},
			matches: []string{"w1@helo (shadow)", "w2@helo (shadow)", "w3@helo (shadow)", "w4@helo (shadow)", "real@helo"},
		},
		{
			name: "global shadow: outcome marked, later rules recorded, no second outcome",
			rules: lines(
				"- {name: r1, if: {mail_from: ''}, action: reject}",
				"- {name: r2, if: {mail_from: ''}, action: tempfail, score: 1}",
				"- {name: t, if: {mail_from: ''}, action: tag}",
				"- {name: r3, if: {rcpt: a@x.example}, action: reject, score: 2}",
			),
			opts: Options{Shadow: true, Thresholds: Thresholds{Reject: f64(1)}},
			steps: []step{
				{StageMail, fs{"mail_from": ""}, "shadow:r1"},
				{StageRcpt, fs{"rcpt": "a@x.example"}, ""},
				{StageData, nil, ""},
			},
			score:   3,
			matches: []string{"r1@mail", "r2@mail", "t@mail", "r3@rcpt"},
		},
		{
			name: "global shadow: accept is what would have happened",
			rules: lines(
				"- {name: ours, if: {client.ip: 192.0.2.0/24}, action: accept}",
				"- {name: r, if: {helo: x.example}, action: reject}",
			),
			opts:     Options{Shadow: true},
			steps:    []step{{StageConnect, fs{"client.ip": "192.0.2.1"}, ""}, {StageHelo, fs{"helo": "x.example"}, ""}},
			matches:  []string{"ours@connect", "r@helo"},
			accepted: true, skip: true,
		},
		{
			name: "global shadow: threshold outcome",
			rules: lines(
				"- {name: s, if: {helo: x.example}, score: 5}",
			),
			opts:    Options{Shadow: true, Thresholds: Thresholds{Reject: f64(5)}},
			steps:   []step{{StageHelo, fs{"helo": "x.example"}, "shadow:threshold:reject"}, {StageData, nil, ""}},
			score:   5,
			matches: []string{"s@helo"},
		},
		{
			name: "thresholds decide at the last scoring stage",
			rules: lines(
				"- {name: c, if: {client.ip: 192.0.2.1}, score: 2}",
				"- {name: d, if: {size: '> 0'}, score: 3}",
			),
			opts: Options{Thresholds: Thresholds{Reject: f64(4), Tag: f64(1)}},
			steps: []step{
				{StageConnect, fs{"client.ip": "192.0.2.1"}, ""}, {StageHelo, nil, ""}, {StageMail, nil, ""},
				{StageRcpt, nil, ""}, {StageData, fs{"size": 1}, "threshold:reject"},
			},
			score: 5, matches: []string{"c@connect", "d@data"}, tag: true,
		},
		{
			name: "thresholds decide early once crossed for good",
			rules: lines(
				"- {name: c, if: {client.ip: 192.0.2.1}, score: 5}",
				"- {name: d, if: {size: '> 0'}, score: 1}",
			),
			opts:  Options{Thresholds: Thresholds{Reject: f64(4)}},
			steps: []step{{StageConnect, fs{"client.ip": "192.0.2.1"}, "threshold:reject"}, {StageData, fs{"size": 1}, ""}},
			score: 5, matches: []string{"c@connect"},
		},
		{
			name: "no early threshold while a later rule can lower the score",
			rules: lines(
				"- {name: c, if: {client.ip: 192.0.2.1}, score: 5}",
				"- {name: signed, if: {header.dkim-signature: /./}, score: -3}",
			),
			opts: Options{Thresholds: Thresholds{Reject: f64(4), Tag: f64(4)}},
			steps: []step{
				{StageConnect, fs{"client.ip": "192.0.2.1"}, ""}, {StageMail, nil, ""}, {StageRcpt, nil, ""},
				{StageData, fs{"header.dkim-signature": "v=1"}, ""},
			},
			score: 2, matches: []string{"c@connect", "signed@data"},
		},
		{
			name: "crossed and not lowered: decided at data",
			rules: lines(
				"- {name: c, if: {client.ip: 192.0.2.1}, score: 5}",
				"- {name: signed, if: {header.dkim-signature: /./}, score: -3}",
			),
			opts:  Options{Thresholds: Thresholds{Reject: f64(4)}},
			steps: []step{{StageConnect, fs{"client.ip": "192.0.2.1"}, ""}, {StageData, nil, "threshold:reject"}},
			score: 5, matches: []string{"c@connect"},
		},
		{
			name: "a shadow rule's negative score does not delay thresholds",
			rules: lines(
				"- {name: c, if: {client.ip: 192.0.2.1}, score: 5}",
				"- {name: signed, if: {header.dkim-signature: /./}, score: -3, mode: shadow}",
			),
			opts:  Options{Thresholds: Thresholds{Greylist: f64(4)}},
			steps: []step{{StageConnect, fs{"client.ip": "192.0.2.1"}, "threshold:greylist"}},
			score: 5, matches: []string{"c@connect"},
		},
		{
			name:  "greylist threshold below reject",
			rules: "- {name: c, if: {helo: x.example}, score: 3}\n",
			opts:  Options{Thresholds: Thresholds{Greylist: f64(2), Reject: f64(5)}},
			steps: []step{{StageHelo, fs{"helo": "x.example"}, "threshold:greylist"}},
			score: 3, matches: []string{"c@helo"},
		},
		{
			name:  "no threshold without a score reaching it",
			rules: "- {name: c, if: {helo: x.example}, score: 3}\n",
			opts:  Options{Thresholds: Thresholds{Greylist: f64(3.5), Reject: f64(5), Tag: f64(3.01)}},
			steps: []step{{StageHelo, fs{"helo": "x.example"}, ""}, {StageData, nil, ""}},
			score: 3, matches: []string{"c@helo"},
		},
		{
			name: "rcpt rules decide per recipient and score once",
			rules: lines(
				"- {name: ours, if: {rcpt.domain: x.example}, score: 1}",
				"- {name: trap, if: {rcpt: trap@x.example}, action: reject}",
			),
			steps: []step{
				{StageRcpt, fs{"rcpt": "a@x.example", "rcpt.domain": "x.example"}, ""},
				{StageRcpt, fs{"rcpt": "trap@x.example", "rcpt.domain": "x.example"}, "trap"},
				{StageRcpt, fs{"rcpt": "b@x.example", "rcpt.domain": "x.example"}, ""},
				{StageRcpt, fs{"rcpt": "trap@x.example", "rcpt.domain": "x.example"}, "trap"},
				{StageData, nil, ""},
			},
			score: 1, matches: []string{"ours@rcpt", "trap@rcpt"},
		},
		{
			name: "rcpt threshold applies to this and later recipients, and at data",
			rules: lines(
				"- {name: trap, if: {rcpt: trap@x.example}, score: 10}",
			),
			opts: Options{Thresholds: Thresholds{Reject: f64(5)}},
			steps: []step{
				{StageRcpt, fs{"rcpt": "a@x.example"}, ""},
				{StageRcpt, fs{"rcpt": "trap@x.example"}, "threshold:reject"},
				{StageRcpt, fs{"rcpt": "b@x.example"}, "threshold:reject"},
				{StageData, nil, "threshold:reject"},
			},
			score: 10, matches: []string{"trap@rcpt"},
		},
		{
			name: "rcpt accept for every recipient accepts the message",
			rules: lines(
				"- {name: postmaster, if: {rcpt: postmaster@x.example}, action: accept}",
				"- {name: spam, if: {subject: /spam/}, action: reject}",
			),
			steps: []step{
				{StageRcpt, fs{"rcpt": "postmaster@x.example"}, ""},
				{StageRcpt, fs{"rcpt": "Postmaster@X.example"}, ""},
				{StageData, fs{"subject": "spam"}, ""},
			},
			matches:  []string{"postmaster@rcpt"},
			accepted: true, skip: true,
		},
		{
			name: "rcpt accept for one recipient does not carry the others",
			rules: lines(
				"- {name: postmaster, if: {rcpt: postmaster@x.example}, action: accept}",
				"- {name: spam, if: {subject: /spam/}, action: reject}",
			),
			steps: []step{
				{StageRcpt, fs{"rcpt": "postmaster@x.example"}, ""},
				{StageRcpt, fs{"rcpt": "other@x.example"}, ""},
				{StageData, fs{"subject": "spam"}, "spam"},
			},
			matches: []string{"postmaster@rcpt", "spam@data"},
		},
		{
			name: "refused recipients do not count against an accepted message",
			rules: lines(
				"- {name: postmaster, if: {rcpt: postmaster@x.example}, action: accept}",
				"- {name: nobody, if: {rcpt: nobody@x.example}, action: reject}",
				"- {name: spam, if: {subject: /spam/}, action: reject}",
			),
			steps: []step{
				{StageRcpt, fs{"rcpt": "nobody@x.example"}, "nobody"},
				{StageRcpt, fs{"rcpt": "postmaster@x.example"}, ""},
				{StageData, fs{"subject": "spam"}, ""},
			},
			matches:  []string{"nobody@rcpt", "postmaster@rcpt"},
			accepted: true, skip: true,
		},
		{
			name: "calls out of order or repeated do nothing",
			rules: lines(
				"- {name: h, if: {helo: x.example}, action: reject}",
				"- {name: m, if: {mail_from: ''}, score: 1}",
			),
			steps: []step{
				{StageMail, fs{"mail_from": ""}, ""},
				{StageMail, nil, ""},
				{StageHelo, fs{"helo": "x.example"}, ""},
				{"quit", nil, ""},
			},
			score: 1, matches: []string{"m@mail"},
		},
		{
			name: "a rule that missed a fact at its stage is not run again",
			rules: lines(
				"- {name: h, if: {helo: x.example, tls: false}, action: reject}",
			),
			steps: []step{{StageHelo, fs{"helo": "x.example"}, ""}, {StageMail, fs{"tls": false}, ""}},
		},
		{
			name: "a rule on the score sees the rules before it",
			rules: lines(
				"- {name: early, if: {score: '>= 1'}, action: reject}",
				"- {name: add, if: {size: '> 0'}, score: 2}",
				"- {name: late, if: {score: '>= 1'}, action: tempfail}",
			),
			steps:   []step{{StageData, fs{"size": 1}, "late"}},
			score:   2,
			matches: []string{"add@data", "late@data"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, errs := NewEngine(parse(t, tt.rules), tt.opts)
			if errs != nil {
				t.Fatal(errs)
			}
			ev := e.NewEval()
			v := NewValues()
			for i, s := range tt.steps {
				setAll(t, v, s.facts)
				if got := outcomeString(ev.Stage(s.stage, v)); got != s.want {
					t.Errorf("step %d (%s): outcome %q, want %q", i, s.stage, got, s.want)
				}
			}
			var ms []string
			for _, m := range ev.Matches {
				s := m.Rule + "@" + string(m.Stage)
				if m.Shadow {
					s += " (shadow)"
				}
				ms = append(ms, s)
			}
			if !reflect.DeepEqual(ms, tt.matches) {
				t.Errorf("matches %q, want %q", ms, tt.matches)
			}
			if ev.Score != tt.score || ev.Accepted != tt.accepted || ev.SkipGreylist != tt.skip || ev.Tag != tt.tag {
				t.Errorf("score %v accepted %v skip %v tag %v; want %v %v %v %v",
					ev.Score, ev.Accepted, ev.SkipGreylist, ev.Tag, tt.score, tt.accepted, tt.skip, tt.tag)
			}
		})
	}
}

func setAll(t *testing.T, v *Values, facts map[string]any) {
	t.Helper()
	for k, val := range facts {
		if d, ok := LookupFact(k); ok && d.Kind == KindIP {
			val = netip.MustParseAddr(val.(string))
		}
		if err := v.Set(k, val); err != nil {
			t.Fatal(err)
		}
	}
}

func outcomeString(o *Outcome) string {
	if o == nil {
		return ""
	}
	if o.Shadow {
		return "shadow:" + o.Rule
	}
	return o.Rule
}

// TestOutcomeReplies: a terminal rule sends its own reply or its action's
// default; thresholds send theirs.
func TestOutcomeReplies(t *testing.T) {
	rules := parse(t, lines(
		"- {name: own, if: {helo: own}, action: reject, reply: 550 5.7.26 Not you}",
		"- {name: reject, if: {helo: reject}, action: reject}",
		"- {name: tempfail, if: {helo: tempfail}, action: tempfail}",
		"- {name: drop, if: {helo: drop}, action: drop}",
		"- {name: greylist, if: {helo: greylist}, action: greylist}",
		"- {name: score, if: {helo: score}, score: 10}",
	))
	tests := []struct {
		helo   string
		opts   Options
		action Action
		reply  *Reply
	}{
		{"reject", Options{}, ActionReject, ErrPolicyReject},
		{"tempfail", Options{}, ActionTempfail, ErrPolicyTempfail},
		{"drop", Options{}, ActionDrop, ErrPolicyDrop},
		{"greylist", Options{}, ActionGreylist, ErrPolicyGreylist},
		{"score", Options{Thresholds: Thresholds{Reject: f64(10)}}, ActionReject, ErrScoreReject},
		{"score", Options{Thresholds: Thresholds{Greylist: f64(10)}}, ActionGreylist, ErrScoreGreylist},
	}
	for _, tt := range tests {
		e, _ := NewEngine(rules, tt.opts)
		o := e.NewEval().Stage(StageHelo, vals(t, fs{"helo": tt.helo}))
		if o == nil || o.Action != tt.action || o.Reply != tt.reply || o.Stage != StageHelo || o.Shadow {
			t.Errorf("helo %s: outcome %+v, want %s with %v", tt.helo, o, tt.action, tt.reply)
		}
	}
	e, _ := NewEngine(rules, Options{})
	o := e.NewEval().Stage(StageHelo, vals(t, fs{"helo": "own"}))
	want := &Reply{550, [3]int{5, 7, 26}, "Not you", ReasonRule}
	if o == nil || !reflect.DeepEqual(o.Reply, want) || o.Rule != "own" {
		t.Errorf("own reply: %+v", o)
	}
}

// TestRcptFlags: the per-recipient flags follow each call.
func TestRcptFlags(t *testing.T) {
	e, _ := NewEngine(parse(t, lines(
		"- {name: pm, if: {rcpt: postmaster@x.example}, action: accept}",
		"- {name: list, if: {rcpt: list@x.example}, action: skip_greylist}",
	)), Options{})
	ev := e.NewEval()
	v := NewValues()
	for _, tt := range []struct {
		rcpt           string
		accepted, skip bool
	}{
		{"postmaster@x.example", true, true},
		{"a@x.example", false, false},
		{"list@x.example", false, true},
		{"b@x.example", false, false},
	} {
		setAll(t, v, fs{"rcpt": tt.rcpt})
		ev.Stage(StageRcpt, v)
		if ev.RcptAccepted != tt.accepted || ev.RcptSkipGreylist != tt.skip {
			t.Errorf("%s: RcptAccepted %v RcptSkipGreylist %v, want %v %v", tt.rcpt, ev.RcptAccepted, ev.RcptSkipGreylist, tt.accepted, tt.skip)
		}
	}
	if ev.Accepted || ev.SkipGreylist {
		t.Error("per-recipient flags leaked into the transaction's")
	}
}

func TestNewEngineDuplicates(t *testing.T) {
	a := parse(t, "- {name: same, if: {tls: true}, score: 1}\n- {name: other, if: {tls: true}, score: 1}\n")
	b, errs := ParseRules("b.yaml", "", node(t, "- {name: x, if: {tls: true}, score: 1}\n- {name: same, if: {tls: true}, score: 1}\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	_, errs = NewEngine(append(append([]*Rule{}, a...), append(b, a[1])...), Options{})
	want := `b.yaml:2: [1].name: duplicate rule name "same" (first used at test.yaml:1)` + "\n" +
		`test.yaml:2: policy.rules[1].name: duplicate rule name "other" (first used at line 2)`
	if errs.Error() != want {
		t.Errorf("errors:\n%v\nwant:\n%s", errs, want)
	}
	if _, errs := NewEngine([]*Rule{nil, {Name: "x"}}, Options{}); len(errs) != 2 {
		t.Errorf("nil and incomplete rules: %v", errs)
	}
}

// TestNilEngine: a configuration without rules evaluates to nothing.
func TestNilEngine(t *testing.T) {
	var e *Engine
	ev := e.NewEval()
	for _, s := range stages {
		if o := ev.Stage(s, NewValues()); o != nil {
			t.Errorf("%s: %+v", s, o)
		}
	}
	if e.Rules() != nil || (&Eval{}).Stage(StageData, nil) != nil {
		t.Error("nil engine has rules")
	}
}

// TestEngineImmutable: the engine keeps its own copy of the thresholds
// and of the rule list.
func TestEngineImmutable(t *testing.T) {
	reject := 1.0
	rules := parse(t, "- {name: s, if: {tls: true}, score: 2}\n")
	e, _ := NewEngine(rules, Options{Thresholds: Thresholds{Reject: &reject}})
	reject = 100
	e.Rules()[0] = nil
	if o := e.NewEval().Stage(StageHelo, vals(t, fs{"tls": true})); o == nil {
		t.Error("changing the caller's threshold changed the engine")
	}
}

// TestEvalConcurrent runs many transactions on one engine at once, for
// the race detector.
func TestEvalConcurrent(t *testing.T) {
	rules := parse(t, lines(
		"- {name: a, if: {helo: /^x/}, score: 1}",
		"- {name: b, if: {rcpt: '*@x.example'}, action: reject}",
	))
	e, _ := NewEngine(rules, Options{Thresholds: Thresholds{Reject: f64(5)}})
	done := make(chan string)
	for i := range 8 {
		go func() {
			v := NewValues()
			v.Set("helo", fmt.Sprintf("x%d", i))
			v.Set("rcpt", "a@x.example")
			ev := e.NewEval()
			ev.Stage(StageHelo, v)
			done <- outcomeString(ev.Stage(StageRcpt, v))
		}()
	}
	for range 8 {
		if got := <-done; got != "b" {
			t.Errorf("outcome %q", got)
		}
	}
}

// TestRulesOrder: Rules gives the rules in the order given, across files.
func TestRulesOrder(t *testing.T) {
	rules := parse(t, "- {name: b, if: {tls: true}, score: 1}\n- {name: a, if: {client.ip: 192.0.2.1}, score: 1}\n")
	e, _ := NewEngine(rules, Options{})
	var names []string
	for _, r := range e.Rules() {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "b,a" {
		t.Errorf("Rules() = %v", names)
	}
}
