package policy

import (
	"slices"
	"strings"
	"testing"
)

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
		{Name: "helo", Kind: KindDomain, Stage: StageHelo, Doc: "duplicate"},
		{Name: "", Kind: KindString, Stage: StageData, Doc: "empty name"},
		{Name: "Upper", Kind: KindString, Stage: StageData, Doc: "upper case"},
		{Name: "a..b", Kind: KindString, Stage: StageData, Doc: "empty component"},
		{Name: ".a", Kind: KindString, Stage: StageData, Doc: "leading dot"},
		{Name: "a b", Kind: KindString, Stage: StageData, Doc: "space"},
		{Name: "any", Kind: KindBool, Stage: StageData, Doc: "combinator"},
		{Name: "test.kind", Kind: "text", Stage: StageData, Doc: "unknown kind"},
		{Name: "test.stage", Kind: KindString, Stage: "quit", Doc: "unknown stage"},
		{Name: "test.nodoc", Kind: KindString, Stage: StageData, Doc: " "},
		{Name: strings.Repeat("a", 65), Kind: KindString, Stage: StageData, Doc: "too long"},
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
