package dkim

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// benchBody is about 4 KiB of text, so that body hashing weighs what it
// does for an ordinary message.
var benchBody = strings.Repeat("The quick brown fox jumps over the lazy dog, then files its report.\n", 60)

// benchCase is one message for the benchmarks.
type benchCase struct {
	name string
	msg  []byte
	want string // the check's result
}

// benchCases are plain's header over benchBody signed with RSA-2048
// (rsa-sha256) and with Ed25519 (ed25519-sha256, RFC 8463),
// relaxed/relaxed, and unsigned; the keys are in a resolver that answers
// from memory, so only parsing and verification are measured.
func benchCases(b *testing.B) (*resolvertest.Fake, []benchCase) {
	b.Helper()
	rk, ek := testKeys()
	f := &resolvertest.Fake{TXT: map[string][]string{
		"sel1._domainkey.example.test": {keyRecord(b, rk)},
		"ed1._domainkey.example.test":  {keyRecord(b, ek)},
	}}
	header, _, _ := strings.Cut(string(plain), "\r\n\r\n")
	msg := crlf(header + "\n\n" + benchBody)
	return f, []benchCase{
		{"rsa-2048", goSign(b, msg, dkim.SignOptions{Domain: "example.test", Selector: "sel1", Signer: rk}), "pass"},
		{"ed25519", goSign(b, msg, dkim.SignOptions{Domain: "example.test", Selector: "ed1", Signer: ek}), "pass"},
		{"unsigned", msg, "none"},
	}
}

// BenchmarkVerify measures verifying one signature of a 4 KiB message:
// finding and parsing the DKIM-Signature field, the key lookup (from
// memory), canonicalisation, the body and header hashes and the
// public-key operation.
func BenchmarkVerify(b *testing.B) {
	f, cases := benchCases(b)
	c := New(f, Options{})
	ctx := context.Background()
	for _, tc := range cases[:2] {
		b.Run(tc.name, func(b *testing.B) {
			m := message(tc.msg)
			if sigs, err := c.verify(ctx, m); err != nil || len(sigs) != 1 || sigs[0].Result != "pass" {
				b.Fatalf("verify: %+v, %v; want one pass", sigs, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.verify(ctx, m)
			}
		})
	}
}

// BenchmarkRun measures the whole check as the session runs it on a
// 4 KiB message: verification plus the result, facts and
// Authentication-Results it reports. "unsigned" is the common case of no
// signature, which must not read the body.
func BenchmarkRun(b *testing.B) {
	f, cases := benchCases(b)
	c := New(f, Options{})
	ctx := context.Background()
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			in := checks.Input{Message: message(tc.msg)}
			if r := c.Run(ctx, in); r.Result != tc.want {
				b.Fatalf("result %q (%s), want %s", r.Result, r.Detail, tc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.Run(ctx, in)
			}
		})
	}
}
