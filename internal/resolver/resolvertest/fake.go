// Package resolvertest provides Fake, a map-based resolver.Resolver for
// the unit tests of every check: no sockets, no zone files, answers and
// faults set per name.
//
// Fake returns exactly the errors the real client does (both build them
// with the same internal package): NXDOMAIN and NODATA are
// *net.DNSError{IsNotFound: true}, SERVFAIL is IsTemporary, a timeout is
// IsTimeout and IsTemporary, always unwrapped. For checks that need the
// wire (truncation, TTLs, CNAMEs) use zoneserver with the real client.
package resolvertest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/resolver/internal/dnserr"
)

// TimeoutAfter is how long a name in Fake.Timeout blocks when the
// caller's context has no earlier deadline.
const TimeoutAfter = 2 * time.Second

// Fake is a resolver.Resolver answering from maps. Map keys are names in
// any case, with or without the final dot. Set the maps up before the
// first lookup and do not change them afterwards; lookups may then run
// concurrently. The zero value answers NXDOMAIN for everything.
type Fake struct {
	// A and AAAA hold IP address strings; TXT one string per record.
	A, AAAA, TXT map[string][]string
	// PTR is keyed by IP address ("127.0.0.5", "2001:db8::5") or by
	// reverse name ("5.0.0.127.in-addr.arpa"); values are host names,
	// returned absolute.
	PTR map[string][]string
	// MX hosts are returned absolute, sorted by preference.
	MX map[string][]*net.MX
	// ServFail names answer SERVFAIL, whatever the type (for PTR, key by
	// address or reverse name).
	ServFail map[string]bool
	// Timeout names never answer: the lookup blocks until the context
	// ends or TimeoutAfter passes, then fails as the real client does.
	Timeout map[string]bool
	// Latency is added to every lookup, honouring the context.
	Latency time.Duration

	mu      sync.Mutex
	queries map[string]int // "name/TYPE" → count
}

var _ resolver.Resolver = (*Fake)(nil)

// Queries returns how many lookups of name and qtype ("A", "AAAA", "TXT",
// "MX", "PTR") Fake has served, including failed ones. For PTR, name may
// be the address or the reverse name.
func (f *Fake) Queries(name, qtype string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[key(name)+"/"+strings.ToUpper(qtype)]
}

// LookupTXT implements resolver.Resolver.
func (f *Fake) LookupTXT(ctx context.Context, name string) ([]string, error) {
	recs, err := f.answer(ctx, name, name, "TXT", f.TXT)
	if err != nil {
		return nil, err
	}
	return slices.Clone(recs), nil
}

// LookupMX implements resolver.Resolver.
func (f *Fake) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if err := f.begin(ctx, name, name, "MX"); err != nil {
		return nil, err
	}
	recs := get(f.MX, key(name))
	if len(recs) == 0 {
		return nil, dnserr.NotFound(name)
	}
	out := make([]*net.MX, len(recs))
	for i, mx := range recs {
		out[i] = &net.MX{Host: dns.Fqdn(mx.Host), Pref: mx.Pref}
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupAddr implements resolver.Resolver.
func (f *Fake) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, dnserr.Invalid(addr, "unrecognized address")
	}
	recs, err := f.answer(ctx, arpa, addr, "PTR", f.PTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = dns.Fqdn(r)
	}
	return out, nil
}

// LookupIPAddr implements resolver.Resolver.
func (f *Fake) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := f.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	return dnserr.IPAddrs(ips), nil
}

// LookupIP implements resolver.Resolver, with the real client's rules: an
// IP literal is returned as is; for "ip", a temporary failure of either
// family fails the lookup.
func (f *Fake) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	v4, v6, err := dnserr.Families(network, host)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip = ip.Unmap(); (ip.Is4() && v4) || (ip.Is6() && v6) {
			return []net.IP{ip.AsSlice()}, nil
		}
		return nil, dnserr.NotFound(host)
	}
	// Both families in parallel, as the real client: Latency counts once.
	type family struct {
		on    bool
		qtype string
		m     map[string][]string
		recs  []string
		err   error
	}
	fams := []*family{{on: v4, qtype: "A", m: f.A}, {on: v6, qtype: "AAAA", m: f.AAAA}}
	var wg sync.WaitGroup
	for _, fam := range fams {
		if fam.on {
			wg.Go(func() { fam.recs, fam.err = f.answer(ctx, host, host, fam.qtype, fam.m) })
		}
	}
	wg.Wait()
	var ips []net.IP
	var notFound error
	for _, fam := range fams {
		switch {
		case !fam.on:
		case fam.err == nil:
			for _, r := range fam.recs {
				ips = append(ips, parseIP(fam.qtype, r))
			}
		case !fam.err.(*net.DNSError).IsNotFound:
			return nil, fam.err
		case notFound == nil:
			notFound = fam.err
		}
	}
	if len(ips) == 0 {
		return nil, notFound
	}
	return ips, nil
}

func parseIP(qtype, s string) net.IP {
	ip, err := netip.ParseAddr(s)
	if err != nil || (qtype == "A") != ip.Is4() {
		panic(fmt.Sprintf("resolvertest: Fake.%s holds %q, not an IPv%s address", qtype, s, map[bool]string{true: "4", false: "6"}[qtype == "A"]))
	}
	return ip.AsSlice()
}

// answer serves a string-valued map: count, wait, inject faults, then the
// records or NotFound. display is the name errors carry (the caller's).
func (f *Fake) answer(ctx context.Context, name, display, qtype string, m map[string][]string) ([]string, error) {
	if err := f.begin(ctx, name, display, qtype); err != nil {
		return nil, err
	}
	recs := get(m, key(name))
	if len(recs) == 0 {
		// NODATA when another map has the name, NXDOMAIN otherwise: the
		// real client reports both as this same error.
		return nil, dnserr.NotFound(display)
	}
	return recs, nil
}

// begin counts the query, applies Latency and the per-name faults.
func (f *Fake) begin(ctx context.Context, name, display, qtype string) error {
	k := key(name)
	f.mu.Lock()
	if f.queries == nil {
		f.queries = make(map[string]int)
	}
	f.queries[k+"/"+qtype]++
	f.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return dnserr.FromContext(display, err)
	}
	if f.Latency > 0 {
		if err := sleep(ctx, f.Latency); err != nil {
			return dnserr.FromContext(display, err)
		}
	}
	if get(f.Timeout, k) {
		if err := sleep(ctx, TimeoutAfter); err != nil {
			return dnserr.FromContext(display, err)
		}
		return dnserr.Timeout(display, "")
	}
	if get(f.ServFail, k) {
		return dnserr.Temporary(display, "", "SERVFAIL")
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// key normalizes a name, an IP address (to its reverse name) or a reverse
// name, so map keys may be spelled any way.
func key(name string) string {
	if arpa, err := dns.ReverseAddr(name); err == nil {
		return arpa
	}
	return strings.ToLower(dns.Fqdn(name))
}

// get finds name in a map whose keys are spelled freely. Maps in tests are
// small, so a scan is fine and keeps later additions visible.
func get[V any](m map[string]V, k string) V {
	if v, ok := m[k]; ok {
		return v
	}
	for mk, v := range m {
		if key(mk) == k {
			return v
		}
	}
	var zero V
	return zero
}
