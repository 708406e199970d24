package policy

// Facts are the evidence rules are written against. Each fact has a name
// (the key a rule uses), a kind (which decides the matchers a rule may use
// and how values compare) and the stage from which it is known, which is
// how a rule's stage is inferred: a rule runs at the latest stage among the
// facts it names, the earliest point at which all of them can be known.
//
// The registry is filled from init functions (this file's for the core
// facts, each check's own for its results) and is read-only afterwards, so
// a rule file is validated against exactly the facts the binary can supply.

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Kind is a fact's type. It decides which matchers a rule may give for the
// fact and how a value is compared with them (docs/policy.md, "Matchers").
type Kind string

// The kinds.
const (
	// KindString compares exactly (case-sensitive) or by /regex/.
	KindString Kind = "string"
	// KindDomain compares case-insensitively, ignoring a trailing dot and
	// treating U-labels and A-labels alike; "*.example.com" matches the
	// subdomains of example.com but not example.com itself.
	KindDomain Kind = "domain"
	// KindAddress compares case-insensitively; "*@example.com" matches any
	// local part at example.com.
	KindAddress Kind = "address"
	// KindIP matches an address or a CIDR range; IPv4-mapped IPv6 values
	// are unmapped first, so 192.0.2.0/24 matches ::ffff:192.0.2.1.
	KindIP Kind = "ip"
	// KindNumber compares with 5, "> 5", ">= 5", "< 5", "<= 5", "== 5" or
	// "!= 5".
	KindNumber Kind = "number"
	// KindBool matches true or false, nothing else.
	KindBool Kind = "bool"
	// KindSet is a list of names (DKIM domains, the DNSBLs that list the
	// client). true matches a non-empty set and false an empty one; any
	// other matcher holds when some element matches it as a domain would.
	KindSet Kind = "set"
)

// FactDef defines one fact.
type FactDef struct {
	// Name is the key rules use. A name ending in "." defines a family:
	// "header." covers "header.x-mailer" and every other header name, with
	// the part after the prefix lower-cased.
	Name string
	// Kind is the fact's type.
	Kind Kind
	// Stage is the first stage at which the fact can be known.
	Stage Stage
	// Doc says what the fact means, for docs/policy.md and `explain`.
	Doc string
	// PerRecipient marks a fact whose value is the recipient being
	// evaluated (rcpt, rcpt.domain): it changes with every RCPT, so no
	// single point of the transaction knows it together with DATA facts.
	// Facts merely known from the RCPT stage on (spf) are not.
	PerRecipient bool
}

// family reports whether d defines a prefix family rather than one fact.
func (d FactDef) family() bool { return strings.HasSuffix(d.Name, ".") }

// stages lists the stages in protocol order; a stage's index is its place
// in time, which rule-stage inference and threshold timing compare.
var stages = [...]Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageData}

// stageIndex returns the position of s in protocol order, or -1 when s is
// not a stage.
func stageIndex(s Stage) int {
	for i, t := range stages {
		if t == s {
			return i
		}
	}
	return -1
}

// factNameRE is dot-separated lower-case components, with a trailing dot
// for a family. Lower case only, so a name is spelt one way in every file.
var factNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*\.?$`)

// combinators are the condition keys that are not facts.
var combinators = []string{"all", "any", "not"}

// registry holds every fact definition. Registration happens in init
// functions, but a lock costs nothing next to rule parsing and keeps a late
// registration (a test's) from racing with a lookup.
var registry struct {
	sync.RWMutex
	defs     map[string]FactDef
	families []string // family names, longest first, so the longest prefix wins
}

// RegisterFact adds a fact definition. Checks call it from init, one line
// per fact. It panics on a duplicate name, a name that is not lower-case
// dot-separated words (or one of all, any and not), an unknown kind or
// stage, or an empty Doc: each is a programmer error that must stop the
// binary from starting, not a rule file from loading.
func RegisterFact(d FactDef) {
	switch {
	case !factNameRE.MatchString(d.Name) || len(d.Name) > 64:
		panic(fmt.Sprintf("policy: RegisterFact: bad fact name %q", d.Name))
	case slices.Contains(combinators, d.Name):
		panic(fmt.Sprintf("policy: RegisterFact: %q is a combinator, not a fact name", d.Name))
	case !validKind(d.Kind):
		panic(fmt.Sprintf("policy: RegisterFact(%q): unknown kind %q", d.Name, d.Kind))
	case stageIndex(d.Stage) < 0:
		panic(fmt.Sprintf("policy: RegisterFact(%q): unknown stage %q", d.Name, d.Stage))
	case strings.TrimSpace(d.Doc) == "":
		panic(fmt.Sprintf("policy: RegisterFact(%q): no Doc", d.Name))
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.defs == nil {
		registry.defs = map[string]FactDef{}
	}
	if _, dup := registry.defs[d.Name]; dup {
		panic(fmt.Sprintf("policy: RegisterFact: fact %q registered twice", d.Name))
	}
	registry.defs[d.Name] = d
	if d.family() {
		registry.families = append(registry.families, d.Name)
		slices.SortFunc(registry.families, func(a, b string) int { return len(b) - len(a) })
	}
}

func validKind(k Kind) bool {
	switch k {
	case KindString, KindDomain, KindAddress, KindIP, KindNumber, KindBool, KindSet:
		return true
	}
	return false
}

// LookupFact returns the definition of name: the fact of that exact name,
// else the family with the longest registered prefix of it (the family's
// own definition, whose Name ends in ".").
func LookupFact(name string) (FactDef, bool) {
	_, d, ok := canonicalFact(name)
	return d, ok
}

// canonicalFact resolves name to the key values are stored under and its
// definition. Names in a family have the part after the prefix lower-cased,
// because the things families cover (header field names) are
// case-insensitive.
func canonicalFact(name string) (string, FactDef, bool) {
	registry.RLock()
	defer registry.RUnlock()
	if d, ok := registry.defs[name]; ok && !d.family() {
		return name, d, true
	}
	for _, p := range registry.families {
		rest, ok := strings.CutPrefix(name, p)
		if ok && validSuffix(rest) {
			return p + strings.ToLower(rest), registry.defs[p], true
		}
	}
	return "", FactDef{}, false
}

// validSuffix accepts what may follow a family prefix: a header field name
// (RFC 5322 §3.6.8: printable ASCII but the colon), which is the widest
// thing a family covers.
func validSuffix(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':' {
			return false
		}
	}
	return true
}

// FactDefs returns every registered definition, sorted by stage and then
// by name, for the documentation and `gateway explain`.
func FactDefs() []FactDef {
	registry.RLock()
	out := make([]FactDef, 0, len(registry.defs))
	for _, d := range registry.defs {
		out = append(out, d)
	}
	registry.RUnlock()
	slices.SortFunc(out, func(a, b FactDef) int {
		if d := stageIndex(a.Stage) - stageIndex(b.Stage); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// factNames lists the registered names and combinators, for did-you-mean
// hints.
func factNames() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.defs)+len(combinators))
	for n := range registry.defs {
		names = append(names, n)
	}
	slices.Sort(names)
	return append(names, combinators...)
}

// scoreFact is the fact whose value is the transaction's score at the
// moment a rule is evaluated. Values never hold it: the evaluation supplies
// it, so rules that name it see the scores of the rules evaluated before.
const scoreFact = "score"

// The core facts: what the SMTP session itself knows. Checks register
// theirs in their own packages.
func init() {
	RegisterFact(FactDef{Name: "client.ip", Kind: KindIP, Stage: StageConnect, Doc: "the connecting client's IP address"})
	RegisterFact(FactDef{Name: "client.port", Kind: KindNumber, Stage: StageConnect, Doc: "the connecting client's TCP port"})
	RegisterFact(FactDef{Name: "pregreet", Kind: KindString, Stage: StageConnect, Doc: "the pre-greeting test: pass (waited for the banner), early (talked first), skipped (no wait configured)"})
	RegisterFact(FactDef{Name: "helo", Kind: KindDomain, Stage: StageHelo, Doc: "the HELO/EHLO argument, as given"})
	RegisterFact(FactDef{Name: "helo.valid", Kind: KindBool, Stage: StageHelo, Doc: "the HELO/EHLO argument is a fully qualified domain name or an address literal (RFC 5321 §4.1.1.1)"})
	RegisterFact(FactDef{Name: "tls", Kind: KindBool, Stage: StageHelo, Doc: "the client started TLS (STARTTLS or implicit TLS) before this point"})
	RegisterFact(FactDef{Name: "mail_from", Kind: KindAddress, Stage: StageMail, Doc: `the envelope sender (MAIL FROM); "" for the null sender <>`})
	RegisterFact(FactDef{Name: "mail_from.domain", Kind: KindDomain, Stage: StageMail, Doc: `the envelope sender's domain; "" for the null sender`})
	RegisterFact(FactDef{Name: "rcpt", Kind: KindAddress, Stage: StageRcpt, Doc: "the recipient being evaluated (rules of this stage run once per RCPT TO)", PerRecipient: true})
	RegisterFact(FactDef{Name: "rcpt.domain", Kind: KindDomain, Stage: StageRcpt, Doc: "the domain of the recipient being evaluated", PerRecipient: true})
	RegisterFact(FactDef{Name: "size", Kind: KindNumber, Stage: StageData, Doc: "the message size in bytes, as received"})
	RegisterFact(FactDef{Name: "header.", Kind: KindString, Stage: StageData, Doc: "header.NAME: the first header field NAME (any case), unfolded and trimmed"})
	RegisterFact(FactDef{Name: "subject", Kind: KindString, Stage: StageData, Doc: "the Subject header field, unfolded and trimmed"})
	RegisterFact(FactDef{Name: "message_id", Kind: KindString, Stage: StageData, Doc: "the Message-ID header field, trimmed"})
	RegisterFact(FactDef{Name: "header_from.domain", Kind: KindDomain, Stage: StageData, Doc: "the domain of the address in the From header field (RFC 5322)"})
	RegisterFact(FactDef{Name: "header_from.valid", Kind: KindBool, Stage: StageData, Doc: "the header section has exactly one From field with exactly one address (RFC 5322 §3.6.2; RFC 7489 §6.6.1 says to reject others)"})
	RegisterFact(FactDef{Name: scoreFact, Kind: KindNumber, Stage: StageData, Doc: "the transaction's score when the rule is evaluated: the sum of the scores of the rules that matched before it"})
}
