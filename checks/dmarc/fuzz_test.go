package dmarc

import (
	"strings"
	"testing"
)

// FuzzFromHeader: whatever the header section, the From identity is
// either a problem or a domain that is normalised (lower-case A-label, no
// trailing dot, stable under normDomain), and evaluating the header never
// panics and always gives one of the results and policies.
func FuzzFromHeader(f *testing.F) {
	for _, s := range []string{
		"From: a@example.test\r\n\r\n",
		"From: \"A\"\r\n <a@Example.TEST>\r\nMessage-ID: <1@x>\r\n\r\n",
		"From: a@example.test\r\nfrom: b@example.test\r\n\r\n",
		"From: a@x.test, b@y.test\r\n\r\n",
		"From: undisclosed:;\r\n\r\n",
		"From: root\n\n",
		"From: j@exämple.test\r\n\r\n",
		"From: =?windows-1252?Q?J=E9r=F4me?= <j@example.test>\r\n\r\n",
		"From: a@[192.0.2.1]\r\n\r\n",
		"garbage\r\n From: a@x.test\r\n\r\n",
		"FROM : a@x.test\r\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := scanHeader([]byte(s))
		a, problem := h.author()
		switch {
		case problem != "" && a != (author{}):
			t.Fatalf("problem %q with author %+v", problem, a)
		case problem == "" && a.domain == "":
			t.Fatalf("no problem and no domain")
		case problem == "":
			if d, ok := normDomain(a.domain); !ok || d != a.domain || d != strings.ToLower(d) || strings.HasSuffix(d, ".") || !isASCII(d) {
				t.Fatalf("From domain %q is not normalised (%q, %v)", a.domain, d, ok)
			}
			if !strings.Contains(strings.ToLower(s), "from") {
				t.Fatalf("a From identity %q without a From field", a.domain)
			}
		}
		o := Evaluate(EvalInput{Header: []byte(s), Lookup: func(string) ([]string, error) { return []string{"v=DMARC1; p=reject; pct=50"}, nil }})
		switch {
		case o.Result != Fail && o.Result != PermError:
			t.Fatalf("result %q for a domain with a record and no authentication", o.Result)
		case o.Policy != PolicyNone && o.Policy != PolicyQuarantine && o.Policy != PolicyReject:
			t.Fatalf("policy %q", o.Policy)
		case (o.Result == PermError) != (problem != ""), o.Domain != a.domain:
			t.Fatalf("Evaluate gave %s for %q, author gave %q, %q", o.Result, o.Domain, a.domain, problem)
		}
	})
}
