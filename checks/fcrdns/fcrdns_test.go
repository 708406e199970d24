package fcrdns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/policy"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		ip         string
		dns        *fake
		res, ptr   string // ptr "" = client.ptr unset
		wantDetail string
	}{
		{
			name: "pass",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR: map[string][]string{"192.0.2.1": {"mail.example.test."}},
				A:   map[string][]string{"mail.example.test": {"192.0.2.1"}},
			},
			res: Pass, ptr: "mail.example.test", wantDetail: "ptr mail.example.test confirmed",
		},
		{
			name: "pass via second PTR, names lower-cased",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR: map[string][]string{"192.0.2.1": {"other.example.test.", "MAIL.Example.TEST."}},
				A: map[string][]string{
					"other.example.test": {"192.0.2.77"},
					"mail.example.test":  {"192.0.2.2", "192.0.2.1"},
				},
			},
			res: Pass, ptr: "mail.example.test", wantDetail: "ptr mail.example.test confirmed",
		},
		{
			name: "fail",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR: map[string][]string{"192.0.2.1": {"forged.example.test."}},
				A:   map[string][]string{"forged.example.test": {"127.0.0.99"}},
			},
			res: Fail, ptr: "forged.example.test", wantDetail: "ptr forged.example.test resolves to 127.0.0.99",
		},
		{
			name: "fail lists every name tried",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR: map[string][]string{"192.0.2.1": {"a.example.test.", "b.example.test."}},
				A:   map[string][]string{"a.example.test": {"192.0.2.5", "192.0.2.6", "192.0.2.7", "192.0.2.8", "192.0.2.9"}},
			},
			res: Fail, ptr: "a.example.test",
			wantDetail: "ptr a.example.test resolves to 192.0.2.5, 192.0.2.6, 192.0.2.7, 192.0.2.8, ...; ptr b.example.test does not resolve",
		},
		{
			name: "none",
			ip:   "192.0.2.1",
			dns:  &fake{},
			res:  None, wantDetail: "no PTR",
		},
		{
			name: "none when the PTR set is empty",
			ip:   "192.0.2.1",
			dns:  &fake{PTR: map[string][]string{"192.0.2.1": {}}},
			res:  None, wantDetail: "no PTR",
		},
		{
			name: "PTR SERVFAIL",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR:      map[string][]string{"192.0.2.1": {"mail.example.test."}},
				ServFail: map[string]bool{"192.0.2.1": true},
			},
			res: TempError, wantDetail: "PTR lookup: SERVFAIL",
		},
		{
			name: "PTR timeout",
			ip:   "192.0.2.1",
			dns:  &fake{Timeout: map[string]bool{"192.0.2.1": true}},
			res:  TempError, wantDetail: "PTR lookup: timeout",
		},
		{
			name: "forward SERVFAIL on every name",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR:      map[string][]string{"192.0.2.1": {"a.example.test.", "b.example.test."}},
				ServFail: map[string]bool{"a.example.test": true, "b.example.test": true},
			},
			res: TempError, ptr: "a.example.test",
			wantDetail: "ptr a.example.test: SERVFAIL; ptr b.example.test: SERVFAIL",
		},
		{
			name: "forward NXDOMAIN",
			ip:   "192.0.2.1",
			dns:  &fake{PTR: map[string][]string{"192.0.2.1": {"gone.example.test."}}},
			res:  Fail, ptr: "gone.example.test", wantDetail: "ptr gone.example.test does not resolve",
		},
		{
			// A definitive answer for one name outweighs a failure for another.
			name: "forward NXDOMAIN and SERVFAIL",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR:      map[string][]string{"192.0.2.1": {"gone.example.test.", "flaky.example.test."}},
				ServFail: map[string]bool{"flaky.example.test": true},
			},
			res: Fail, ptr: "gone.example.test",
			wantDetail: "ptr gone.example.test does not resolve; ptr flaky.example.test: SERVFAIL",
		},
		{
			name: "SERVFAIL then a confirming name",
			ip:   "192.0.2.1",
			dns: &fake{
				PTR:      map[string][]string{"192.0.2.1": {"flaky.example.test.", "mail.example.test."}},
				A:        map[string][]string{"mail.example.test": {"192.0.2.1"}},
				ServFail: map[string]bool{"flaky.example.test": true},
			},
			res: Pass, ptr: "mail.example.test", wantDetail: "ptr mail.example.test confirmed",
		},
		{
			name: "IPv6 client",
			ip:   "2001:db8::25",
			dns: &fake{
				PTR:  map[string][]string{"2001:db8::25": {"mail6.example.test."}},
				A:    map[string][]string{"mail6.example.test": {"192.0.2.25"}},
				AAAA: map[string][]string{"mail6.example.test": {"2001:db8::25"}},
			},
			res: Pass, ptr: "mail6.example.test", wantDetail: "ptr mail6.example.test confirmed",
		},
		{
			name: "IPv6 client, name with an A record only",
			ip:   "2001:db8::25",
			dns: &fake{
				PTR: map[string][]string{"2001:db8::25": {"mail6.example.test."}},
				A:   map[string][]string{"mail6.example.test": {"192.0.2.25"}},
			},
			res: Fail, ptr: "mail6.example.test", wantDetail: "ptr mail6.example.test resolves to 192.0.2.25",
		},
		{
			name: "IPv4-mapped client",
			ip:   "::ffff:192.0.2.1",
			dns: &fake{
				PTR: map[string][]string{"192.0.2.1": {"mail.example.test."}},
				A:   map[string][]string{"mail.example.test": {"192.0.2.1"}},
			},
			res: Pass, ptr: "mail.example.test", wantDetail: "ptr mail.example.test confirmed",
		},
		{
			name: "no client address",
			dns:  &fake{},
			res:  None, wantDetail: "no client address",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			r := New(tt.dns).Run(context.Background(), checks.Input{IP: ip})
			if r.Result != tt.res || r.Detail != tt.wantDetail {
				t.Errorf("Run = %q, %q; want %q, %q", r.Result, r.Detail, tt.res, tt.wantDetail)
			}
			checkFacts(t, r, tt.res, tt.ptr)
		})
	}
}

// checkFacts checks the facts against the expected values, and that the
// policy accepts every one of them.
func checkFacts(t *testing.T, r checks.Result, res, ptr string) {
	t.Helper()
	if got := r.Facts["client.fcrdns"]; got != res {
		t.Errorf("client.fcrdns = %v, want %q", got, res)
	}
	got, set := r.Facts["client.ptr"]
	switch {
	case ptr == "" && set:
		t.Errorf("client.ptr = %v, want unset", got)
	case ptr != "" && got != ptr:
		t.Errorf("client.ptr = %v, want %q", got, ptr)
	}
	v := policy.NewValues()
	for name, val := range r.Facts {
		if err := v.Set(name, val); err != nil {
			t.Errorf("Set(%q): %v", name, err)
		}
	}
}

func TestTimeoutHonoursDeadline(t *testing.T) {
	dns := &fake{
		PTR:     map[string][]string{"192.0.2.1": {"mail.example.test."}},
		A:       map[string][]string{"mail.example.test": {"192.0.2.1"}},
		Latency: 10 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := New(dns).Run(ctx, checks.Input{IP: netip.MustParseAddr("192.0.2.1")})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run took %v past a 50ms deadline", el)
	}
	if r.Result != TempError || r.Detail != "PTR lookup: timeout" {
		t.Errorf("Run = %q, %q; want temperror, PTR lookup: timeout", r.Result, r.Detail)
	}
}

func TestAtMostTenNames(t *testing.T) {
	dns := &fake{PTR: map[string][]string{}, A: map[string][]string{}}
	var want []string
	for i := range 12 {
		name := fmt.Sprintf("n%d.example.test", i)
		dns.PTR["192.0.2.1"] = append(dns.PTR["192.0.2.1"], name+".")
		dns.A[name] = []string{"192.0.2.200"}
		if i < maxNames {
			want = append(want, name)
		}
	}
	dns.A["n10.example.test"] = []string{"192.0.2.1"} // the 11th would confirm
	r := New(dns).Run(context.Background(), checks.Input{IP: netip.MustParseAddr("192.0.2.1")})
	if r.Result != Fail {
		t.Errorf("Result = %q, want fail", r.Result)
	}
	if got := dns.lookups(); !slices.Equal(got, want) {
		t.Errorf("forward lookups = %q, want %q", got, want)
	}
}

func TestFactsRegistered(t *testing.T) {
	for name, kind := range map[string]policy.Kind{"client.fcrdns": policy.KindString, "client.ptr": policy.KindDomain} {
		d, ok := policy.LookupFact(name)
		if !ok || d.Kind != kind || d.Stage != policy.StageConnect {
			t.Errorf("LookupFact(%q) = %+v, %v; want kind %s, stage connect", name, d, ok, kind)
		}
	}
}
