package resolvertest

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

func newFake() *Fake {
	return &Fake{
		A:        map[string][]string{"Host.Test.": {"192.0.2.1", "192.0.2.2"}},
		AAAA:     map[string][]string{"host.test": {"2001:db8::1"}},
		TXT:      map[string][]string{"txt.test": {"one", "two"}},
		MX:       map[string][]*net.MX{"host.test": {{Host: "b.test", Pref: 20}, {Host: "a.test.", Pref: 10}}},
		PTR:      map[string][]string{"192.0.2.1": {"host.test"}},
		ServFail: map[string]bool{"sf.test": true, "192.0.2.9": true},
		Timeout:  map[string]bool{"slow.test": true},
	}
}

func dnsError(t *testing.T, err error) *net.DNSError {
	t.Helper()
	de, ok := err.(*net.DNSError)
	if !ok {
		t.Fatalf("%T %v, want a bare *net.DNSError", err, err)
	}
	return de
}

func TestErrors(t *testing.T) {
	f := newFake()
	tests := []struct {
		name                         string
		lookup                       func(context.Context) error
		notFound, temporary, timeout bool
	}{
		{"NXDOMAIN", func(ctx context.Context) error { _, err := f.LookupTXT(ctx, "none.test"); return err }, true, false, false},
		{"NODATA", func(ctx context.Context) error { _, err := f.LookupTXT(ctx, "host.test"); return err }, true, false, false},
		{"NODATA AAAA", func(ctx context.Context) error { _, err := f.LookupIP(ctx, "ip6", "txt.test"); return err }, true, false, false},
		{"no PTR", func(ctx context.Context) error { _, err := f.LookupAddr(ctx, "192.0.2.7"); return err }, true, false, false},
		{"SERVFAIL", func(ctx context.Context) error { _, err := f.LookupMX(ctx, "SF.test."); return err }, false, true, false},
		{"SERVFAIL PTR by address", func(ctx context.Context) error { _, err := f.LookupAddr(ctx, "192.0.2.9"); return err }, false, true, false},
		{"timeout", func(ctx context.Context) error { _, err := f.LookupIPAddr(ctx, "slow.test"); return err }, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			de := dnsError(t, tt.lookup(ctx))
			if de.IsNotFound != tt.notFound || de.Temporary() != tt.temporary || de.IsTimeout != tt.timeout {
				t.Errorf("%+v: want notFound %v temporary %v timeout %v", de, tt.notFound, tt.temporary, tt.timeout)
			}
		})
	}
}

func TestTimeoutWithoutDeadline(t *testing.T) {
	t.Parallel() // waits TimeoutAfter
	f := &Fake{Timeout: map[string]bool{"slow.test": true}}
	t0 := time.Now()
	_, err := f.LookupTXT(context.Background(), "slow.test")
	if d := time.Since(t0); d < TimeoutAfter {
		t.Errorf("returned after %v, want %v", d, TimeoutAfter)
	}
	if de := dnsError(t, err); !de.IsTimeout || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%+v: want a timeout of its own", de)
	}
}

func TestAnswers(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	ips, err := f.LookupIPAddr(ctx, "HOST.test")
	if err != nil || len(ips) != 3 || ips[0].String() != "192.0.2.1" || ips[2].String() != "2001:db8::1" {
		t.Errorf("LookupIPAddr = %v, %v", ips, err)
	}
	ip4, err := f.LookupIP(ctx, "ip4", "host.test.")
	if err != nil || len(ip4) != 2 || len(ip4[0]) != 4 {
		t.Errorf("LookupIP ip4 = %v, %v", ip4, err)
	}
	mx, err := f.LookupMX(ctx, "host.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "a.test." || mx[1].Host != "b.test." {
		t.Errorf("LookupMX = %v, %v", mx, err)
	}
	mx[0].Host = "changed."
	if f.MX["host.test"][1].Host != "a.test." {
		t.Error("LookupMX result aliases the Fake's map")
	}
	names, err := f.LookupAddr(ctx, "192.0.2.1")
	if err != nil || !slices.Equal(names, []string{"host.test."}) {
		t.Errorf("LookupAddr = %v, %v", names, err)
	}
	txt, err := f.LookupTXT(ctx, "txt.test")
	if err != nil || !slices.Equal(txt, []string{"one", "two"}) {
		t.Errorf("LookupTXT = %v, %v", txt, err)
	}
	if _, err := (&Fake{}).LookupTXT(ctx, "any.test"); !dnsError(t, err).IsNotFound {
		t.Error("zero Fake: want NXDOMAIN")
	}
}

func TestLatency(t *testing.T) {
	f := &Fake{A: map[string][]string{"h.test": {"192.0.2.1"}}, AAAA: map[string][]string{"h.test": {"2001:db8::1"}}, Latency: 100 * time.Millisecond}
	t0 := time.Now()
	if _, err := f.LookupIPAddr(t.Context(), "h.test"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 100*time.Millisecond || d >= 200*time.Millisecond {
		t.Errorf("took %v, want Latency once (families in parallel)", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := f.LookupTXT(ctx, "h.test")
	if de := dnsError(t, err); !de.IsTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Latency past the deadline: %+v", de)
	}
}

func TestQueriesConcurrent(t *testing.T) {
	f := newFake()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			f.LookupTXT(t.Context(), "txt.test")
			f.LookupIPAddr(t.Context(), "host.test")
			f.LookupAddr(t.Context(), "192.0.2.1")
		})
	}
	wg.Wait()
	tests := []struct {
		name, qtype string
		want        int
	}{
		{"TXT.test.", "TXT", 50},
		{"host.test", "a", 50},
		{"host.test", "AAAA", 50},
		{"192.0.2.1", "PTR", 50},
		{"1.2.0.192.in-addr.arpa.", "PTR", 50},
		{"txt.test", "MX", 0},
	}
	for _, tt := range tests {
		if got := f.Queries(tt.name, tt.qtype); got != tt.want {
			t.Errorf("Queries(%s, %s) = %d, want %d", tt.name, tt.qtype, got, tt.want)
		}
	}
}

func TestBadIPPanics(t *testing.T) {
	f := &Fake{A: map[string][]string{"h.test": {"2001:db8::1"}}}
	defer func() {
		if recover() == nil {
			t.Error("an IPv6 address in Fake.A did not panic")
		}
	}()
	f.LookupIP(t.Context(), "ip4", "h.test")
}
