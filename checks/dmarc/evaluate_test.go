package dmarc

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// hdr builds a header section from lines, with CRLF and the blank line.
func hdr(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
}

// fromHdr is a header with the given From value and a fixed Message-ID.
func fromHdr(from string) []byte {
	return hdr("Received: by mx.example.test", "From: "+from, "To: rcpt@gw.test", "Message-ID: <1@example.test>", "Subject: hi")
}

// over answers lookups from a Fake, as Run does from the resolver.
func over(f *resolvertest.Fake) LookupTXT {
	return func(name string) ([]string, error) { return f.LookupTXT(context.Background(), name) }
}

const (
	reject     = "v=DMARC1; p=reject"
	quarantine = "v=DMARC1; p=quarantine"
)

func TestEvaluate(t *testing.T) {
	type in struct {
		header    []byte // default fromHdr("a@example.test")
		spf       string
		spfDomain string
		dkim      []string
		txt       map[string][]string
		servfail  []string
	}
	tests := []struct {
		name string
		in   in
		// wants; detail is a substring, domain "" = unset
		result, policy, domain, at, detail string
	}{
		// Alignment: SPF.
		{name: "spf relaxed aligned", in: in{spf: "pass", spfDomain: "bounce.example.test", txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Pass, policy: PolicyNone, domain: "example.test", at: "example.test", detail: "spf pass bounce.example.test aligned"},
		{name: "spf relaxed aligned across a multi-label suffix", in: in{header: fromHdr("a@news.example.co.uk"), spf: "pass", spfDomain: "bounce.example.co.uk", txt: map[string][]string{"_dmarc.example.co.uk": {reject}}},
			result: Pass, policy: PolicyNone, domain: "news.example.co.uk", at: "example.co.uk"},
		{name: "spf relaxed, other org under the same suffix", in: in{header: fromHdr("a@example.co.uk"), spf: "pass", spfDomain: "evil.co.uk", txt: map[string][]string{"_dmarc.example.co.uk": {reject}}},
			result: Fail, policy: PolicyReject, domain: "example.co.uk", detail: "spf pass evil.co.uk not aligned"},
		{name: "spf strict, subdomain does not align", in: in{spf: "pass", spfDomain: "bounce.example.test", txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; aspf=s"}}},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "spf pass bounce.example.test not aligned (aspf=s)"},
		{name: "spf strict, same domain in another spelling", in: in{spf: "pass", spfDomain: "EXAMPLE.test.", txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; aspf=s"}}},
			result: Pass, policy: PolicyNone, domain: "example.test"},
		{name: "spf fail on the aligned domain", in: in{spf: "fail", spfDomain: "example.test", txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "from example.test (org example.test) record _dmarc.example.test p=reject: fail (spf fail example.test; dkim none): policy reject"},
		{name: "spf pass, other domain", in: in{spf: "pass", spfDomain: "other.test", txt: map[string][]string{"_dmarc.example.test": {quarantine}}},
			result: Fail, policy: PolicyQuarantine, domain: "example.test", detail: "spf pass other.test not aligned"},
		{name: "spf did not run", in: in{txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "(spf none; dkim none)"},

		// Alignment: DKIM.
		{name: "dkim relaxed aligned", in: in{dkim: []string{"mail.example.test"}, txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Pass, policy: PolicyNone, domain: "example.test", detail: "dkim pass mail.example.test aligned"},
		{name: "dkim strict, subdomain does not align", in: in{dkim: []string{"mail.example.test"}, txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; adkim=s"}}},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "not aligned (adkim=s)"},
		{name: "dkim strict aligned", in: in{dkim: []string{"example.test"}, txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; adkim=s"}}},
			result: Pass, policy: PolicyNone, domain: "example.test"},
		{name: "dkim any of several aligns", in: in{dkim: []string{"esp.test", "example.test"}, txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Pass, policy: PolicyNone, domain: "example.test", detail: "dkim pass esp.test,example.test aligned"},
		{name: "dkim other domain only", in: in{dkim: []string{"esp.test"}, txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "dkim pass esp.test not aligned"},
		{name: "dkim private suffix: siblings are different orgs", in: in{header: fromHdr("a@foo.blogspot.com"), dkim: []string{"bar.blogspot.com", "blogspot.com"}, txt: map[string][]string{"_dmarc.foo.blogspot.com": {reject}}},
			result: Fail, policy: PolicyReject, domain: "foo.blogspot.com"},
		{name: "spf fails but dkim aligns", in: in{spf: "fail", spfDomain: "example.test", dkim: []string{"example.test"}, txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Pass, policy: PolicyNone, domain: "example.test"},

		// Subdomains, sp and the Organizational Domain fallback.
		{name: "subdomain uses sp", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; sp=quarantine"}}},
			result: Fail, policy: PolicyQuarantine, domain: "sub.example.test", at: "example.test", detail: "from sub.example.test (org example.test) record _dmarc.example.test sp=quarantine: fail"},
		{name: "subdomain without sp uses p", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, domain: "sub.example.test", at: "example.test", detail: "record _dmarc.example.test p=reject"},
		{name: "subdomain with its own record uses its p", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.sub.example.test": {"v=DMARC1; p=none"}, "_dmarc.example.test": {"v=DMARC1; p=reject; sp=reject"}}},
			result: Fail, policy: PolicyNone, domain: "sub.example.test", at: "sub.example.test"},
		{name: "organizational domain itself ignores sp", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=quarantine; sp=reject"}}},
			result: Fail, policy: PolicyQuarantine, domain: "example.test"},
		{name: "deep subdomain falls back to the org, not the parent", in: in{header: fromHdr("a@x.y.example.test"), txt: map[string][]string{"_dmarc.y.example.test": {reject}}},
			result: None, policy: PolicyNone, domain: "x.y.example.test", detail: "no DMARC record"},
		{name: "non-DMARC TXT at the first name is ignored", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.sub.example.test": {"v=spf1 -all", "v=DMARC2; p=none", "p=none; v=DMARC1"}, "_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, at: "example.test", domain: "sub.example.test"},

		// pct (the sampling itself is TestSampling's).
		{name: "pct=0 relaxes reject to quarantine", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; pct=0"}}},
			result: Fail, policy: PolicyQuarantine, domain: "example.test", detail: "p=reject pct=0 not sampled: fail"},
		{name: "pct=0 relaxes quarantine to none", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=quarantine; pct=0"}}},
			result: Fail, policy: PolicyNone, domain: "example.test"},
		{name: "pct=100 applies", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; pct=100"}}},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "p=reject: fail"},
		{name: "pct on sp", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=none; sp=reject; pct=0"}}},
			result: Fail, policy: PolicyQuarantine, domain: "sub.example.test", detail: "sp=reject pct=0 not sampled"},
		{name: "pct does not matter on pass", in: in{dkim: []string{"example.test"}, txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; pct=0"}}},
			result: Pass, policy: PolicyNone, domain: "example.test"},
		{name: "p=none fail", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=none; pct=10"}}},
			result: Fail, policy: PolicyNone, domain: "example.test", detail: "p=none: fail"},

		// Discovery.
		{name: "no record", in: in{spf: "pass", spfDomain: "example.test"},
			result: None, policy: PolicyNone, domain: "example.test", detail: "from example.test (org example.test): no DMARC record"},
		{name: "no record at either name", in: in{header: fromHdr("a@sub.example.test")},
			result: None, policy: PolicyNone, domain: "sub.example.test"},
		{name: "servfail at the first name", in: in{txt: map[string][]string{"_dmarc.example.test": {reject}}, servfail: []string{"_dmarc.example.test"}},
			result: TempError, policy: PolicyNone, domain: "example.test", detail: "_dmarc.example.test: SERVFAIL"},
		{name: "servfail at the first name stops discovery", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.example.test": {reject}}, servfail: []string{"_dmarc.sub.example.test"}},
			result: TempError, policy: PolicyNone, domain: "sub.example.test", detail: "_dmarc.sub.example.test: SERVFAIL"},
		{name: "servfail at the org name", in: in{header: fromHdr("a@sub.example.test"), servfail: []string{"_dmarc.example.test"}},
			result: TempError, policy: PolicyNone, domain: "sub.example.test", detail: "_dmarc.example.test: SERVFAIL"},
		{name: "servfail at the org name is not asked when the first has a record", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.sub.example.test": {reject}}, servfail: []string{"_dmarc.example.test"}},
			result: Fail, policy: PolicyReject, domain: "sub.example.test"},
		{name: "two records: no policy", in: in{txt: map[string][]string{"_dmarc.example.test": {reject, "v=DMARC1; p=none"}}},
			result: None, policy: PolicyNone, domain: "example.test", detail: "2 DMARC records at _dmarc.example.test: no policy applies"},
		{name: "two records at the first name: no fallback", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.sub.example.test": {reject, reject}, "_dmarc.example.test": {reject}}},
			result: None, policy: PolicyNone, domain: "sub.example.test", detail: "2 DMARC records at _dmarc.sub.example.test"},
		{name: "two records, one of them not DMARC", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=spf1 -all", reject}}},
			result: Fail, policy: PolicyReject, domain: "example.test"},
		{name: "invalid policy word", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=bogus"}}},
			result: PermError, policy: PolicyNone, domain: "example.test", detail: "invalid DMARC record at _dmarc.example.test: invalid policy for parameter 'p'"},
		{name: "no p", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; rua=mailto:d@example.test"}}},
			result: PermError, policy: PolicyNone, domain: "example.test", detail: "missing a 'p' parameter"},
		{name: "pct out of range", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; pct=150"}}},
			result: PermError, policy: PolicyNone, domain: "example.test"},
		{name: "invalid record at the first name: no fallback", in: in{header: fromHdr("a@sub.example.test"), txt: map[string][]string{"_dmarc.sub.example.test": {"v=DMARC1; p=reject; junk"}, "_dmarc.example.test": {reject}}},
			result: PermError, policy: PolicyNone, domain: "sub.example.test", detail: "_dmarc.sub.example.test"},
		{name: "tags and policy words in any case", in: in{txt: map[string][]string{"_dmarc.example.test": {"V=DMARC1; P=Reject; ASPF=S; rua=mailto:D@example.test"}}, spf: "pass", spfDomain: "b.example.test"},
			result: Fail, policy: PolicyReject, domain: "example.test", detail: "(aspf=s)"},
		{name: "leading whitespace and no space after separators", in: in{txt: map[string][]string{"_dmarc.example.test": {"  v = DMARC1;p=quarantine;"}}},
			result: Fail, policy: PolicyQuarantine, domain: "example.test"},
		{name: "version is case-sensitive", in: in{txt: map[string][]string{"_dmarc.example.test": {"v=dmarc1; p=reject"}}},
			result: None, policy: PolicyNone, domain: "example.test"},

		// The From domain.
		{name: "IDN From domain", in: in{header: fromHdr("Jörg <j@EXÄMPLE.test>"), dkim: []string{"xn--exmple-cua.test"}, txt: map[string][]string{"_dmarc.xn--exmple-cua.test": {reject}}},
			result: Pass, policy: PolicyNone, domain: "xn--exmple-cua.test"},
		{name: "IDN signer, A-label From", in: in{header: fromHdr("j@mail.xn--exmple-cua.test"), dkim: []string{"exämple.test"}, txt: map[string][]string{"_dmarc.xn--exmple-cua.test": {reject}}},
			result: Pass, policy: PolicyNone, domain: "mail.xn--exmple-cua.test"},
		{name: "folded From, upper-case domain", in: in{header: hdr("FROM: \"Some One\"\r\n\t<one@Example.TEST>", "Message-ID: <x@y>"), txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, domain: "example.test"},
		{name: "public suffix From domain is its own org", in: in{header: fromHdr("a@co.uk"), dkim: []string{"example.co.uk"}, txt: map[string][]string{"_dmarc.co.uk": {reject}}},
			result: Fail, policy: PolicyReject, domain: "co.uk", detail: "from co.uk (org co.uk)"},
		{name: "no From", in: in{header: hdr("To: a@b.test", "Subject: x")},
			result: PermError, policy: PolicyNone, detail: "no From header"},
		{name: "two From fields", in: in{header: hdr("From: a@example.test", "Subject: x", "from: b@example.test")},
			result: PermError, policy: PolicyNone, detail: "2 From headers"},
		{name: "two addresses", in: in{header: fromHdr("a@example.test, b@other.test")},
			result: PermError, policy: PolicyNone, detail: "From with 2 addresses"},
		{name: "group of two", in: in{header: fromHdr("team: a@example.test, b@example.test;")},
			result: PermError, policy: PolicyNone, detail: "From with 2 addresses"},
		{name: "empty group", in: in{header: fromHdr("undisclosed:;")},
			result: PermError, policy: PolicyNone, detail: "From with no address"},
		{name: "no domain", in: in{header: fromHdr("MAILER-DAEMON")},
			result: PermError, policy: PolicyNone, detail: "From address has no domain"},
		{name: "unparsable", in: in{header: fromHdr("x@y.test <x@y.test>")},
			result: PermError, policy: PolicyNone, detail: "unparsable From"},
		{name: "address literal", in: in{header: fromHdr("a@[192.0.2.1]")},
			result: PermError, policy: PolicyNone, detail: "address literal"},
		{name: "empty From", in: in{header: hdr("From:   ", "To: a@b.test")},
			result: PermError, policy: PolicyNone, detail: "empty From"},

		// A fail that rests on a DNS failure.
		{name: "spf temperror on the aligned domain", in: in{spf: "temperror", spfDomain: "example.test", txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: TempError, policy: PolicyNone, domain: "example.test", detail: "aligned SPF could not be evaluated"},
		{name: "spf temperror, p=none stays fail", in: in{spf: "temperror", spfDomain: "example.test", txt: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=none"}}},
			result: Fail, policy: PolicyNone, domain: "example.test"},
		{name: "spf temperror on another domain", in: in{spf: "temperror", spfDomain: "other.test", txt: map[string][]string{"_dmarc.example.test": {reject}}},
			result: Fail, policy: PolicyReject, domain: "example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &resolvertest.Fake{TXT: tt.in.txt, ServFail: map[string]bool{}}
			for _, n := range tt.in.servfail {
				f.ServFail[n] = true
			}
			h := tt.in.header
			if h == nil {
				h = fromHdr("a@example.test")
			}
			o := Evaluate(EvalInput{Header: h, SPF: tt.in.spf, SPFDomain: tt.in.spfDomain, DKIMDomains: tt.in.dkim, DKIM: dkimResult(tt.in.dkim), Lookup: over(f)})
			if o.Result != tt.result || o.Policy != tt.policy || o.Domain != tt.domain {
				t.Errorf("got %s/%s domain %q, want %s/%s domain %q (%s)", o.Result, o.Policy, o.Domain, tt.result, tt.policy, tt.domain, o.Detail)
			}
			if tt.at != "" && o.RecordDomain != tt.at {
				t.Errorf("record at %q, want %q", o.RecordDomain, tt.at)
			}
			if (o.Record != nil) != (o.Result == Pass || o.Result == Fail || o.Result == TempError && strings.Contains(o.Detail, "SPF")) {
				t.Errorf("Record %v with result %s", o.Record, o.Result)
			}
			if !strings.Contains(o.Detail, tt.detail) {
				t.Errorf("detail %q, want it to contain %q", o.Detail, tt.detail)
			}
		})
	}
}

func dkimResult(domains []string) string {
	if len(domains) > 0 {
		return "pass"
	}
	return ""
}

// TestSampling: pct picks the same messages every time, about pct% of
// them, keyed on the Message-ID or, without one, the rest of the header.
func TestSampling(t *testing.T) {
	f := &resolvertest.Fake{TXT: map[string][]string{"_dmarc.example.test": {"v=DMARC1; p=reject; pct=50"}}}
	eval := func(h []byte) Outcome { return Evaluate(EvalInput{Header: h, Lookup: over(f)}) }
	withID := func(i int) []byte {
		return hdr("From: a@example.test", fmt.Sprintf("Message-ID: <%d.abc@example.test>", i))
	}
	withDate := func(i int) []byte {
		return hdr("From: a@example.test", fmt.Sprintf("Date: Mon, 1 Jan 2024 00:%02d:%02d +0000", i/60%60, i%60), fmt.Sprintf("X-Seq: %d", i/3600))
	}
	for name, gen := range map[string]func(int) []byte{"message-id": withID, "fallback": withDate} {
		t.Run(name, func(t *testing.T) {
			n := 0
			for i := range 1000 {
				o := eval(gen(i))
				if again := eval(gen(i)); again.Policy != o.Policy || again.Sampled != o.Sampled {
					t.Fatalf("message %d: %v then %v", i, o.Sampled, again.Sampled)
				}
				switch {
				case o.Result != Fail:
					t.Fatalf("message %d: %s", i, o.Result)
				case o.Sampled && o.Policy == PolicyReject:
					n++
				case !o.Sampled && o.Policy == PolicyQuarantine:
				default:
					t.Fatalf("message %d: sampled %v, policy %s", i, o.Sampled, o.Policy)
				}
			}
			if n < 400 || n > 600 {
				t.Errorf("pct=50 sampled %d of 1000", n)
			}
		})
	}
}

// TestSampleKey: the key ignores how the Message-ID was folded, and
// differs between messages.
func TestSampleKey(t *testing.T) {
	key := func(h []byte) string {
		hi := scanHeader(h)
		a, _ := hi.author()
		return sampleKey(hi, a, h)
	}
	a := key(hdr("From: a@example.test", "Message-ID: <x@example.test>"))
	b := key(hdr("Message-ID:\r\n  <x@example.test>  ", "X-Other: 1", "From: a@example.test"))
	c := key(hdr("From: a@example.test", "Message-ID: <y@example.test>"))
	if a != b {
		t.Errorf("refolded Message-ID: %q != %q", a, b)
	}
	if a == c {
		t.Errorf("different Message-IDs give the same key %q", a)
	}
	d := key(hdr("From: a@example.test", "Date: Mon, 1 Jan 2024 00:00:00 +0000"))
	e := key(hdr("From: a@example.test", "Date: Mon, 1 Jan 2024 00:00:01 +0000"))
	if d == e || !strings.HasPrefix(d, "fallback\x00a@example.test\x00Mon, 1 Jan") {
		t.Errorf("fallback keys %q, %q", d, e)
	}
	long := hdr("From: a@example.test", "X-Pad: "+strings.Repeat("x", 2000))
	if k := key(long); len(k) > 1100 {
		t.Errorf("fallback key of %d bytes: the header should be cut at 1 KiB", len(k))
	}
}

// TestPctBounds: pct 0 and 100 never depend on the hash.
func TestPctBounds(t *testing.T) {
	for i := range 200 {
		h := hdr("From: a@example.test", fmt.Sprintf("Message-ID: <%d@x>", i))
		hi := scanHeader(h)
		a, _ := hi.author()
		if sampled(hi, a, h, 0) || !sampled(hi, a, h, 100) {
			t.Fatalf("message %d: pct bounds not respected", i)
		}
	}
}
