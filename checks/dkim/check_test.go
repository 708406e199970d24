package dkim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/policy"
)

// edFake publishes the Ed25519 test key at ed1._domainkey.example.test.
func edFake(t testing.TB) *resolvertest.Fake {
	t.Helper()
	_, ek := testKeys()
	return &resolvertest.Fake{TXT: map[string][]string{"ed1._domainkey.example.test": {keyRecord(t, ek)}}}
}

// edSign signs msg with the Ed25519 test key as d=example.test.
func edSign(t testing.TB, msg []byte, selector string) []byte {
	t.Helper()
	_, ek := testKeys()
	return goSign(t, msg, dkim.SignOptions{Domain: "example.test", Selector: selector, Signer: ek})
}

func TestFactsRegistered(t *testing.T) {
	for name, kind := range map[string]policy.Kind{"dkim": policy.KindString, "dkim.domains": policy.KindSet} {
		d, ok := policy.LookupFact(name)
		if !ok || d.Kind != kind || d.Stage != policy.StageData {
			t.Errorf("fact %s: %+v, %v", name, d, ok)
		}
	}
	c := New(&resolvertest.Fake{}, Options{})
	if c.Name() != "dkim" || c.Stage() != policy.StageData {
		t.Errorf("Name %q, Stage %q", c.Name(), c.Stage())
	}
}

func TestNoMessage(t *testing.T) {
	r := New(&resolvertest.Fake{}, Options{}).Run(context.Background(), checks.Input{})
	if r.Result != "none" || r.Facts != nil || r.Auth != nil {
		t.Fatalf("%+v", r)
	}
}

func TestUnsigned(t *testing.T) {
	f := &resolvertest.Fake{}
	r := run(t, f, plain, Options{})
	if r.Result != "none" || r.Facts["dkim"] != "none" || len(domains(t, r)) != 0 || r.Detail != "no signature" {
		t.Fatalf("%+v", r)
	}
	if g := generic(t, r, 0); len(r.Auth) != 1 || g.Value != authres.ResultNone {
		t.Errorf("Auth = %v", r.Auth)
	}
}

// Six signatures with the default limit: the first five in header order
// (the last five added) are verified, the sixth is reported, not checked.
func TestMaxSignatures(t *testing.T) {
	msg := plain
	for i := 1; i <= 6; i++ {
		msg = edSign(t, msg, fmt.Sprintf("s%d", i))
	}
	f := edFake(t)
	for i := 1; i <= 6; i++ {
		f.TXT[fmt.Sprintf("s%d._domainkey.example.test", i)] = f.TXT["ed1._domainkey.example.test"]
	}
	r := run(t, f, msg, Options{})
	if r.Result != "pass" || len(r.Auth) != 6 {
		t.Fatalf("Result %q, %d Auth results\n%s", r.Result, len(r.Auth), r.Detail)
	}
	lines := strings.Split(r.Detail, "; ")
	for i, l := range lines[:5] {
		if want := fmt.Sprintf("d=example.test s=s%d ed25519-sha256: pass", 6-i); l != want {
			t.Errorf("line %d = %q, want %q", i, l, want)
		}
	}
	if want := "d=example.test s=s1 ed25519-sha256: neutral (not verified: limit of 5 signatures)"; lines[5] != want {
		t.Errorf("sixth line = %q, want %q", lines[5], want)
	}
	if g := generic(t, r, 5); g.Value != authres.ResultNeutral || g.Params["header.s"] != "s1" {
		t.Errorf("sixth Auth = %v %v", g.Value, g.Params)
	}
	if q := f.Queries("s1._domainkey.example.test", "TXT"); q != 0 {
		t.Errorf("the sixth key was looked up %d times", q)
	}

	// A smaller limit; and only unverified signatures left after fails.
	r = run(t, f, msg, Options{MaxSignatures: 2})
	if got := strings.Count(r.Detail, "neutral"); got != 4 || r.Result != "pass" {
		t.Errorf("MaxSignatures 2: %d neutral, result %q\n%s", got, r.Result, r.Detail)
	}
}

// More signatures than are listed one by one still make one Detail line
// saying how many more there were.
func TestManySignaturesListed(t *testing.T) {
	var b bytes.Buffer
	for i := range maxListed + 3 {
		fmt.Fprintf(&b, "DKIM-Signature: v=1; a=rsa-sha256; d=x%d.example; s=s; h=from; bh=; b=\r\n", i)
	}
	b.Write(plain)
	r := run(t, &resolvertest.Fake{}, b.Bytes(), Options{})
	if len(r.Auth) != maxListed || !strings.HasSuffix(r.Detail, "; 3 more signatures not verified and not listed") {
		t.Errorf("%d Auth results, detail ends %q", len(r.Auth), r.Detail[max(0, len(r.Detail)-80):])
	}
	if r.Result != "permerror" { // the five verified have no key
		t.Errorf("Result %q", r.Result)
	}
}

// signWithLength signs msg like a signer that adds l= would (relaxed
// header, simple body, Ed25519), covering the first n octets of the body,
// or the whole body without l= when n < 0. go-msgauth cannot sign with l=.
func signWithLength(t *testing.T, msg []byte, n int) []byte {
	_, ek := testKeys()
	head, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		t.Fatal("no body")
	}
	head = append(head, "\r\n"...)
	tags := "v=1; a=ed25519-sha256; c=relaxed/simple; d=example.test; s=ed1; h=from:subject;"
	covered := body
	if n >= 0 {
		tags += fmt.Sprintf(" l=%d;", n)
		covered = body[:n]
	}
	bh := sha256.Sum256(covered)
	field := "DKIM-Signature: " + tags + " bh=" + base64.StdEncoding.EncodeToString(bh[:]) + "; b="
	h := sha256.New()
	for _, name := range []string{"from", "subject"} {
		m := regexp.MustCompile(`(?im)^` + name + `:.*\r\n([ \t].*\r\n)*`).Find(head)
		io.WriteString(h, relaxedHeader(string(m))+"\r\n")
	}
	io.WriteString(h, relaxedHeader(field))
	sig := ed25519.Sign(ek, h.Sum(nil))
	return append([]byte(field+base64.StdEncoding.EncodeToString(sig)+"\r\n"), msg...)
}

// relaxedHeader is RFC 6376 §3.4.2 for one field, without the final CRLF.
func relaxedHeader(f string) string {
	name, value, _ := strings.Cut(f, ":")
	value = strings.Join(strings.Fields(strings.NewReplacer("\r\n", "").Replace(value)), " ")
	return strings.ToLower(strings.TrimSpace(name)) + ":" + value
}

// go-msgauth refuses every l= signature (RFC 6376 §8.1: appended content
// is not covered), even a good one; the result says so.
func TestBodyLength(t *testing.T) {
	f := edFake(t)
	// The hand-made signer is right: without l= it passes.
	if r := run(t, f, signWithLength(t, plain, -1), Options{}); r.Result != "pass" {
		t.Fatalf("hand-made signature without l=: %s", r.Detail)
	}
	body := len(plain) - bytes.Index(plain, []byte("\r\n\r\n")) - 4
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"whole body", signWithLength(t, plain, body)},
		{"content appended", append(signWithLength(t, plain, body), "Click here: http://evil.example/\r\n"...)},
		{"part of the body", signWithLength(t, plain, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := Signatures(message(tc.msg).Header())
			if len(sigs) != 1 || !sigs[0].BodyLimited {
				t.Fatalf("Signatures = %+v, want one BodyLimited", sigs)
			}
			r := run(t, f, tc.msg, Options{})
			want := "d=example.test s=ed1 ed25519-sha256: fail (l= body length limit not accepted (message contains an insecure body length tag))"
			if r.Result != "fail" || r.Detail != want {
				t.Errorf("Result %q, Detail\n got %s\nwant %s", r.Result, r.Detail, want)
			}
		})
	}
}

// A message without a body need not have the empty line (RFC 5322 §3.5);
// go-msgauth needs it, so the check adds it.
func TestHeaderOnly(t *testing.T) {
	f := edFake(t)
	signed := edSign(t, crlf("From: a@example.test\nSubject: x\n\n"), "ed1")
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"with the empty line", signed},
		{"without it", bytes.TrimSuffix(signed, []byte("\r\n"))},
		{"without the last CRLF", bytes.TrimSuffix(signed, []byte("\r\n\r\n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := run(t, f, tc.msg, Options{}); r.Result != "pass" {
				t.Errorf("%q: %s %s", tc.msg[len(tc.msg)-20:], r.Result, r.Detail)
			}
		})
	}
}

// errMessage fails while being read.
type errMessage struct{ message }

func (m errMessage) Open() io.Reader {
	return io.MultiReader(bytes.NewReader(m.message[:len(m.Header())-2]), iotestErr{})
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestUnreadable(t *testing.T) {
	msg := edSign(t, plain, "ed1")
	r := New(edFake(t), Options{}).Run(context.Background(), checks.Input{Message: errMessage{message(msg)}})
	if r.Result != "permerror" || r.Facts["dkim"] != "permerror" || !strings.Contains(r.Detail, "disk on fire") {
		t.Fatalf("%+v", r)
	}
	if g := generic(t, r, 0); g.Value != authres.ResultPermError || !strings.Contains(g.Params["reason"], "disk on fire") {
		t.Errorf("Auth %v %v", g.Value, g.Params)
	}
}

// A signature go-msgauth cannot parse is a permerror, listed with what
// could be read.
func TestMalformedSignature(t *testing.T) {
	for _, tc := range []struct{ name, field, reason string }{
		{"no version", "DKIM-Signature: a=rsa-sha256; d=Example.TEST; s=sel; h=from; bh=x; b=y", "incompatible signature version"},
		{"garbage", "DKIM-Signature: d=example.test; what is this", "malformed signature tags"},
		{"duplicate tag", "DKIM-Signature: v=1; d=example.test; d=other.test; s=sel", "duplicate tag"},
		{"missing tags", "DKIM-Signature: v=1; d=example.test; s=sel", "missing required tag"},
		{"rsa-sha1 (RFC 8301)", "DKIM-Signature: v=1; a=rsa-sha1; d=example.test; s=sel; h=from; bh=x; b=y", "hash algorithm too weak"},
		{"From not signed", "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel; h=subject; bh=x; b=y", "From field not signed"},
		{"expired", "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel; h=from; bh=x; b=y; x=1000", "signature has expired"},
		{"i= outside d=", "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel; i=@evil.test; h=from; bh=x; b=y", "domain mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rk, _ := testKeys()
			f := &resolvertest.Fake{TXT: map[string][]string{"sel._domainkey.example.test": {keyRecord(t, rk)}}}
			r := run(t, f, append([]byte(tc.field+"\r\n"), plain...), Options{})
			if r.Result != "permerror" || !strings.HasPrefix(r.Detail, "d=example.test ") || !strings.Contains(r.Detail, tc.reason) {
				t.Errorf("Result %q, Detail %q; want permerror, d=example.test, %q", r.Result, r.Detail, tc.reason)
			}
		})
	}
}

// recorder records the names looked up.
type recorder struct {
	*resolvertest.Fake
	mu    sync.Mutex
	names []string
}

func (r *recorder) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.mu.Lock()
	r.names = append(r.names, name)
	r.mu.Unlock()
	return r.Fake.LookupTXT(ctx, name)
}

// Key names are made absolute, so a resolver's search list never applies.
func TestLookupNamesAbsolute(t *testing.T) {
	rec := &recorder{Fake: edFake(t)}
	r := New(rec, Options{}).Run(context.Background(), checks.Input{Message: message(edSign(t, plain, "ed1"))})
	if r.Result != "pass" || !slices.Equal(rec.names, []string{"ed1._domainkey.example.test."}) {
		t.Errorf("Result %q, names %q", r.Result, rec.names)
	}
}

// The caller's deadline bounds the lookups: a cancelled transaction gives
// temperror, never a hang or a permerror.
func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := New(edFake(t), Options{}).Run(ctx, checks.Input{Message: message(edSign(t, plain, "ed1"))})
	if r.Result != "temperror" {
		t.Errorf("Result %q: %s", r.Result, r.Detail)
	}
}
