package fcrdns

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"
)

// fake is a stand-in for resolvertest.Fake, which is not written yet: the
// same fields, so the tests switch to it by changing the type name. Names
// absent from every map are NXDOMAIN. It also records the forward lookups.
type fake struct {
	A, AAAA, TXT, PTR map[string][]string
	MX                map[string][]*net.MX
	ServFail          map[string]bool
	Timeout           map[string]bool
	Latency           time.Duration

	mu      sync.Mutex
	queried []string
}

func key(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// wait applies the latency and the failure modes common to every lookup.
func (f *fake) wait(ctx context.Context, name string) error {
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-ctx.Done():
			return &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true, IsTemporary: true}
		}
	}
	switch {
	case f.Timeout[key(name)]:
		return &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true, IsTemporary: true}
	case f.ServFail[key(name)]:
		return &net.DNSError{Err: "SERVFAIL", Name: name, IsTemporary: true}
	}
	return nil
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fake) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if err := f.wait(ctx, name); err != nil {
		return nil, err
	}
	if v, ok := f.TXT[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (f *fake) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if err := f.wait(ctx, name); err != nil {
		return nil, err
	}
	if v, ok := f.MX[key(name)]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (f *fake) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	f.queried = append(f.queried, host)
	f.mu.Unlock()
	ips, err := f.LookupIP(ctx, "ip", host)
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, err
}

func (f *fake) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if err := f.wait(ctx, addr); err != nil {
		return nil, err
	}
	if v, ok := f.PTR[addr]; ok {
		return v, nil
	}
	return nil, notFound(addr)
}

func (f *fake) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	if err := f.wait(ctx, host); err != nil {
		return nil, err
	}
	var strs []string
	a, hasA := f.A[key(host)]
	aaaa, hasAAAA := f.AAAA[key(host)]
	if network != "ip6" {
		strs = append(strs, a...)
	}
	if network != "ip4" {
		strs = append(strs, aaaa...)
	}
	if !hasA && !hasAAAA {
		return nil, notFound(host)
	}
	var ips []net.IP
	for _, s := range strs {
		ips = append(ips, net.ParseIP(s))
	}
	if len(ips) == 0 {
		return nil, notFound(host) // NODATA
	}
	return ips, nil
}

func (f *fake) lookups() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queried...)
}
