package dmarc

import (
	"errors"
	"strings"
	"testing"
)

// TestDiscoverCachedParse: a record read again comes from the parse cache
// (the same *dmarc.Record), and every kind of TXT string keeps its
// meaning the second time: a valid record, an invalid one, a string that
// is no DMARC record, and two records at one name.
func TestDiscoverCachedParse(t *testing.T) {
	txt := map[string][]string{
		"_dmarc.good.test.":  {"v=spf1 -all", "v=DMARC1; P=Reject; pct=50"},
		"_dmarc.bad.test.":   {"v=DMARC1; p=bogus"},
		"_dmarc.other.test.": {"not a record"},
		"_dmarc.two.test.":   {"v=DMARC1; p=none", "v=DMARC1; p=reject"},
	}
	lookup := func(name string) ([]string, error) {
		if r, ok := txt[name]; ok {
			return r, nil
		}
		return nil, errors.New("unexpected query " + name)
	}
	for _, dom := range []string{"good.test", "bad.test", "other.test", "two.test"} {
		first := discover(lookup, dom, dom)
		second := discover(lookup, dom, dom)
		if first != second {
			t.Errorf("%s: first %+v, again %+v", dom, first, second)
		}
	}
	if f := discover(lookup, "good.test", "good.test"); f.rec == nil || f.rec.Policy != "reject" || percent(f.rec) != 50 {
		t.Errorf("good.test: %+v, want p=reject pct=50", f)
	}
	if f := discover(lookup, "bad.test", "bad.test"); f.result != PermError || !strings.Contains(f.detail, "_dmarc.bad.test") {
		t.Errorf("bad.test: %+v, want permerror naming the record", f)
	}
	if f := discover(lookup, "other.test", "other.test"); f.result != None || f.rec != nil {
		t.Errorf("other.test: %+v, want none", f)
	}
	if f := discover(lookup, "two.test", "two.test"); f.result != None || !strings.Contains(f.detail, "2 DMARC records") {
		t.Errorf("two.test: %+v, want none for two records", f)
	}
}
