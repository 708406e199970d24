package policy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// docsFile is the operators' reference for the rule language.
const docsFile = "../docs/policy.md"

// TestFactDocs keeps the fact table in docs/policy.md in step with the
// registry: every fact this package registers has a row giving its kind
// and stage. Facts registered by checks are checked where all of them are
// linked in (docFactRows is shared for that).
func TestFactDocs(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	rows := docFactRows(string(data))
	if len(rows) == 0 {
		t.Fatalf("%s: no fact table rows (| `name` | kind | stage | meaning |)", docsFile)
	}
	for _, d := range FactDefs() {
		if strings.HasPrefix(d.Name, "test.") {
			continue
		}
		name := d.Name
		if d.family() {
			name += "<name>"
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

func TestLookupFact(t *testing.T) {
	tests := []struct {
		name, canon, def string // def "" = unknown
	}{
		{"helo", "helo", "helo"},
		{"helo.valid", "helo.valid", "helo.valid"},
		{"header.X-Mailer", "header.x-mailer", "header."},
		{"header.x-mailer", "header.x-mailer", "header."},
		{"header.", "", ""},
		{"header.a:b", "", ""},
		{"header.a b", "", ""},
		{"Header.x", "", ""},
		{"HELO", "", ""},
		{"nope", "", ""},
		{"score", "score", "score"},
	}
	for _, tt := range tests {
		canon, d, ok := canonicalFact(tt.name)
		if ok != (tt.def != "") || canon != tt.canon || d.Name != tt.def {
			t.Errorf("canonicalFact(%q) = %q, %q, %v; want %q, %q", tt.name, canon, d.Name, ok, tt.canon, tt.def)
		}
		if d2, ok2 := LookupFact(tt.name); ok2 != ok || d2 != d {
			t.Errorf("LookupFact(%q) = %v, %v; canonicalFact says %v, %v", tt.name, d2, ok2, d, ok)
		}
	}
}

// TestLongestPrefix: a family inside another family wins for its names
// (the families are registered in helpers_test.go).
func TestLongestPrefix(t *testing.T) {
	for name, want := range map[string]string{"test.fam.x": "test.fam.", "test.fam.inner.x": "test.fam.inner.", "test.fam.inner": "test.fam."} {
		if d, _ := LookupFact(name); d.Name != want {
			t.Errorf("LookupFact(%q) = %q, want %q", name, d.Name, want)
		}
	}
}

func TestRegisterFactPanics(t *testing.T) {
	tests := []FactDef{
		{"helo", KindDomain, StageHelo, "duplicate"},
		{"", KindString, StageData, "empty name"},
		{"Upper", KindString, StageData, "upper case"},
		{"a..b", KindString, StageData, "empty component"},
		{".a", KindString, StageData, "leading dot"},
		{"a b", KindString, StageData, "space"},
		{"any", KindBool, StageData, "combinator"},
		{"test.kind", "text", StageData, "unknown kind"},
		{"test.stage", KindString, "quit", "unknown stage"},
		{"test.nodoc", KindString, StageData, " "},
		{strings.Repeat("a", 65), KindString, StageData, "too long"},
	}
	for _, d := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterFact(%+v) did not panic", d)
				}
			}()
			RegisterFact(d)
		}()
	}
}

func TestFactDefsSorted(t *testing.T) {
	defs := FactDefs()
	if !slices.IsSortedFunc(defs, func(a, b FactDef) int {
		if d := stageIndex(a.Stage) - stageIndex(b.Stage); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	}) {
		t.Errorf("FactDefs not sorted by stage, then name: %v", defs)
	}
	if defs[0].Stage != StageConnect || defs[len(defs)-1].Stage != StageData {
		t.Errorf("FactDefs = %v, want connect first and data last", defs)
	}
}
