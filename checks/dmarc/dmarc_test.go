package dmarc

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/policy"
)

// message is a checks.Message over a header section.
type message []byte

func (m message) Header() []byte  { return m }
func (m message) Open() io.Reader { return bytes.NewReader(m) }

// prior is what the spf and dkim checks would have left.
func prior(spf, spfDomain, dkim string, dkimDomains ...string) []checks.Result {
	return []checks.Result{
		{Name: "fcrdns", Facts: map[string]any{"client.fcrdns": "pass"}},
		{Name: "spf", Result: spf, Facts: map[string]any{"spf": spf, "spf.domain": spfDomain}},
		{Name: "dkim", Result: dkim, Facts: map[string]any{"dkim": dkim, "dkim.domains": dkimDomains}},
	}
}

func TestRun(t *testing.T) {
	zone := map[string][]string{
		"_dmarc.example.test":      {"v=DMARC1; p=reject; sp=quarantine; rua=mailto:agg@example.test"},
		"_dmarc.sub.example.test.": {"v=spf1 -all"}, // not DMARC: ignored
	}
	tests := []struct {
		name   string
		from   string
		prior  []checks.Result
		res    string
		facts  map[string]any
		auth   string // authres.Format of Result.Auth
		detail string
	}{
		{name: "pass by dkim", from: "a@example.test", prior: prior("fail", "bounce.esp.test", "pass", "mail.example.test"),
			res: Pass, facts: map[string]any{"dmarc": Pass, "dmarc.policy": PolicyNone, "dmarc.domain": "example.test"},
			auth: "gw.test; dmarc=pass header.from=example.test", detail: "dkim pass mail.example.test aligned"},
		{name: "pass by spf", from: "a@example.test", prior: prior("pass", "example.test", "none"),
			res: Pass, facts: map[string]any{"dmarc": Pass, "dmarc.policy": PolicyNone, "dmarc.domain": "example.test"}},
		{name: "fail at a subdomain takes sp", from: "a@sub.example.test", prior: prior("pass", "esp.test", "pass", "esp.test"),
			res: Fail, facts: map[string]any{"dmarc": Fail, "dmarc.policy": PolicyQuarantine, "dmarc.domain": "sub.example.test"},
			auth:   "gw.test; dmarc=fail header.from=sub.example.test",
			detail: "from sub.example.test (org example.test) record _dmarc.example.test sp=quarantine: fail (spf pass esp.test not aligned; dkim pass esp.test not aligned): policy quarantine"},
		{name: "no spf or dkim check ran", from: "a@example.test",
			res: Fail, facts: map[string]any{"dmarc": Fail, "dmarc.policy": PolicyReject, "dmarc.domain": "example.test"}},
		{name: "no record", from: "a@other.test", prior: prior("pass", "other.test", "none"),
			res: None, facts: map[string]any{"dmarc": None, "dmarc.policy": PolicyNone, "dmarc.domain": "other.test"},
			auth: "gw.test; dmarc=none header.from=other.test"},
		{name: "two From addresses", from: "a@example.test, b@other.test",
			res: PermError, facts: map[string]any{"dmarc": PermError, "dmarc.policy": PolicyNone},
			auth: `gw.test; dmarc=permerror reason="From with 2 addresses"`},
		{name: "servfail", from: "a@broken.test",
			res: TempError, facts: map[string]any{"dmarc": TempError, "dmarc.policy": PolicyNone, "dmarc.domain": "broken.test"},
			auth: `gw.test; dmarc=temperror reason="from broken.test (org broken.test): _dmarc.broken.test: SERVFAIL" header.from=broken.test`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &resolvertest.Fake{TXT: zone, ServFail: map[string]bool{"_dmarc.broken.test": true}}
			c := New(f, Options{})
			r := c.Run(context.Background(), checks.Input{Message: message(fromHdr(tt.from)), Prior: tt.prior})
			if r.Name != "dmarc" || r.Result != tt.res {
				t.Errorf("got %s %s, want dmarc %s (%s)", r.Name, r.Result, tt.res, r.Detail)
			}
			if !sameFacts(r.Facts, tt.facts) {
				t.Errorf("facts %v, want %v", r.Facts, tt.facts)
			}
			if len(r.Auth) != 1 {
				t.Fatalf("Auth %v, want one dmarc result", r.Auth)
			}
			if got := strings.TrimSpace(authres.Format("gw.test", r.Auth)); tt.auth != "" && got != tt.auth {
				t.Errorf("Authentication-Results %q, want %q", got, tt.auth)
			}
			if !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("detail %q, want it to contain %q", r.Detail, tt.detail)
			}
			for name := range r.Facts {
				if _, ok := policy.LookupFact(name); !ok {
					t.Errorf("fact %q is not registered", name)
				}
			}
		})
	}
}

func sameFacts(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRunQueries: the absolute names discovery asks, and only as many as
// it needs.
func TestRunQueries(t *testing.T) {
	tests := []struct {
		name, from string
		txt        map[string][]string
		want       map[string]int
	}{
		{name: "record at the From domain: one query", from: "a@sub.example.test",
			txt:  map[string][]string{"_dmarc.sub.example.test": {reject}, "_dmarc.example.test": {reject}},
			want: map[string]int{"_dmarc.sub.example.test.": 1, "_dmarc.example.test.": 0}},
		{name: "fallback: two queries", from: "a@sub.example.test",
			want: map[string]int{"_dmarc.sub.example.test.": 1, "_dmarc.example.test.": 1}},
		{name: "From is the org: one query", from: "a@example.test",
			want: map[string]int{"_dmarc.example.test.": 1}},
		{name: "bad From: none", from: "a@[192.0.2.1]",
			want: map[string]int{"_dmarc.[192.0.2.1].": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &resolvertest.Fake{TXT: tt.txt}
			var names []string
			rec := recorder{f, &names}
			New(rec, Options{}).Run(context.Background(), checks.Input{Message: message(fromHdr(tt.from))})
			for n, want := range tt.want {
				if got := f.Queries(n, "TXT"); got != want {
					t.Errorf("%s asked %d times, want %d", n, got, want)
				}
			}
			total := 0
			for _, n := range tt.want {
				total += n
			}
			if len(names) != total {
				t.Errorf("asked %q, want %d queries", names, total)
			}
			for _, n := range names {
				if !strings.HasSuffix(n, ".") {
					t.Errorf("asked %q: not absolute", n)
				}
			}
		})
	}
}

// recorder notes the names asked as they were spelt.
type recorder struct {
	*resolvertest.Fake
	names *[]string
}

func (r recorder) LookupTXT(ctx context.Context, name string) ([]string, error) {
	*r.names = append(*r.names, name)
	return r.Fake.LookupTXT(ctx, name)
}

// TestRunTimeout: each lookup gets Options.Timeout, and a timeout is
// temperror, logged.
func TestRunTimeout(t *testing.T) {
	f := &resolvertest.Fake{Timeout: map[string]bool{"_dmarc.example.test": true}}
	var logBuf bytes.Buffer
	c := New(f, Options{Timeout: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	start := time.Now()
	r := c.Run(context.Background(), checks.Input{Message: message(fromHdr("a@sub.example.test"))})
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v: the per-lookup timeout was not applied", el)
	}
	if r.Result != TempError || !strings.Contains(r.Detail, "_dmarc.example.test: timeout") {
		t.Errorf("got %s (%s), want temperror at the org name", r.Result, r.Detail)
	}
	if !strings.Contains(logBuf.String(), "dmarc: result temperror") {
		t.Errorf("temperror not logged: %q", logBuf.String())
	}
}

// TestRunCanceled: a Run whose context has ended is temperror, never none.
func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &resolvertest.Fake{TXT: map[string][]string{"_dmarc.example.test": {reject}}}
	r := New(f, Options{}).Run(ctx, checks.Input{Message: message(fromHdr("a@example.test"))})
	if r.Result != TempError {
		t.Errorf("got %s (%s), want temperror", r.Result, r.Detail)
	}
}

func TestRunNoMessage(t *testing.T) {
	r := New(&resolvertest.Fake{}, Options{}).Run(context.Background(), checks.Input{})
	if r.Result != None || r.Facts["dmarc.policy"] != PolicyNone {
		t.Errorf("got %+v", r)
	}
}

// TestFactsFromPrior: dkim.domains is read whichever slice type it comes
// as, and the latest prior result wins.
func TestFactsFromPrior(t *testing.T) {
	for _, v := range []any{[]string{"example.test"}, []any{"x.test", "example.test"}, "example.test"} {
		in := checks.Input{Prior: []checks.Result{
			{Facts: map[string]any{"dkim.domains": []string{"stale.test"}}},
			{Facts: map[string]any{"dkim.domains": v}},
		}}
		if got := factStrings(in, "dkim.domains"); !contains(got, "example.test") || contains(got, "stale.test") {
			t.Errorf("dkim.domains %#v read as %q", v, got)
		}
	}
	if got := factStrings(checks.Input{}, "dkim.domains"); got != nil {
		t.Errorf("absent dkim.domains read as %q", got)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestCheckIdentity(t *testing.T) {
	c := New(&resolvertest.Fake{}, Options{})
	if c.Name() != "dmarc" || c.Stage() != policy.StageData || c.timeout != DefaultTimeout {
		t.Errorf("got %s %s timeout %v", c.Name(), c.Stage(), c.timeout)
	}
	for name, kind := range map[string]policy.Kind{"dmarc": policy.KindString, "dmarc.policy": policy.KindString, "dmarc.domain": policy.KindDomain} {
		d, ok := policy.LookupFact(name)
		if !ok || d.Kind != kind || d.Stage != policy.StageData || d.Name != name {
			t.Errorf("fact %s: %+v, %v", name, d, ok)
		}
	}
}
