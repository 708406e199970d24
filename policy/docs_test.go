package policy_test

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	_ "github.com/mxgate/mxgate/checks/all" // every check's facts, as in the gateway
	"github.com/mxgate/mxgate/policy"
)

const docsFile = "../docs/policy.md"

// TestFactDocs keeps the fact table of docs/policy.md complete: every fact
// registered in the gateway (core and checks) has a row with its kind and
// stage.
func TestFactDocs(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	rows := docFactRows(string(data))
	if len(rows) == 0 {
		t.Fatalf("%s: no fact table rows (| `name` | kind | stage | meaning |)", docsFile)
	}
	for _, d := range policy.FactDefs() {
		if strings.HasPrefix(d.Name, "test.") {
			continue // registered by this package's own tests
		}
		name := d.Name
		if strings.HasSuffix(name, ".") {
			name += "<name>" // a family, e.g. header.<name>
		}
		row, ok := rows[name]
		if !ok {
			t.Errorf("%s: fact %s has no row in the fact table", docsFile, name)
			continue
		}
		if row[0] != string(d.Kind) || row[1] != string(d.Stage) {
			t.Errorf("%s: fact %s: table says %s, %s; registered as %s, %s", docsFile, name, row[0], row[1], d.Kind, d.Stage)
		}
	}
}

// docFactRows maps each fact row of the table ("| `name` | kind | stage |
// meaning |") to its kind and stage.
func docFactRows(doc string) map[string][2]string {
	out := map[string][2]string{}
	for _, line := range strings.Split(doc, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		out[name] = [2]string{strings.TrimSpace(cells[2]), strings.TrimSpace(cells[3])}
	}
	return out
}

// TestDocExamples parses every YAML rule list in docs/policy.md, so the
// reference cannot show a rule that does not load.
func TestDocExamples(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, block := range strings.Split(string(data), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.HasPrefix(block, "- name:") {
			continue
		}
		n++
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
			t.Fatalf("YAML block %d: %v", i+1, err)
		}
		if _, errs := policy.ParseRules(docsFile, "policy.rules", doc.Content[0]); errs != nil {
			t.Errorf("YAML block %d:\n%s\n%v", i+1, block, errs)
		}
	}
	if n < 4 {
		t.Errorf("%s has %d rule examples, want at least 4", docsFile, n)
	}
}
