package server

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
)

// quotedRE matches RFC 5322 quoted-strings, escapes included.
var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func TestAuthResults(t *testing.T) {
	rs := []checks.Result{
		{Auth: []authres.Result{&authres.SPFResult{Value: authres.ResultPass, From: "alice@example.test", Helo: "mail.example.test"}}},
		{Auth: []authres.Result{
			&authres.GenericResult{Method: "dkim", Value: authres.ResultPass, Params: map[string]string{"header.d": "example.test", "header.s": "sel1", "header.a": "rsa-sha256"}},
			&authres.DKIMResult{Value: authres.ResultFail, Reason: `body hash did not verify`, Domain: "other.test"},
		}},
		{Auth: []authres.Result{&authres.DMARCResult{Value: authres.ResultPass, From: "example.test"}}},
	}
	want := "Authentication-Results: mx.ours.test;\r\n" +
		"\tspf=pass smtp.helo=mail.example.test smtp.mailfrom=alice@example.test;\r\n" +
		"\tdkim=pass header.a=rsa-sha256 header.d=example.test header.s=sel1;\r\n" +
		"\tdkim=fail reason=\"body hash did not verify\" header.d=other.test;\r\n" +
		"\tdmarc=pass header.from=example.test\r\n"
	if got := authResults("mx.ours.test", rs); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	if got := authResults("mx.ours.test", nil); got != "Authentication-Results: mx.ours.test;\r\n\tnone\r\n" {
		t.Fatalf("no results: %q", got)
	}
	// Whatever a client sent stays inside one quoted value.
	evil := []checks.Result{{Auth: []authres.Result{&authres.SPFResult{Value: authres.ResultNone,
		From: "x\r\nX-Injected: yes@example.test", Helo: "h\"; dmarc=pass"}}}}
	got := authResults("mx.ours.test", evil)
	outside := quotedRE.ReplaceAllString(got, `""`)
	if strings.Count(got, "\r\n") != 2 || strings.Contains(got, "\r\nX-Injected") || strings.Contains(outside, "dmarc=") {
		t.Fatalf("injection: %q", got)
	}
	id, _, ok := strings.Cut(strings.TrimPrefix(got, "Authentication-Results: "), ";")
	if !ok || id != "mx.ours.test" {
		t.Fatalf("authserv-id %q", id)
	}
	if _, results, err := authres.Parse(strings.TrimSuffix(strings.TrimPrefix(want, "Authentication-Results: "), "\r\n")); err != nil || len(results) != 4 {
		t.Fatalf("does not parse back: %v (%d results)", err, len(results))
	}
}

func TestAuthservID(t *testing.T) {
	for in, want := range map[string]string{
		" mx.ours.test; spf=pass":                    "mx.ours.test",
		" MX.OURS.TEST 1; none":                      "MX.OURS.TEST",
		" (forged (nested)) mx.ours.test; dkim=pass": "mx.ours.test",
		"\r\n\tmx.ours.test;\r\n\tdmarc=pass":        "mx.ours.test",
		" other.example; spf=pass":                   "other.example",
		" (unclosed mx.ours.test; spf=pass":          "",
		" mx.ours.test(comment); spf=pass":           "mx.ours.test",
	} {
		if got := authservID(in); got != want {
			t.Errorf("authservID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestForgedAuthResultsRemoved: fields claiming our authserv-id (in any
// case, folded, behind a comment) are removed; others stay.
func TestForgedAuthResultsRemoved(t *testing.T) {
	h := "Authentication-Results: MX.OURS.TEST; dkim=pass\r\n" +
		"Authentication-Results: (hi) mx.ours.test;\r\n\tdmarc=pass header.from=bank.test\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"Subject: s\r\n\r\n"
	got := string(rewriteHeader([]byte(h), "", "mx.ours.test"))
	if got != "Authentication-Results: other.example; spf=pass\r\nSubject: s\r\n\r\n" {
		t.Fatalf("got %q", got)
	}
}

// rewriteHeader is writeRewrittenHeader into a new buffer.
func rewriteHeader(h []byte, tag, authservid string) []byte {
	var out bytes.Buffer
	writeRewrittenHeader(&out, h, tag, authservid)
	return out.Bytes()
}
