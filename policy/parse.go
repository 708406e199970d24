package policy

// ParseRules walks the YAML node tree of a rule list directly instead of
// decoding it into Go values, so that every problem comes out with its
// line and key path, and parsing carries on after one to find the rest: an
// operator editing rules sees everything wrong in one reload. Anchors and
// aliases work (a shared list of partner networks); merge keys do not, as
// a rule assembled from pieces is hard to read back. Aliases can make a
// small file expand into a huge tree, so the walk has a node budget.

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/yamldiag"
	"go.yaml.in/yaml/v3"
)

const (
	// maxErrors stops the walk on hostile or badly broken input.
	maxErrors = 100
	// maxNodes bounds the condition and matcher nodes visited after alias
	// expansion; the largest real rule sets are a few thousand.
	maxNodes = 100000
	// maxNameLen keeps rule names fit for a metric label.
	maxNameLen = 64
	// maxReplyText leaves room in a 512-byte reply line (RFC 5321
	// §4.5.3.1.5) for the code and the reference id the server appends.
	maxReplyText = 400
	// maxScore keeps every sum of scores finite: the verdict record is
	// JSON, which has no infinity.
	maxScore = 1000000
)

var ruleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// ruleKeys are the keys of a rule, in the order the docs list them.
var ruleKeys = []string{"name", "if", "action", "score", "reply", "mode"}

// ruleActions are the actions a rule may take.
var ruleActions = []Action{ActionAccept, ActionReject, ActionTempfail, ActionDrop, ActionGreylist, ActionSkipGreylist, ActionTag}

// parser holds the state of one ParseRules call.
type parser struct {
	file   string
	errs   Errors
	capped bool
	budget int
	names  map[string]int  // rule name -> line, for duplicates
	facts  map[string]bool // facts named by the rule being parsed
}

// ParseRules parses and validates a list of rules. seq is the list's node
// (an empty value means no rules); path is its key path in messages, e.g.
// "policy.rules" or "" for a file that is only the list. Names must be
// unique within seq; NewEngine checks them across files. On any problem
// the rules are nil and Errors lists every problem found, sorted by line.
func ParseRules(file, path string, seq *yaml.Node) ([]*Rule, Errors) {
	p := &parser{file: file, budget: maxNodes, names: map[string]int{}}
	if seq == nil {
		return nil, nil
	}
	seq = yamldiag.Resolve(seq)
	if yamldiag.IsNull(seq) {
		return nil, nil
	}
	if seq.Kind != yaml.SequenceNode {
		p.errorf(seq.Line, path, "want a list of rules, got %s", yamldiag.Describe(seq))
		return nil, p.result()
	}
	var rules []*Rule
	for i, item := range seq.Content {
		if p.capped {
			break
		}
		if r := p.rule(fmt.Sprintf("%s[%d]", path, i), item); r != nil {
			rules = append(rules, r)
		}
	}
	if errs := p.result(); errs != nil {
		return nil, errs
	}
	return rules, nil
}

func (p *parser) errorf(line int, path, format string, args ...any) {
	if p.capped {
		return
	}
	p.errs = append(p.errs, Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
	if len(p.errs) >= maxErrors {
		p.capped = true
	}
}

// result returns the errors sorted by line, stably so problems on one
// line keep the order they were found in.
func (p *parser) result() Errors {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	if p.capped {
		p.errs = append(p.errs, Error{File: p.file, Msg: "too many problems; stopped looking (fix these and check again)"})
	}
	return p.errs
}

// spend takes one node from the budget; false once it is exhausted.
func (p *parser) spend(n *yaml.Node, path string) bool {
	if p.budget--; p.budget >= 0 {
		return true
	}
	p.errorf(n.Line, path, "conditions expand to more than %d nodes (YAML aliases?); stopped", maxNodes)
	p.capped = true
	return false
}

// rule parses one rule; nil when it has a problem.
func (p *parser) rule(path string, n *yaml.Node) *Rule {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a rule (a mapping with name, if, and action or score), got %s", yamldiag.Describe(n))
		return nil
	}
	before := len(p.errs)
	p.facts = map[string]bool{}
	r := &Rule{File: p.file, Line: n.Line, path: path}
	var ifNode, replyNode, scoreNode, actionNode *yaml.Node
	named := false
	// explained holds the keys whose absence an earlier message already
	// explains: "acton: reject" needs no "a rule needs an action" after it.
	explained := map[string]bool{}
	if hasMergeKey(n) {
		for _, k := range ruleKeys {
			explained[k] = true
		}
	}
	for _, kv := range p.pairs(path, n) {
		sub := yamldiag.JoinPath(path, kv.key.Value)
		switch kv.key.Value {
		case "name":
			named = true
			p.name(r, sub, kv.value)
		case "if":
			ifNode = kv.value
			r.If = p.cond(sub, kv.value)
		case "action":
			actionNode = kv.value
			p.action(r, sub, kv.value)
		case "score":
			scoreNode = kv.value
			p.score(r, sub, kv.value)
		case "reply":
			replyNode = kv.value
		case "mode":
			p.mode(r, sub, kv.value)
		default:
			explained[yamldiag.Closest(kv.key.Value, ruleKeys)] = true
			p.unknown(kv.key.Line, sub, "key", kv.key.Value, ruleKeys, "a rule has name, if, action, score, reply and mode")
		}
	}
	if !named && !explained["name"] {
		p.errorf(n.Line, yamldiag.JoinPath(path, "name"), "required: every rule needs a unique name, e.g. name: helo-localhost")
	}
	if ifNode == nil && !explained["if"] {
		p.errorf(n.Line, yamldiag.JoinPath(path, "if"), "required: the condition under which the rule applies")
	}
	if actionNode == nil && scoreNode == nil && !explained["action"] && !explained["score"] {
		p.errorf(n.Line, path, "a rule needs an action, a score, or both")
	}
	if replyNode != nil {
		p.reply(r, yamldiag.JoinPath(path, "reply"), replyNode, actionNode != nil && r.Action == "")
	}
	if len(p.errs) > before || p.capped {
		return nil
	}
	p.infer(r, yamldiag.JoinPath(path, "if"), ifNode)
	if len(p.errs) > before {
		return nil
	}
	return r
}

// infer sets the rule's facts and stage, and refuses a rule that names a
// recipient fact and a data fact: recipient facts hold one recipient at a
// time, so no single point of the transaction knows both.
func (p *parser) infer(r *Rule, path string, ifNode *yaml.Node) {
	r.Facts = make([]string, 0, len(p.facts))
	for f := range p.facts {
		r.Facts = append(r.Facts, f)
	}
	slices.Sort(r.Facts)
	var rcptFact, dataFact string
	for _, f := range r.Facts {
		d, _ := LookupFact(f)
		if stageIndex(d.Stage) > stageIndex(r.Stage) {
			r.Stage = d.Stage
		}
		switch {
		case d.PerRecipient && rcptFact == "":
			rcptFact = f
		case d.Stage == StageData && dataFact == "":
			dataFact = f
		}
	}
	if rcptFact != "" && dataFact != "" {
		p.errorf(ifNode.Line, path, "%s is known only while its recipient is evaluated (stage rcpt) and %s only at stage data: no stage knows both; split the rule", rcptFact, dataFact)
	}
}

func hasMergeKey(n *yaml.Node) bool {
	for i := 0; i < len(n.Content); i += 2 {
		if k := yamldiag.Resolve(n.Content[i]); k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			return true
		}
	}
	return false
}

// pair is one key and its value in a mapping.
type pair struct{ key, value *yaml.Node }

// pairs lists a mapping's pairs, reporting keys that are not names, merge
// keys and duplicates (yaml.v3 reports those only when decoding to Go).
func (p *parser) pairs(path string, n *yaml.Node) []pair {
	var out []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := yamldiag.Resolve(n.Content[i])
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k.Line, path, "a key must be a plain name, got %s", yamldiag.Describe(k))
			continue
		case k.ShortTag() == "!!merge":
			p.errorf(k.Line, path, "merge keys (<<) are not supported in rules; write the keys out (an alias for a whole value works)")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k.Line, yamldiag.JoinPath(path, k.Value), "duplicate key (first set at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{k, n.Content[i+1]})
	}
	return out
}

// unknown reports an unknown key or value with a did-you-mean hint when
// one of the known ones is within two edits, else with fallback.
func (p *parser) unknown(line int, path, what, got string, known []string, fallback string) {
	if guess := yamldiag.Closest(got, known); guess != "" {
		p.errorf(line, path, "unknown %s (did you mean %q?)", what, guess)
		return
	}
	p.errorf(line, path, "unknown %s (%s)", what, fallback)
}

func (p *parser) name(r *Rule, path string, n *yaml.Node) {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.ScalarNode || yamldiag.IsNull(n) {
		p.errorf(n.Line, path, "want a rule name, got %s", yamldiag.Describe(n))
		return
	}
	name := n.Value
	switch {
	case len(name) > maxNameLen:
		p.errorf(n.Line, path, "rule name is %d characters long; the limit is %d (it is a metric label)", len(name), maxNameLen)
		return
	case !ruleNameRE.MatchString(name):
		p.errorf(n.Line, path, `bad rule name %s: want lower-case letters, digits, ".", "_" and "-", starting with a letter or digit`, q(name))
		return
	}
	if first, dup := p.names[name]; dup {
		p.errorf(n.Line, path, "duplicate rule name %q (first used at line %d)", name, first)
		return
	}
	p.names[name] = n.Line
	r.Name = name
}

func (p *parser) action(r *Rule, path string, n *yaml.Node) {
	n = yamldiag.Resolve(n)
	names := make([]string, len(ruleActions))
	for i, a := range ruleActions {
		names[i] = string(a)
	}
	all := strings.Join(names, ", ")
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n.Line, path, "want an action (%s), got %s", all, yamldiag.Describe(n))
		return
	}
	if !slices.Contains(names, n.Value) {
		p.unknown(n.Line, path, "action "+q(n.Value), n.Value, names, "want one of "+all)
		return
	}
	r.Action = Action(n.Value)
}

func (p *parser) score(r *Rule, path string, n *yaml.Node) {
	n = yamldiag.Resolve(n)
	var f float64
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || yamldiag.DecodeScalar(n, &f) != nil {
		p.errorf(n.Line, path, "want a number, got %s", yamldiag.Describe(n))
		return
	}
	if !finite(f) {
		p.errorf(n.Line, path, "want a finite number, got %s", yamldiag.Describe(n))
		return
	}
	if math.Abs(f) > maxScore {
		p.errorf(n.Line, path, "score %s is out of range (-%d to %d)", n.Value, maxScore, maxScore)
		return
	}
	r.Score = f
}

func (p *parser) mode(r *Rule, path string, n *yaml.Node) {
	n = yamldiag.Resolve(n)
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "shadow":
		r.Shadow = true
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "enforce":
	default:
		p.errorf(n.Line, path, `unknown mode %s (want "enforce" or "shadow")`, yamldiag.Describe(n))
	}
}

const wantReply = `want a reply like "550 5.7.1 Message rejected by policy", got %s`

// replyRE is "CODE X.Y.Z text".
var replyRE = regexp.MustCompile(`^([0-9]{3}) ([0-9])\.([0-9]{1,3})\.([0-9]{1,3}) +(.*)$`)

// reply parses a custom reply and checks it fits the action. badAction
// says the action was given but is not valid, so its class is unknown.
func (p *parser) reply(r *Rule, path string, n *yaml.Node, badAction bool) {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n.Line, path, wantReply, yamldiag.Describe(n))
		return
	}
	m := replyRE.FindStringSubmatch(strings.TrimSpace(n.Value))
	if m == nil {
		p.errorf(n.Line, path, wantReply, yamldiag.Describe(n))
		return
	}
	rep := &Reply{Text: strings.TrimSpace(m[5]), Reason: ReasonRule}
	rep.Code, _ = strconv.Atoi(m[1])
	for i := range rep.Enhanced {
		rep.Enhanced[i], _ = strconv.Atoi(m[2+i])
	}
	if msg := replyProblem(rep, r.Action, badAction); msg != "" {
		p.errorf(n.Line, path, "%s", msg)
		return
	}
	r.Reply = rep
}

// replyProblem says what is wrong with a custom reply for action, or "".
func replyProblem(rep *Reply, action Action, badAction bool) string {
	if err := rep.Valid(); err != nil {
		return err.Error()
	}
	switch {
	case rep.Text == "":
		return "reply has no text"
	case len(rep.Text) > maxReplyText:
		return fmt.Sprintf("reply text is %d characters long; the limit is %d", len(rep.Text), maxReplyText)
	case strings.IndexFunc(rep.Text, func(c rune) bool { return c < ' ' || c > '~' }) >= 0:
		return "reply text must be printable ASCII (no control characters, no non-ASCII letters)"
	case rep.Code == 421:
		return "reply code 421 closes the connection, which a rule reply cannot do; use 451 (or action drop)"
	}
	if msg := placeholderProblem(rep.Text); msg != "" {
		return msg
	}
	switch action {
	case ActionReject, ActionDrop:
		if !rep.Permanent() {
			return fmt.Sprintf("action %s needs a 5xx reply, got %d", action, rep.Code)
		}
	case ActionTempfail, ActionGreylist:
		if !rep.Temporary() {
			return fmt.Sprintf("action %s needs a 4xx reply, got %d", action, rep.Code)
		}
	case "":
		if !badAction {
			return "a rule without an action sends no reply; remove reply, or add action reject, drop, tempfail or greylist"
		}
	default:
		return fmt.Sprintf("action %s sends no reply of its own; remove reply", action)
	}
	return ""
}

// cond parses a condition: a mapping whose keys are facts and
// combinators, all of which must hold. nil when it has a problem.
func (p *parser) cond(path string, n *yaml.Node) Cond {
	if !p.spend(n, path) {
		return nil
	}
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a condition (a mapping of facts to matchers), got %s", yamldiag.Describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errorf(n.Line, path, "empty condition: give at least one fact, or all, any or not")
		return nil
	}
	prs := p.pairs(path, n)
	var parts []Cond
	ok := len(prs)*2 == len(n.Content) // pairs dropped a bad key
	for _, kv := range prs {
		sub := yamldiag.JoinPath(path, kv.key.Value)
		var c Cond
		switch kv.key.Value {
		case "all", "any":
			c = p.list(sub, kv.key.Value, kv.value)
		case "not":
			c = p.not(sub, kv.value)
		default:
			c = p.fact(sub, kv.key, kv.value)
		}
		if c == nil {
			ok = false
		}
		parts = append(parts, c)
	}
	switch {
	case !ok:
		return nil
	case len(parts) == 1:
		return parts[0]
	}
	return allCond(parts)
}

func (p *parser) not(path string, n *yaml.Node) Cond {
	if v := yamldiag.Resolve(n); v.Kind == yaml.SequenceNode {
		p.errorf(v.Line, path, "want a condition (a mapping), got a list; to negate several, write not: {any: [...]} or not: {all: [...]}")
		return nil
	}
	if c := p.cond(path, n); c != nil {
		return notCond{c}
	}
	return nil
}

// list parses the conditions under all or any.
func (p *parser) list(path, which string, n *yaml.Node) Cond {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, path, "want a list of conditions, got %s", yamldiag.Describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errorf(n.Line, path, "empty list: %s needs at least one condition", which)
		return nil
	}
	cs := make([]Cond, len(n.Content))
	ok := true
	for i, item := range n.Content {
		cs[i] = p.cond(fmt.Sprintf("%s[%d]", path, i), item)
		ok = ok && cs[i] != nil
	}
	switch {
	case !ok:
		return nil
	case which == "all":
		return allCond(cs)
	}
	return anyCond(cs)
}

// fact parses "fact: matcher" or "fact: [matchers]".
func (p *parser) fact(path string, key, n *yaml.Node) Cond {
	name, def, known := canonicalFact(key.Value)
	if !known {
		p.errorf(key.Line, path, "%s", unknownFact(key.Value))
		return nil
	}
	p.facts[name] = true
	c := &factCond{name: name, kind: def.Kind}
	n = yamldiag.Resolve(n)
	items, itemPath := []*yaml.Node{n}, func(int) string { return path }
	switch n.Kind {
	case yaml.MappingNode:
		p.errorf(n.Line, path, "want a matcher or a list of matchers, got a mapping (all, any and not go around facts, not under them)")
		return nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			p.errorf(n.Line, path, "an empty list never matches; give at least one matcher")
			return nil
		}
		items, itemPath = n.Content, func(i int) string { return fmt.Sprintf("%s[%d]", path, i) }
	}
	ok := true
	for i, item := range items {
		if !p.spend(item, itemPath(i)) {
			return nil
		}
		item = yamldiag.Resolve(item)
		if item.Kind != yaml.ScalarNode {
			p.errorf(item.Line, itemPath(i), "want a matcher, got %s (lists do not nest)", yamldiag.Describe(item))
			ok = false
			continue
		}
		if err := c.add(item); err != nil {
			p.errorf(item.Line, itemPath(i), "%s", err)
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return c
}

// unknownFact explains why name is not a fact, with a guess when one is
// close: a family name whose suffix is bad, or a registered fact within
// two edits (a family's prefix is tried on the name's own suffix, so
// "heder.x-mailer" suggests "header.x-mailer").
func unknownFact(name string) string {
	names := factNames()
	var cands []string
	for _, f := range names {
		if !strings.HasSuffix(f, ".") {
			cands = append(cands, f)
			continue
		}
		if rest, ok := strings.CutPrefix(name, f); ok {
			if rest == "" {
				return fmt.Sprintf("%s is a family of facts; name one, as in %sx-mailer", f, f)
			}
			return fmt.Sprintf("unknown fact: %s is not a valid name after %s (want printable ASCII without spaces or colons)", q(rest), f)
		}
		parts := strings.Split(name, ".")
		if k := strings.Count(f, "."); len(parts) > k {
			cands = append(cands, f+strings.Join(parts[k:], "."))
		} else {
			cands = append(cands, f+"NAME")
		}
	}
	if guess := yamldiag.Closest(name, cands); guess != "" {
		return fmt.Sprintf("unknown fact (did you mean %q?)", guess)
	}
	return "unknown fact"
}

// q quotes text from the file, shortened so a message stays one line.
func q(s string) string { return strconv.Quote(yamldiag.Truncate(s)) }
