package policy

// Matchers compare one fact's value with what a rule wrote for it. A fact
// condition holds when any of its matchers does. Each matcher is parsed
// according to the fact's kind, once, when the rules are loaded: literals
// are normalised the way values will be (lower case, no trailing dot,
// A-labels), patterns are compiled, and plain equalities go into a map, so
// a long allow list costs one lookup. A matcher that could never mean what
// it says for the kind (a CIDR for a domain, a comparison for an address, a
// regex for a number) is an error rather than a literal that never matches.

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/yamldiag"
	"go.yaml.in/yaml/v3"
	"golang.org/x/net/idna"
)

// factCond is the condition on one fact.
type factCond struct {
	name string
	kind Kind
	src  []string // each matcher as written, for String

	eq       map[string]bool     // normalised literals (string, domain, address, set elements)
	ips      map[netip.Addr]bool // unmapped addresses
	prefixes []netip.Prefix
	strs     []strMatcher // patterns over the normalised string
	nums     []numCmp
	bools    [2]bool // [false], [true]: bool facts, and set emptiness
}

// strMatcher is a pattern over a normalised string value.
type strMatcher interface{ matchStr(s string) bool }

type regexMatcher struct{ re *regexp.Regexp }

func (m regexMatcher) matchStr(s string) bool { return m.re.MatchString(s) }

// globMatcher is "*.example.com": strict subdomains only, because "any
// name under example.com" is what people mean by it, and including the apex
// silently would make "*.example.com" and "example.com" redundant twins.
type globMatcher struct{ suffix string } // ".example.com"

func (m globMatcher) matchStr(s string) bool {
	return len(s) > len(m.suffix) && strings.HasSuffix(s, m.suffix)
}

// addrDomainMatcher is "*@example.com" (or "*@*.example.com"): any local
// part at a domain.
type addrDomainMatcher struct{ dom strMatcher }

func (m addrDomainMatcher) matchStr(s string) bool {
	i := strings.LastIndexByte(s, '@')
	return i >= 0 && m.dom.matchStr(s[i+1:])
}

// domainEq is an exact domain inside an address pattern.
type domainEq string

func (m domainEq) matchStr(s string) bool { return string(m) == s }

// numCmp is a number comparison.
type numCmp struct {
	op string // ==, !=, >, >=, <, <=
	x  float64
}

func (c numCmp) match(f float64) bool {
	switch c.op {
	case "!=":
		return f != c.x
	case ">":
		return f > c.x
	case ">=":
		return f >= c.x
	case "<":
		return f < c.x
	case "<=":
		return f <= c.x
	}
	return f == c.x
}

// Match reports whether the fact is set and some matcher holds.
func (c *factCond) Match(v *Values, score float64) bool {
	if c.name == scoreFact {
		return c.matchNumber(score)
	}
	val, ok := v.get(c.name)
	if !ok {
		return false
	}
	switch x := val.(type) {
	case string:
		return c.matchString(x)
	case netip.Addr:
		a := x.Unmap().WithZone("")
		if c.ips[a] {
			return true
		}
		for _, p := range c.prefixes {
			if p.Contains(a) {
				return true
			}
		}
	case float64:
		return c.matchNumber(x)
	case bool:
		return c.bools[b2i(x)]
	case []string:
		if c.bools[b2i(len(x) > 0)] {
			return true
		}
		for _, e := range x {
			if c.matchString(e) {
				return true
			}
		}
	}
	return false
}

func (c *factCond) matchNumber(f float64) bool {
	for _, n := range c.nums {
		if n.match(f) {
			return true
		}
	}
	return false
}

// matchString normalises s for the fact's kind (a set's elements compare
// as domains) and tries the literals, then the patterns.
func (c *factCond) matchString(s string) bool {
	switch c.kind {
	case KindDomain, KindSet:
		s = normDomain(s)
	case KindAddress:
		s = normAddr(s)
	}
	if c.eq[s] {
		return true
	}
	for _, m := range c.strs {
		if m.matchStr(s) {
			return true
		}
	}
	return false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// String renders "fact: matcher" or "fact: [m1, m2]".
func (c *factCond) String() string {
	if len(c.src) == 1 {
		return c.name + ": " + c.src[0]
	}
	return c.name + ": [" + strings.Join(c.src, ", ") + "]"
}

// add parses one matcher from a scalar node. The error does not name the
// fact or the line; the caller adds them.
func (c *factCond) add(n *yaml.Node) error {
	if n.ShortTag() == "!!null" {
		return fmt.Errorf("want a matcher, got %s", yamldiag.Describe(n))
	}
	var err error
	switch c.kind {
	case KindBool:
		err = c.addBool(n)
	case KindNumber:
		err = c.addNumber(n)
	case KindSet:
		if n.ShortTag() == "!!bool" {
			err = c.addBool(n)
		} else {
			err = c.addDomain(n.Value)
		}
	case KindIP:
		err = c.addIP(n.Value)
	case KindDomain:
		err = c.addDomain(n.Value)
	case KindAddress:
		err = c.addAddress(n.Value)
	default:
		err = c.addString(n.Value)
	}
	if err == nil {
		c.src = append(c.src, render(n))
	}
	return err
}

func (c *factCond) addBool(n *yaml.Node) error {
	var b bool
	if n.ShortTag() != "!!bool" || yamldiag.DecodeScalar(n, &b) != nil {
		if c.kind == KindSet {
			return fmt.Errorf("want true (not empty), false (empty) or a name to look for, got %s", yamldiag.Describe(n))
		}
		return fmt.Errorf("want true or false, got %s", yamldiag.Describe(n))
	}
	c.bools[b2i(b)] = true
	return nil
}

const wantNumber = `want a number or a comparison like ">= 5", got %s`

func (c *factCond) addNumber(n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!int", "!!float":
		var f float64
		if yamldiag.DecodeScalar(n, &f) != nil || !finite(f) {
			return fmt.Errorf(wantNumber, yamldiag.Describe(n))
		}
		c.nums = append(c.nums, numCmp{"==", f})
		return nil
	case "!!str":
	default:
		return fmt.Errorf(wantNumber, yamldiag.Describe(n))
	}
	if _, _, ok, _ := regexOf(n.Value); ok {
		return fmt.Errorf("%s is a number fact; regular expressions are for string, domain, address and set facts", c.name)
	}
	m := cmpRE.FindStringSubmatch(strings.TrimSpace(n.Value))
	if m == nil {
		return fmt.Errorf(wantNumber, yamldiag.Describe(n))
	}
	f, err := strconv.ParseFloat(m[2], 64)
	if err != nil || !finite(f) {
		return fmt.Errorf(wantNumber, yamldiag.Describe(n))
	}
	op := m[1]
	if op == "" {
		op = "=="
	}
	c.nums = append(c.nums, numCmp{op, f})
	return nil
}

// cmpRE is an optional operator and a number. Longer operators come first
// so ">=" is not read as ">" and "=5".
var cmpRE = regexp.MustCompile(`^(==|!=|>=|<=|>|<)?\s*([-+]?[0-9.][0-9.eE+-]*)$`)

// looksLikeComparison catches "> 5" given for a fact that is not a number.
var looksLikeComparison = regexp.MustCompile(`^(==|!=|>=|<=|>|<)\s*[-+]?[0-9.]`)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func (c *factCond) addIP(text string) error {
	if _, _, ok, _ := regexOf(text); ok {
		return fmt.Errorf("%s is an ip fact; regular expressions are for string, domain, address and set facts (use an address or a CIDR range like 192.0.2.0/24)", c.name)
	}
	if looksLikeComparison.MatchString(text) {
		return c.notNumber(text)
	}
	if strings.Contains(text, "/") {
		p, err := netip.ParsePrefix(text)
		if err != nil {
			return fmt.Errorf("bad CIDR range %q: want an address, a slash and a prefix length, like 192.0.2.0/24 or 2001:db8::/32", text)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// Values are unmapped before matching, so the range must be too.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p != p.Masked() {
			return fmt.Errorf("CIDR range %q has bits set after the prefix length (did you mean %s?)", text, p.Masked())
		}
		c.prefixes = append(c.prefixes, p)
		return nil
	}
	a, err := netip.ParseAddr(text)
	if err != nil {
		return fmt.Errorf("bad IP address %q: want an address like 192.0.2.1 or 2001:db8::1, or a CIDR range like 192.0.2.0/24", text)
	}
	if a.Zone() != "" {
		return fmt.Errorf("IP address %q has a zone; leave it out", text)
	}
	if c.ips == nil {
		c.ips = map[netip.Addr]bool{}
	}
	c.ips[a.Unmap()] = true
	return nil
}

// notNumber and notIP reject a matcher that belongs to another kind.
func (c *factCond) notNumber(text string) error {
	return fmt.Errorf("%q is a comparison, but %s is %s fact; comparisons are for number facts", text, c.name, article(c.kind))
}

func (c *factCond) notIP(text string) error {
	msg := fmt.Sprintf("%q is a CIDR range, but %s is %s fact; CIDR ranges are for ip facts", text, c.name, article(c.kind))
	if c.kind == KindString {
		msg += " (to match the text, use a regular expression)"
	}
	return errors.New(msg)
}

func article(k Kind) string {
	if k == KindAddress || k == KindIP {
		return "an " + string(k)
	}
	return "a " + string(k)
}

// addRegex compiles a /…/ matcher if text is one. fold forces case
// insensitivity, for kinds whose values are compared in lower case.
func (c *factCond) addRegex(text string, fold bool) (bool, error) {
	body, ci, ok, err := regexOf(text)
	if !ok || err != nil {
		return ok, err
	}
	// Compiled once as written, so the error quotes what the operator
	// wrote rather than our (?i) prefix.
	re, err := regexp.Compile(body)
	if err == nil && (ci || fold) {
		re, err = regexp.Compile("(?i)" + body)
	}
	if err != nil {
		return true, fmt.Errorf("bad regular expression %s: %v", text, err)
	}
	c.strs = append(c.strs, regexMatcher{re})
	return true, nil
}

// regexOf recognises /body/ and /body/i. A trailing flag other than i
// that other languages use (/x/m, /x/g) is an error rather than a literal,
// because the rule would otherwise silently never match.
func regexOf(text string) (body string, ci, ok bool, err error) {
	if len(text) < 2 || text[0] != '/' {
		return "", false, false, nil
	}
	j := strings.LastIndexByte(text, '/')
	if j == 0 {
		return "", false, false, nil
	}
	body, flags := text[1:j], text[j+1:]
	switch {
	case flags == "" || flags == "i":
	case len(flags) <= 3 && strings.Trim(flags, "gimsuxyU") == "":
		return "", false, true, fmt.Errorf("regular expression %s: unsupported flag %q; only i is supported (write (?s) or (?m) inside the expression)", text, flags)
	default:
		return "", false, false, nil // a literal that happens to start with "/"
	}
	if body == "" {
		return "", false, true, fmt.Errorf("empty regular expression %s would match everything", text)
	}
	return body, flags == "i", true, nil
}

func (c *factCond) addString(text string) error {
	if ok, err := c.addRegex(text, false); ok {
		return err
	}
	if _, err := netip.ParsePrefix(text); err == nil {
		return c.notIP(text)
	}
	c.addEq(text)
	return nil
}

func (c *factCond) addEq(s string) {
	if c.eq == nil {
		c.eq = map[string]bool{}
	}
	c.eq[s] = true
}

// addDomain parses a domain matcher; set elements use it too.
func (c *factCond) addDomain(text string) error {
	if ok, err := c.addRegex(text, true); ok {
		return err
	}
	if err := c.wrongKind(text); err != nil {
		return err
	}
	m, err := domainPattern(text)
	if err != nil {
		return err
	}
	if eq, ok := m.(domainEq); ok {
		c.addEq(string(eq))
	} else {
		c.strs = append(c.strs, m)
	}
	return nil
}

// wrongKind rejects a comparison or a CIDR range given for a fact whose
// values can contain neither.
func (c *factCond) wrongKind(text string) error {
	if looksLikeComparison.MatchString(text) {
		return c.notNumber(text)
	}
	if _, err := netip.ParsePrefix(text); err == nil {
		return c.notIP(text)
	}
	return nil
}

// domainPattern parses "example.com" or "*.example.com".
func domainPattern(text string) (strMatcher, error) {
	name, glob := strings.CutPrefix(text, "*.")
	if strings.Contains(name, "*") || (glob && name == "") {
		return nil, fmt.Errorf("bad domain pattern %q: * may only start a pattern, as in *.example.com (which matches subdomains only); for anything else use a regular expression", text)
	}
	if strings.ContainsAny(name, "@ \t") {
		return nil, fmt.Errorf("%q is not a domain (for a whole address, use an address fact such as mail_from)", text)
	}
	norm, err := normDomainLiteral(name)
	if err != nil {
		return nil, fmt.Errorf("bad domain %q: %v", text, err)
	}
	if glob {
		return globMatcher{"." + norm}, nil
	}
	return domainEq(norm), nil
}

func (c *factCond) addAddress(text string) error {
	if ok, err := c.addRegex(text, true); ok {
		return err
	}
	if err := c.wrongKind(text); err != nil {
		return err
	}
	if text == "" {
		c.addEq("") // the null sender
		return nil
	}
	i := strings.LastIndexByte(text, '@')
	if i < 0 {
		hint := ""
		if _, ok := LookupFact(c.name + ".domain"); ok {
			hint = fmt.Sprintf(" (for the domain alone, use %s.domain)", c.name)
		}
		return fmt.Errorf("%q is not an address; want user@example.com, *@example.com, \"\" for the null sender, or a /regular expression/%s", text, hint)
	}
	local, domain := text[:i], text[i+1:]
	if local == "*" {
		m, err := domainPattern(domain)
		if err != nil {
			return err
		}
		c.strs = append(c.strs, addrDomainMatcher{m})
		return nil
	}
	if local == "" || domain == "" || strings.Contains(text, "*") {
		return fmt.Errorf("bad address %q: want user@example.com, or *@example.com for any address at a domain", text)
	}
	norm, err := normDomainLiteral(domain)
	if err != nil {
		return fmt.Errorf("bad address %q: %v", text, err)
	}
	c.addEq(strings.ToLower(local) + "@" + norm)
	return nil
}

// normDomain puts a domain value in the form literals are stored in: no
// trailing dot, lower case, A-labels. A value that is not a valid IDN is
// only lower-cased; it then matches only a literal spelt the same way.
func normDomain(s string) string {
	s = strings.TrimSuffix(s, ".")
	if isASCII(s) {
		return strings.ToLower(s)
	}
	if a, err := idna.Lookup.ToASCII(s); err == nil {
		return strings.ToLower(a)
	}
	return strings.ToLower(s)
}

// normDomainLiteral is normDomain for a rule's literal, where an invalid
// IDN is an error the operator should see.
func normDomainLiteral(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if isASCII(s) {
		return strings.ToLower(s), nil
	}
	a, err := idna.Lookup.ToASCII(s)
	if err != nil {
		return "", errors.New(strings.TrimPrefix(err.Error(), "idna: "))
	}
	return strings.ToLower(a), nil
}

// normAddr lower-cases an address and normalises its domain. Local parts
// are case-sensitive in theory (RFC 5321 §2.4) but not in any mailbox an
// operator writes a rule about.
func normAddr(s string) string {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return strings.ToLower(s)
	}
	return strings.ToLower(s[:i]) + "@" + normDomain(s[i+1:])
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// plainRE is text that reads unambiguously without quotes.
var plainRE = regexp.MustCompile(`^[A-Za-z0-9_.@*:/+-]+$`)

// render writes a matcher for Cond.String: regular expressions, numbers,
// booleans and plain names as they are, anything else quoted.
func render(n *yaml.Node) string {
	t := n.Value
	if n.ShortTag() != "!!str" {
		return t
	}
	if _, _, ok, _ := regexOf(t); ok {
		return t
	}
	plain := &yaml.Node{Kind: yaml.ScalarNode, Value: t}
	if plainRE.MatchString(t) && plain.ShortTag() == "!!str" {
		return t
	}
	return strconv.Quote(t)
}
