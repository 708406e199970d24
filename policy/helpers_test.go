package policy

import (
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The core facts have no set; checks register the real ones (dkim.domains,
// dnsbl.listed) in their own packages, which this package cannot import.
// The "test." names cannot clash with them.
func init() {
	RegisterFact(FactDef{Name: "test.set", Kind: KindSet, Stage: StageConnect, Doc: "test: a set known at connect"})
	RegisterFact(FactDef{Name: "test.mail-set", Kind: KindSet, Stage: StageMail, Doc: "test: a set known at mail"})
	RegisterFact(FactDef{Name: "test.fam.", Kind: KindString, Stage: StageData, Doc: "test: outer family"})
	RegisterFact(FactDef{Name: "test.fam.inner.", Kind: KindNumber, Stage: StageData, Doc: "test: inner family"})
}

// node decodes YAML text into the node of its single document.
func node(t testing.TB, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("YAML %q: %v", src, err)
	}
	if len(doc.Content) == 0 {
		t.Fatalf("YAML %q: empty", src)
	}
	return doc.Content[0]
}

// parse parses a rule list given as YAML text and fails on any error.
func parse(t testing.TB, src string) []*Rule {
	t.Helper()
	rules, errs := ParseRules("test.yaml", "policy.rules", node(t, src))
	if errs != nil {
		t.Fatalf("rules:\n%s\nerrors:\n%v", src, errs)
	}
	return rules
}

// condOf parses the flow mapping cond as a rule's condition.
func condOf(t testing.TB, cond string) Cond {
	t.Helper()
	return parse(t, "[{name: t, score: 1, if: "+cond+"}]")[0].If
}

// vals builds Values from a map, with "1.2.3.4"-style strings for ip
// facts, and fails on any error.
func vals(t testing.TB, m map[string]any) *Values {
	t.Helper()
	v := NewValues()
	for k, val := range m {
		if d, ok := LookupFact(k); ok && d.Kind == KindIP {
			val = netip.MustParseAddr(val.(string))
		}
		if err := v.Set(k, val); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// lines joins lines with newlines, for YAML in tests.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
