package config

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/policy"
	"github.com/mxgate/mxgate/rules"
)

// TestShippedRuleSets loads every rule file shipped in rules/, so a shipped
// rule can never fail to load.
func TestShippedRuleSets(t *testing.T) {
	names, err := fs.Glob(rules.FS, "*.yaml")
	if err != nil || len(names) < 3 {
		t.Fatalf("shipped rule files: %v %v", names, err)
	}
	for _, name := range names {
		data, _ := rules.FS.ReadFile(name)
		rs, errs := ruleFile("rules/"+name, data)
		if len(errs) > 0 {
			t.Errorf("%s:\n%v", name, errs)
			continue
		}
		if len(rs) == 0 {
			t.Errorf("%s has no rules", name)
		}
		if _, errs := policy.NewEngine(rs, policy.Options{}); len(errs) > 0 {
			t.Errorf("%s:\n%v", name, errs)
		}
	}
}

func TestIncludeErrors(t *testing.T) {
	_, err := Parse("testdata-include.yaml", []byte(`hostname: mx.example.com
domains: [example.com]
backend: { servers: ["127.0.0.1:10025"] }
policy:
  include: ["no-such-dir/*.yaml"]
  rules:
    - name: x
      if: { helo: localhost }
      action: reject
`))
	want := `testdata-include.yaml: policy.include[0]: "no-such-dir/*.yaml" matches no file`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}
