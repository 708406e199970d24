package spf

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// The RFC 7208 test suite (openspf.org 2014.04, with later additions), as
// blitiri.com.ar/go/spf v1.6.0 ships it in testdata/rfc7208-tests.yml:
// that copy carries the library's own `skip:` annotations and replaces a
// CNAME loop with a CNAMELOOP marker its test resolver understands. Here
// every scenario is loaded into a resolvertest.Fake and each test runs
// through Check.Run, so it exercises our identities, our resolver contract
// and our result mapping, not only the library.
//
// Loading follows the library's harness (yml_test.go) wherever the suite
// leaves room:
//   - SPF-type records become TXT records, but only for a name that has no
//     TXT of its own (some tests expect TXT to win); an SPF record given
//     as a list of strings is one record, the strings joined without a
//     separator (RFC 7208 §3.3); each TXT string is a record of its own;
//   - TIMEOUT makes every query of the name time out, records or not, as
//     the harness's error map does; Fake blocks for TimeoutAfter, then
//     fails as the real client does, so the tests run in parallel;
//   - CNAME is flattened: the alias gets its target's records (the Fake
//     has no CNAMEs; the real client likewise returns the records at the
//     end of the chain); CNAMELOOP answers SERVFAIL, which is what a
//     recursive resolver says about a loop;
//   - A and AAAA values go to the Fake's map of their address family.
//
// suiteSkips is the library's skip list, with its reasons, word for word;
// TestRFC7208Suite fails if the file's annotations differ from it. A
// skipped test still runs, and its result is logged, but is not asserted.
var suiteSkips = map[string]string{
	"non-ascii-policy":             "We don't enforce 7-bit ascii.",
	"control-char-policy":          "We fail instead of permerror because we don't enforce the charset.",
	"spftimeout":                   "We don't use SPF records, it's ok to temperror here.",
	"detect-errors-anywhere":       "We don't catch errors after a match.",
	"redirect-is-modifier":         "We don't catch errors after a match.",
	"invalid-domain":               "We don't enforce TLD structure.",
	"a-bad-domain":                 "We don't enforce domain charset.",
	"a-null":                       "We don't enforce charset.",
	"a-numeric":                    "We don't enforce domain structure.",
	"a-numeric-toplabel":           "We don't enforce TLD structure.",
	"a-bad-toplabel":               "We don't enforce TLD structure.",
	"a-only-toplabel":              "We don't enforce TLD structure.",
	"a-only-toplabel-trailing-dot": "We don't enforce TLD structure.",
	"a-colon-domain":               "Allowing / in domain names is not worth the complexity",
	"a-colon-domain-ip4mapped":     "Allowing / in domain names is not worth the complexity",
	"mx-bad-domain":                "We don't enforce domain syntax.",
	"mx-null":                      "We don't enforce charset.",
	"mx-numeric-top-label":         "We don't validate top-level domains.",
	"mx-colon-domain":              "Allowing / in domain names is not worth the complexity",
	"mx-colon-domain-ip4mapped":    "Allowing / in domain names is not worth the complexity",
	"mx-bad-toplab":                "We don't enforce TLD structure.",
	"cidr4-032":                    "It's not clear this is problematic.",
	"bare-ip6":                     "There's an early match.",
	"redirect-syntax-error":        "We don't enforce charset within the redirect.",
	"exp-empty-domain":             "We ignore exp, and is harmless.",
	"exp-syntax-error":             "We don't enforce exp values.",
	"exp-twice":                    "We ignore exp, and is harmless.",
	"redirect-empty-domain":        "There's an early match.",
	"unknown-modifier-syntax":      "There's an early match.",
	"exp-only-macro-char":          "We ignore exp, and is harmless.",
	"p-macro-multiple":             "p macro is not supported",
}

// suiteFile is the suite, relative to the package; it was copied from
// $(go env GOMODCACHE)/blitiri.com.ar/go/spf@v1.6.0/testdata/ with its
// licence (rfc7208-tests.LICENSE).
const suiteFile = "testdata/rfc7208-tests.yml"

type suiteDoc struct {
	Description string                  `yaml:"description"`
	Comment     string                  `yaml:"comment"`
	Tests       map[string]suiteTest    `yaml:"tests"`
	ZoneData    map[string][]zoneRecord `yaml:"zonedata"`
}

type suiteTest struct {
	Description string     `yaml:"description"`
	Comment     string     `yaml:"comment"`
	Spec        stringList `yaml:"spec"`
	Helo        string     `yaml:"helo"`
	Host        string     `yaml:"host"`
	MailFrom    string     `yaml:"mailfrom"`
	Result      stringList `yaml:"result"` // any of these is right
	Explanation string     `yaml:"explanation"`
	Skip        string     `yaml:"skip"`
	Strict      any        `yaml:"strict"`
}

// stringList is a scalar or a sequence of them.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = stringList{n.Value}
		return nil
	}
	var s []string
	err := n.Decode(&s)
	*l = s
	return err
}

// zoneRecord is one entry of a name's list: {TXT: ...}, {MX: [pref,
// host]}, {TIMEOUT: true}, or the bare scalar TIMEOUT.
type zoneRecord struct {
	typ    string
	values []string // TXT, SPF, A, AAAA, PTR, CNAME
	mx     net.MX
}

func (r *zoneRecord) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == "TIMEOUT" {
		r.typ = "TIMEOUT"
		return nil
	}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return fmt.Errorf("line %d: want a one-key mapping", n.Line)
	}
	r.typ = n.Content[0].Value
	v := n.Content[1]
	switch r.typ {
	case "TXT", "SPF", "A", "AAAA", "PTR", "CNAME":
		return v.Decode((*stringList)(&r.values))
	case "MX":
		var pair []yaml.Node
		if err := v.Decode(&pair); err != nil || len(pair) != 2 {
			return fmt.Errorf("line %d: MX wants [preference, host]", v.Line)
		}
		if err := pair[0].Decode(&r.mx.Pref); err != nil {
			return err
		}
		return pair[1].Decode(&r.mx.Host)
	case "TIMEOUT", "SERVFAIL", "CNAMELOOP":
		var on bool
		if err := v.Decode(&on); err != nil || !on {
			return fmt.Errorf("line %d: %s wants true", v.Line, r.typ)
		}
		return nil
	}
	return fmt.Errorf("line %d: unknown record type %q", n.Line, r.typ)
}

func loadSuite(t *testing.T) []suiteDoc {
	t.Helper()
	f, err := os.Open(suiteFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var docs []suiteDoc
	for {
		var d suiteDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", suiteFile, err)
		}
		docs = append(docs, d)
	}
}

// zoneName is how the loader keys names: the suite spells one name in
// several cases ("CNAME.example.com." and "cname.example.com").
func zoneName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// loadZone builds the Fake for one scenario (see the comment at the top).
func loadZone(zone map[string][]zoneRecord) (*resolvertest.Fake, error) {
	f := &resolvertest.Fake{
		TXT: map[string][]string{}, A: map[string][]string{}, AAAA: map[string][]string{},
		PTR: map[string][]string{}, MX: map[string][]*net.MX{},
		ServFail: map[string]bool{}, Timeout: map[string]bool{},
	}
	cnames := map[string]string{}
	spfs := map[string][]string{}
	for owner, recs := range zone {
		name := zoneName(owner)
		for _, r := range recs {
			switch r.typ {
			case "TXT":
				f.TXT[name] = append(f.TXT[name], r.values...)
			case "SPF":
				spfs[name] = append(spfs[name], strings.Join(r.values, ""))
			case "A", "AAAA":
				for _, v := range r.values {
					ip, err := netip.ParseAddr(v)
					if err != nil {
						return nil, fmt.Errorf("%s: %s %q: %v", owner, r.typ, v, err)
					}
					if ip.Is4() {
						f.A[name] = append(f.A[name], v)
					} else {
						f.AAAA[name] = append(f.AAAA[name], v)
					}
				}
			case "PTR":
				f.PTR[name] = append(f.PTR[name], r.values...)
			case "MX":
				f.MX[name] = append(f.MX[name], &net.MX{Host: r.mx.Host, Pref: r.mx.Pref})
			case "CNAME":
				cnames[name] = zoneName(r.values[0])
			case "TIMEOUT":
				f.Timeout[name] = true
			case "SERVFAIL", "CNAMELOOP":
				f.ServFail[name] = true
			}
		}
	}
	for name, recs := range spfs {
		if len(f.TXT[name]) == 0 {
			f.TXT[name] = recs
		}
	}
	for alias := range cnames {
		flatten(f, cnames, alias)
	}
	return f, nil
}

// flatten gives alias the records at the end of its CNAME chain; a chain
// that loops, or is longer than the real client follows, answers SERVFAIL.
func flatten(f *resolvertest.Fake, cnames map[string]string, alias string) {
	target := alias
	for range 8 {
		next, ok := cnames[target]
		if !ok {
			f.TXT[alias], f.A[alias], f.AAAA[alias] = f.TXT[target], f.A[target], f.AAAA[target]
			f.PTR[alias], f.MX[alias] = f.PTR[target], f.MX[target]
			f.Timeout[alias], f.ServFail[alias] = f.Timeout[target], f.ServFail[target]
			return
		}
		target = next
	}
	f.ServFail[alias] = true
}

// suiteCounts tallies the outcomes across parallel subtests.
type suiteCounts struct {
	mu               sync.Mutex
	pass, fail, skip int
	skippedButPass   []string
	total            int
}

func (c *suiteCounts) add(f func(c *suiteCounts)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func TestRFC7208Suite(t *testing.T) {
	docs := loadSuite(t)
	var counts suiteCounts
	seen := map[string]bool{}
	t.Run("suite", func(t *testing.T) {
		for _, doc := range docs {
			dns, err := loadZone(doc.ZoneData)
			if err != nil {
				t.Fatalf("%s: %v", doc.Description, err)
			}
			c := New(dns, Options{})
			for _, name := range sortedKeys(doc.Tests) {
				test := doc.Tests[name]
				if seen[name] {
					t.Fatalf("test name %q appears twice", name)
				}
				seen[name] = true
				if reason, ok := suiteSkips[name]; ok != (test.Skip != "") || reason != test.Skip {
					t.Errorf("%s: the suite says skip %q, suiteSkips %q: keep them in step", name, test.Skip, reason)
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					runSuiteTest(t, c, doc.Description, name, test, &counts)
				})
			}
		}
	})
	t.Logf("RFC 7208 suite: %d tests, %d pass, %d fail, %d skipped (library's skip list)", counts.total, counts.pass, counts.fail, counts.skip)
	if len(counts.skippedButPass) > 0 {
		slices.Sort(counts.skippedButPass)
		t.Logf("skipped, but our result is one the suite accepts: %s", strings.Join(counts.skippedButPass, ", "))
	}
	if counts.fail != 0 || counts.skip != len(suiteSkips) || counts.pass+counts.skip != counts.total {
		t.Errorf("want every test but the %d skipped to pass", len(suiteSkips))
	}
	for name := range suiteSkips {
		if !seen[name] {
			t.Errorf("suiteSkips names %q, which the suite does not have", name)
		}
	}
}

func runSuiteTest(t *testing.T, c *Check, doc, name string, test suiteTest, counts *suiteCounts) {
	ip, err := netip.ParseAddr(test.Host)
	if err != nil {
		t.Fatalf("host %q: %v", test.Host, err)
	}
	r := c.Run(t.Context(), checks.Input{IP: ip, Helo: test.Helo, MailFrom: test.MailFrom})
	got, _ := r.Facts["spf"].(string)
	ok := slices.Contains(test.Result, got)
	counts.add(func(c *suiteCounts) {
		c.total++
		switch {
		case test.Skip != "":
			c.skip++
			if ok {
				c.skippedButPass = append(c.skippedButPass, name)
			}
		case ok:
			c.pass++
		default:
			c.fail++
		}
	})
	switch {
	case test.Skip != "":
		t.Skipf("library skip: %s (got %s, suite wants %v)", test.Skip, got, test.Result)
	case !ok:
		t.Errorf("%s / %s (spec %v): helo %q host %s mailfrom %q: got %s (%s), want %v",
			doc, name, test.Spec, test.Helo, test.Host, test.MailFrom, got, r.Detail, test.Result)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
