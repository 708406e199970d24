package dkim

import (
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

func TestBest(t *testing.T) {
	for _, tc := range []struct {
		results []string
		want    string
	}{
		{nil, "none"},
		{[]string{"neutral"}, "neutral"},
		{[]string{"permerror", "neutral"}, "permerror"},
		{[]string{"permerror", "fail"}, "fail"},
		// A temperror may pass on retry: a fail elsewhere must not hide it.
		{[]string{"fail", "temperror", "permerror"}, "temperror"},
		{[]string{"fail", "temperror", "pass"}, "pass"},
		{[]string{"pass", "neutral"}, "pass"},
		{[]string{"", "bogus"}, "none"},
	} {
		var sigs []Signature
		for _, r := range tc.results {
			sigs = append(sigs, Signature{Result: r})
		}
		if got := best(sigs); got != tc.want {
			t.Errorf("best(%q) = %q, want %q", tc.results, got, tc.want)
		}
	}
}

func TestSignatures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		want   []Signature
	}{
		{"none", "From: a@example.test\r\n\r\n", nil},
		{"folded, tags in any order",
			"From: a\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n\td=Example.TEST; s=sel1;\r\n h=from; bh=x; b=y\r\nTo: b\r\n\r\n",
			[]Signature{{Domain: "example.test", Selector: "sel1", Algorithm: "rsa-sha256", Identifier: "@example.test"}}},
		{"name in any case, space before the colon",
			"dkim-signature : d=a.test; s=x; i=joe@sub.a.test; l=10; a=ed25519-sha256\r\n\r\n",
			[]Signature{{Domain: "a.test", Selector: "x", Algorithm: "ed25519-sha256", Identifier: "joe@sub.a.test", BodyLimited: true}}},
		{"white space inside values", "DKIM-Signature: d= exa\r\n mple.test ; s = s 1\r\n\r\n",
			[]Signature{{Domain: "example.test", Selector: "s1", Identifier: "@example.test"}}},
		{"first of a duplicated tag", "DKIM-Signature: d=one.test; d=two.test; s=a; s=b\r\n\r\n",
			[]Signature{{Domain: "one.test", Selector: "a", Identifier: "@one.test"}}},
		{"tag names are case-sensitive", "DKIM-Signature: D=one.test; S=a\r\n\r\n", []Signature{{}}},
		{"garbage is still a signature", "DKIM-Signature: \x00\xff;;=;\r\n\r\n", []Signature{{}}},
		{"two, in order", "DKIM-Signature: d=one.test\r\nX: y\r\nDKIM-Signature: d=two.test\r\n\r\n",
			[]Signature{{Domain: "one.test", Identifier: "@one.test"}, {Domain: "two.test", Identifier: "@two.test"}}},
		{"not another field", "X-DKIM-Signature: d=a.test\r\nDKIM-Signature-X: d=b.test\r\n\r\n", nil},
		{"not in the body", "From: a\r\n\r\nDKIM-Signature: d=a.test\r\n", nil},
		{"LF line ends", "From: a\nDKIM-Signature: d=a.test;\n\ts=s\n\n", []Signature{{Domain: "a.test", Selector: "s", Identifier: "@a.test"}}},
		{"no empty line", "DKIM-Signature: d=a.test", []Signature{{Domain: "a.test", Identifier: "@a.test"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Signatures([]byte(tc.header)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Signatures(%q)\n got %+v\nwant %+v", tc.header, got, tc.want)
			}
		})
	}
}

// authres.Format prints the parameters sorted by name after reason, so
// the header field is the same every time, header.s included.
func TestAuthFormat(t *testing.T) {
	_, ek := testKeys()
	msg := goSign(t, plain, dkim.SignOptions{Domain: "example.test", Selector: "ed1", Signer: ek, Identifier: "alice@example.test"})
	f := edFake(t)
	pass := run(t, f, msg, Options{})
	fail := run(t, f, replace(t, msg, "noon", "one"), Options{})
	want := "mx.test; dkim=pass header.a=ed25519-sha256 header.d=example.test header.i=alice@example.test header.s=ed1" +
		`; dkim=fail reason="body hash did not verify" header.a=ed25519-sha256 header.d=example.test header.i=alice@example.test header.s=ed1`
	for range 20 {
		if got := authres.Format("mx.test", append(pass.Auth, fail.Auth...)); got != want {
			t.Fatalf("Format\n got %s\nwant %s", got, want)
		}
	}
}

// Tag values reach Authentication-Results without anything that could end
// a quoted string early or break the header field; Detail keeps them.
func TestAuthSafe(t *testing.T) {
	field := "DKIM-Signature: v=1; a=rsa-sha256\\\"x; d=exämple.test; s=a\\\"\x01b; i=\"@exämple.test; h=from; bh=x; b=y\r\n"
	r := run(t, &resolvertest.Fake{}, append([]byte(field), plain...), Options{})
	g := generic(t, r, 0)
	for k, v := range g.Params {
		if strings.ContainsAny(v, "\"\\\x01\r\n") || strings.ContainsFunc(v, func(r rune) bool { return r > '~' }) {
			t.Errorf("%s = %q", k, v)
		}
	}
	if g.Params["header.s"] != "a???b" || g.Params["header.d"] != "ex?mple.test" {
		t.Errorf("Params %q", g.Params)
	}
	if !strings.HasPrefix(r.Detail, "d=exämple.test s=a\\\"\x01b ") {
		t.Errorf("Detail %q", r.Detail)
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc..."},
		{"aé", 2, "a..."}, // not inside the two octets of é
	} {
		if got := truncate(tc.s, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
