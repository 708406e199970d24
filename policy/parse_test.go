package policy

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/policy/bad/*.err from the parser's output")

// testdata is the repository's shared test data folder.
const testdata = "../testdata/policy"

// ruleFileNode returns the rule list of a testdata file: the value of its
// top-level "rules" key.
func ruleFileNode(t testing.TB, data []byte) *yaml.Node {
	t.Helper()
	root := node(t, string(data))
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "rules" {
			return root.Content[i+1]
		}
	}
	t.Fatal(`no top-level "rules" key`)
	return nil
}

// TestBadRules pins the exact text of every validation error: each
// testdata/policy/bad/NAME.yaml has its expected errors in NAME.err.
func TestBadRules(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "bad", "*.yaml"))
	if err != nil || len(files) < 20 {
		t.Fatalf("want at least 20 bad rule files, got %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			rules, errs := ParseRules(filepath.Base(file), "policy.rules", ruleFileNode(t, data))
			if rules != nil || len(errs) == 0 {
				t.Fatalf("got %d rules and no error", len(rules))
			}
			if !slices.IsSortedFunc(errs, func(a, b Error) int { return a.Line - b.Line }) {
				t.Errorf("errors not sorted by line:\n%v", errs)
			}
			got := errs.Error() + "\n"
			errFile := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(errFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\n got:\n%s\nwant:\n%s", errFile, got, want)
			}
		})
	}
}

// TestGoodRules: every example in testdata/policy/good parses and builds
// an engine.
func TestGoodRules(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "good", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no good rule files (%v)", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rules, errs := ParseRules(file, "policy.rules", ruleFileNode(t, data))
		if errs != nil {
			t.Errorf("%s:\n%v", file, errs)
			continue
		}
		if len(rules) == 0 {
			t.Errorf("%s: no rules", file)
		}
		if _, errs := NewEngine(rules, Options{}); errs != nil {
			t.Errorf("%s: NewEngine: %v", file, errs)
		}
	}
}

func TestParseFields(t *testing.T) {
	rules := parse(t, lines(
		"- name: dmarc-ish",
		"  if: { mail_from.domain: example.com, not: { tls: true } }",
		"  action: reject",
		"  reply: 550 5.7.26 Unauthenticated mail from example.com is refused",
		"  score: -1.5",
		"- name: watch",
		"  if: { header.X-Mailer: /x/ }",
		"  score: 2",
		"  mode: shadow",
		"- name: plain",
		"  if: { helo: a.example }",
		"  action: tempfail",
		"  mode: enforce",
	))
	want := []*Rule{
		{Name: "dmarc-ish", Action: ActionReject, Score: -1.5, Stage: StageMail, Facts: []string{"mail_from.domain", "tls"}, File: "test.yaml", Line: 1,
			Reply: &Reply{550, [3]int{5, 7, 26}, "Unauthenticated mail from example.com is refused", ReasonRule}},
		{Name: "watch", Score: 2, Shadow: true, Stage: StageData, Facts: []string{"header.x-mailer"}, File: "test.yaml", Line: 6},
		{Name: "plain", Action: ActionTempfail, Stage: StageHelo, Facts: []string{"helo"}, File: "test.yaml", Line: 10},
	}
	for i, r := range rules {
		if r.If == nil {
			t.Fatalf("%s: no condition", r.Name)
		}
		w := *want[i]
		w.If, w.path = r.If, r.path
		if !reflect.DeepEqual(*r, w) {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, *r, w)
		}
	}
}

// TestStageInference: a rule runs at the latest stage among its facts,
// whatever combinators hide them.
func TestStageInference(t *testing.T) {
	tests := []struct {
		cond string
		want Stage
	}{
		{`{client.ip: 192.0.2.1}`, StageConnect},
		{`{client.port: 25}`, StageConnect},
		{`{test.set: true}`, StageConnect},
		{`{helo: x.example}`, StageHelo},
		{`{not: {helo.valid: true}}`, StageHelo},
		{`{client.ip: 192.0.2.1, tls: true}`, StageHelo},
		{`{mail_from: ""}`, StageMail},
		{`{any: [{client.ip: 192.0.2.1}, {mail_from.domain: x.example}]}`, StageMail},
		{`{test.mail-set: true}`, StageMail},
		{`{rcpt: a@x.example}`, StageRcpt},
		{`{all: [{helo: x}, {not: {rcpt.domain: x.example}}]}`, StageRcpt},
		{`{size: "> 1"}`, StageData},
		{`{header.x-spam: "yes"}`, StageData},
		{`{subject: x, client.ip: 192.0.2.1}`, StageData},
		{`{message_id: x}`, StageData},
		{`{header_from.domain: x}`, StageData},
		{`{score: "> 3"}`, StageData},
	}
	for _, tt := range tests {
		r := parse(t, "[{name: t, score: 1, if: "+tt.cond+"}]")[0]
		if r.Stage != tt.want {
			t.Errorf("%s: stage %s, want %s", tt.cond, r.Stage, tt.want)
		}
	}
}

// TestParseAliases: an anchored list can be reused, and an alias bomb is
// stopped by the node budget instead of hanging the reload.
func TestParseAliases(t *testing.T) {
	rules := parse(t, lines(
		"- name: a",
		"  if: { client.ip: &nets [192.0.2.0/24, 198.51.100.0/24] }",
		"  action: accept",
		"- name: b",
		"  if: { not: { client.ip: *nets } }",
		"  score: 1",
	))
	if got := rules[1].If.String(); got != "not(client.ip: [192.0.2.0/24, 198.51.100.0/24])" {
		t.Errorf("aliased list: %s", got)
	}
	bomb := "a0: &a0 {any: [{tls: true}, {tls: false}]}\n"
	for i := 1; i <= 20; i++ {
		bomb += "a" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " {any: [*a" + strconv.Itoa(i-1) + ", *a" + strconv.Itoa(i-1) + "]}\n"
	}
	bomb += "rules: [{name: bomb, score: 1, if: *a20}]\n"
	_, errs := ParseRules("bomb.yaml", "policy.rules", ruleFileNode(t, []byte(bomb)))
	if len(errs) == 0 || !strings.Contains(errs.Error(), "expand to more than") {
		t.Errorf("alias bomb: %v", errs)
	}
}

// TestParseEmpty: no list, or an empty one, is no rules and no error.
func TestParseEmpty(t *testing.T) {
	for _, n := range []*yaml.Node{nil, node(t, "~"), node(t, "[]")} {
		if rules, errs := ParseRules("x.yaml", "policy.rules", n); rules != nil || errs != nil {
			t.Errorf("ParseRules(%v) = %v, %v", n, rules, errs)
		}
	}
}

// TestParseTopLevelPath: an included file that is only a list has the
// path "", and paths start at the index.
func TestParseTopLevelPath(t *testing.T) {
	_, errs := ParseRules("inc.yaml", "", node(t, "- {name: x, if: {helo: a}, action: nope}\n"))
	if len(errs) != 1 || errs[0].Path != "[0].action" {
		t.Errorf("errors %#v, want one at [0].action", errs)
	}
}

// TestParseErrorCap: a file of thousands of bad rules gets a bounded
// report ending in a note.
func TestParseErrorCap(t *testing.T) {
	src := strings.Repeat("- {name: x, if: {nope: 1}}\n", 500)
	_, errs := ParseRules("cap.yaml", "policy.rules", node(t, src))
	if len(errs) != maxErrors+1 || errs[len(errs)-1].Line != 0 || !strings.Contains(errs[len(errs)-1].Msg, "too many problems") {
		t.Errorf("got %d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

// TestTransactionRcptFactWithDataFact: a fact known from the RCPT stage that
// is not per recipient (as spf is) combines with DATA facts; the rule runs
// at DATA. A per-recipient fact (rcpt) does not.
func TestTransactionRcptFactWithDataFact(t *testing.T) {
	RegisterFact(FactDef{Name: "test.txn-rcpt", Kind: KindString, Stage: StageRcpt, Doc: "test: known from rcpt, per transaction"})
	rules := parse(t, lines(
		"- name: combined",
		"  if: { test.txn-rcpt: temperror, subject: x }",
		"  action: tempfail",
	))
	if rules[0].Stage != StageData {
		t.Fatalf("stage %s, want data", rules[0].Stage)
	}
	_, errs := ParseRules("t.yaml", "rules", node(t, "- name: bad\n  if: { rcpt: a@b.test, subject: x }\n  action: reject\n"))
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "no stage knows both") {
		t.Fatalf("errs %v", errs)
	}
}
