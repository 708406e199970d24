package dkim

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// signed is plain signed four ways by one signer, all with d=example.test:
// rsa (s=sel1, the signer's default canonicalization), ed (ed25519-sha256,
// s=ed1), simple (simple/simple, i=alice@mail.example.test) and relaxed
// (relaxed/relaxed).
type signed struct{ rsa, ed, simple, relaxed []byte }

// runSignerCases runs the same cases over the messages of any signer, so
// the third party's signatures and go-msgauth's meet the same
// expectations.
func runSignerCases(t *testing.T, s signed) {
	rk, ek := testKeys()
	keys := func() *resolvertest.Fake {
		return &resolvertest.Fake{TXT: map[string][]string{
			"sel1._domainkey.example.test": {keyRecord(t, rk)},
			"ed1._domainkey.example.test":  {keyRecord(t, ek)},
		}}
	}
	tests := []struct {
		name   string
		msg    []byte
		dns    func(*resolvertest.Fake)
		want   string // the check's result and the signature's
		reason string // in Detail and the Auth reason
		sel    string // header.s
		alg    string // header.a, when checked
		id     string // header.i, when checked
	}{
		{name: "rsa", msg: s.rsa, want: "pass", sel: "sel1", alg: "rsa-sha256", id: "@example.test"},
		{name: "ed25519 (RFC 8463)", msg: s.ed, want: "pass", sel: "ed1", alg: "ed25519-sha256", id: "@example.test"},
		{name: "simple/simple with i=", msg: s.simple, want: "pass", sel: "sel1", alg: "rsa-sha256", id: "alice@mail.example.test"},
		{name: "relaxed/relaxed", msg: s.relaxed, want: "pass", sel: "sel1", alg: "rsa-sha256", id: "@example.test"},
		{name: "relaxed survives re-folding and spacing", want: "pass", sel: "sel1",
			msg: replace(t, replace(t, s.relaxed, "Subject: Lunch", "Subject:   Lunch \r\n\t"), "Lunch at noon?", "Lunch  at noon?  ")},
		{name: "simple does not survive spacing", msg: replace(t, s.simple, "Lunch at noon?", "Lunch  at noon?"), want: "fail", reason: "body hash did not verify", sel: "sel1"},
		{name: "body changed", msg: replace(t, s.rsa, "noon", "one"), want: "fail", reason: "body hash did not verify", sel: "sel1"},
		{name: "ed25519 body changed", msg: replace(t, s.ed, "noon", "one"), want: "fail", reason: "body hash did not verify", sel: "ed1"},
		{name: "signed header changed", msg: replace(t, s.rsa, "Subject: Lunch", "Subject: Dinner"), want: "fail", reason: "signature did not verify", sel: "sel1"},
		{name: "ed25519 signed header changed", msg: replace(t, s.ed, "Subject: Lunch", "Subject: Dinner"), want: "fail", reason: "signature did not verify", sel: "ed1"},
		{name: "key missing (NXDOMAIN)", msg: s.rsa, want: "permerror", reason: "no key for signature", sel: "sel1",
			dns: func(f *resolvertest.Fake) { delete(f.TXT, "sel1._domainkey.example.test") }},
		{name: "key revoked (empty p=)", msg: s.rsa, want: "permerror", reason: "key revoked", sel: "sel1",
			dns: func(f *resolvertest.Fake) { f.TXT["sel1._domainkey.example.test"] = []string{"v=DKIM1; k=rsa; p="} }},
		{name: "key of the wrong type", msg: s.rsa, want: "permerror", reason: "inappropriate key algorithm", sel: "sel1",
			dns: func(f *resolvertest.Fake) { f.TXT["sel1._domainkey.example.test"] = []string{keyRecord(t, ek)} }},
		{name: "two key records", msg: s.rsa, want: "permerror", reason: "multiple TXT records", sel: "sel1",
			dns: func(f *resolvertest.Fake) {
				f.TXT["sel1._domainkey.example.test"] = append(f.TXT["sel1._domainkey.example.test"], keyRecord(t, ek))
			}},
		{name: "key SERVFAIL", msg: s.rsa, want: "temperror", reason: "SERVFAIL", sel: "sel1",
			dns: func(f *resolvertest.Fake) { f.ServFail = map[string]bool{"sel1._domainkey.example.test": true} }},
		{name: "key lookup times out", msg: s.ed, want: "temperror", reason: "key unavailable", sel: "ed1",
			dns: func(f *resolvertest.Fake) { f.Timeout = map[string]bool{"ed1._domainkey.example.test": true} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := keys()
			if tc.dns != nil {
				tc.dns(f)
			}
			r := run(t, f, tc.msg, Options{})
			if r.Result != tc.want || r.Facts["dkim"] != tc.want {
				t.Fatalf("Result %q, dkim %v; want %q\ndetail: %s", r.Result, r.Facts["dkim"], tc.want, r.Detail)
			}
			wantDomains := []string{}
			if tc.want == "pass" {
				wantDomains = []string{"example.test"}
			}
			if got := domains(t, r); !slices.Equal(got, wantDomains) {
				t.Errorf("dkim.domains = %q, want %q", got, wantDomains)
			}
			if !strings.HasPrefix(r.Detail, "d=example.test s="+tc.sel+" ") || !strings.Contains(r.Detail, ": "+tc.want) || !strings.Contains(r.Detail, tc.reason) {
				t.Errorf("Detail %q: want d=example.test s=%s, %s and %q", r.Detail, tc.sel, tc.want, tc.reason)
			}
			if len(r.Auth) != 1 {
				t.Fatalf("Auth has %d results, want 1", len(r.Auth))
			}
			g := generic(t, r, 0)
			if string(g.Value) != tc.want || g.Params["header.d"] != "example.test" || g.Params["header.s"] != tc.sel ||
				!strings.Contains(g.Params["reason"], tc.reason) || (tc.want == "pass") != (g.Params["reason"] == "") {
				t.Errorf("Auth = %v %v", g.Value, g.Params)
			}
			if tc.alg != "" && g.Params["header.a"] != tc.alg {
				t.Errorf("header.a = %q, want %q", g.Params["header.a"], tc.alg)
			}
			if tc.id != "" && g.Params["header.i"] != tc.id {
				t.Errorf("header.i = %q, want %q", g.Params["header.i"], tc.id)
			}
		})
	}
}

func TestGoSigner(t *testing.T) {
	rk, ek := testKeys()
	runSignerCases(t, signed{
		rsa: goSign(t, plain, dkim.SignOptions{Domain: "example.test", Selector: "sel1", Signer: rk,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationSimple}),
		ed: goSign(t, plain, dkim.SignOptions{Domain: "example.test", Selector: "ed1", Signer: ek}),
		simple: goSign(t, plain, dkim.SignOptions{Domain: "example.test", Selector: "sel1", Signer: rk, Identifier: "alice@mail.example.test",
			HeaderCanonicalization: dkim.CanonicalizationSimple, BodyCanonicalization: dkim.CanonicalizationSimple}),
		relaxed: goSign(t, plain, dkim.SignOptions{Domain: "example.test", Selector: "sel1", Signer: rk}),
	})
}
