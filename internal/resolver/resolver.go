// Package resolver is the one caching stub resolver every check uses
// (DNSBL, FCrDNS, SPF, DKIM, DMARC, HELO). It asks configured recursive
// resolvers (RFC 1034 §5.3.1 "stub resolver") and never reads a search
// list: every name is made absolute first, because the libraries pass
// unrooted names such as "_dmarc.example.com" and a resolv.conf search
// domain with a wildcard would otherwise answer for it.
//
// Transport: one question per UDP message with RD=1 and an EDNS0 OPT
// advertising 1232 bytes (RFC 6891 §6.2.5; 1232 avoids IP fragmentation,
// per the DNS Flag Day 2020 recommendation). A truncated answer (TC=1) is
// asked again over TCP of the same server (RFC 7766 §5). A timeout, a
// transport error, SERVFAIL, REFUSED or any other unexpected rcode moves on
// to the next server, up to Config.Attempts attempts in total; the server
// that last answered is tried first next time, so a dead primary costs one
// timeout rather than one per query.
//
// Cache: an LRU keyed by lower-cased absolute name and type. Positive
// answers live for the smallest TTL of the records used, CNAMEs included
// (RFC 2181 §5.2); negative ones (NXDOMAIN and NODATA) for
// min(SOA TTL, SOA MINIMUM) from the authority section (RFC 2308 §5), or
// MinTTL when the server sent no SOA. Both are clamped to [MinTTL, MaxTTL].
// Failures (SERVFAIL, timeouts) are never cached (RFC 2308 §7 allows it,
// but a cached failure would turn one lost packet into minutes of 451s).
// The expiry is stored in each entry; golang-lru's expirable cache has one
// TTL for all entries and a goroutine per instance that never exits.
//
// Concurrent misses for the same name and type share one query
// (singleflight). The query runs detached from any caller's context, under
// its own budget of Attempts × 2 × Timeout, so a caller that gives up never
// fails the others, and its answer still lands in the cache for the next.
//
// CNAME chains are followed inside the answer the recursive resolver sent
// (RFC 1034 §3.6.2, §4.3.2): results are the records of the chain's last
// name. No extra query is made for a target the server did not resolve.
//
// Errors are always an unwrapped *net.DNSError, because the SPF, DKIM and
// DMARC libraries classify them by type assertion:
//
//	NXDOMAIN, NODATA         IsNotFound  (Err "no such host")
//	SERVFAIL, REFUSED, ...   IsTemporary (Err the rcode, e.g. "SERVFAIL")
//	timeout, ctx deadline    IsTimeout and IsTemporary
//	other transport errors   IsTemporary
//
// NODATA is an error, not (nil, nil), as with net.Resolver: SPF counts
// both as void lookups (RFC 7208 §4.6.4) and every other caller wants "no
// record" either way.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/mxgate/mxgate/internal/resolver/internal/dnserr"
)

// Resolver is what every check uses. Its first four methods are
// blitiri.com.ar/go/spf's DNSResolver, so it plugs into SPF directly; the
// same signatures as net.Resolver make the DKIM and DMARC adapters one
// line each. Implementations must return errors as unwrapped
// *net.DNSError (see the package comment).
type Resolver interface {
	// LookupTXT returns one string per TXT record, its character-strings
	// joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupMX returns the MX records sorted by preference, hosts absolute.
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupIPAddr returns the A and AAAA records, both queried in parallel.
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	// LookupAddr returns the PTR names of an IP address, absolute
	// ("mail.example.com.").
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	// LookupIP returns the A ("ip4"), AAAA ("ip6") or both ("ip") records
	// of host: DNSBL queries (RFC 5782 §2) want exactly one family.
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
}

// Config configures a Client. The zero value is usable: it reads
// /etc/resolv.conf and applies the defaults below.
type Config struct {
	// Servers are "ip:port" addresses of recursive resolvers. Empty means
	// the nameserver lines of /etc/resolv.conf (port 53); nothing else of
	// that file is used.
	Servers []string
	// Timeout bounds one attempt (UDP, plus TCP after truncation). Default 2s.
	Timeout time.Duration
	// Attempts is the total number of attempts, rotating over Servers.
	// Default 3.
	Attempts int
	// CacheSize is the number of cached answers. Default 50000.
	CacheSize int
	// MinTTL and MaxTTL clamp how long answers are cached. Defaults 10s
	// and 1h. MinTTL cannot be zero: zero selects the default.
	MinTTL, MaxTTL time.Duration
	// Log receives per-attempt failures at debug level. Nil discards.
	Log *slog.Logger
}

// Defaults applied by New to zero fields of Config.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultAttempts  = 3
	DefaultCacheSize = 50000
	DefaultMinTTL    = 10 * time.Second
	DefaultMaxTTL    = time.Hour
)

// resolvConfPath is a variable so a test can point New at a temporary file.
var resolvConfPath = "/etc/resolv.conf"

// Stats are cumulative counters, for metrics.
type Stats struct {
	// Queries is the number of messages sent to servers: every attempt,
	// and the TCP retry after a truncated UDP answer.
	Queries uint64
	// CacheHits and CacheMisses count lookups of one name and type
	// (LookupIPAddr and LookupIP "ip" are two).
	CacheHits, CacheMisses uint64
	// Deduplicated is the number of misses that joined a query already in
	// flight instead of sending their own. Right after a miss it may be
	// one too high for the microseconds before its query starts.
	Deduplicated uint64
	// Errors is the number of lookups that failed with anything other than
	// "not found": SERVFAIL, timeouts, the caller's context ending.
	Errors uint64
}

// Client is the caching resolver. It implements Resolver and is safe for
// concurrent use. It starts no goroutines of its own beyond the queries in
// flight, so it needs no Close.
type Client struct {
	servers        []string
	timeout        time.Duration
	attempts       int
	minTTL, maxTTL time.Duration
	log            *slog.Logger

	udp, tcp *dns.Client
	cache    *lru.Cache[cacheKey, *entry]
	flights  singleflight.Group
	now      func() time.Time // replaced by tests to step over TTLs

	// preferred is the index of the server that answered last.
	preferred atomic.Int32

	queries, hits, misses, started, errs atomic.Uint64
}

var _ Resolver = (*Client)(nil)

// New returns a Client. It does no network I/O; with no Servers it reads
// /etc/resolv.conf.
func New(cfg Config) (*Client, error) {
	if err := applyDefaults(&cfg); err != nil {
		return nil, err
	}
	servers := cfg.Servers
	if len(servers) == 0 {
		var err error
		if servers, err = readResolvConf(resolvConfPath); err != nil {
			return nil, fmt.Errorf("resolver: no servers configured: %w", err)
		}
	}
	for _, s := range servers {
		if err := checkServer(s); err != nil {
			return nil, err
		}
	}
	cache, err := lru.New[cacheKey, *entry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		servers:  slices.Clone(servers),
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		minTTL:   cfg.MinTTL,
		maxTTL:   cfg.MaxTTL,
		log:      log,
		udp:      &dns.Client{Net: "udp", Timeout: cfg.Timeout},
		tcp:      &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache:    cache,
		now:      time.Now,
	}, nil
}

func applyDefaults(cfg *Config) error {
	if cfg.Timeout < 0 || cfg.Attempts < 0 || cfg.CacheSize < 0 || cfg.MinTTL < 0 || cfg.MaxTTL < 0 {
		return errors.New("resolver: Timeout, Attempts, CacheSize, MinTTL and MaxTTL must not be negative")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.Timeout, DefaultTimeout)
	def(&cfg.MinTTL, DefaultMinTTL)
	def(&cfg.MaxTTL, DefaultMaxTTL)
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return fmt.Errorf("resolver: MinTTL %v exceeds MaxTTL %v", cfg.MinTTL, cfg.MaxTTL)
	}
	return nil
}

// checkServer insists on an IP literal: resolving the resolver's own name
// would need a resolver.
func checkServer(s string) error {
	if _, err := netip.ParseAddrPort(s); err != nil {
		return fmt.Errorf("resolver: server %q: want ip:port (e.g. 127.0.0.1:53 or [::1]:53): %v", s, err)
	}
	return nil
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	// started is read before misses: every flight follows its miss, so the
	// difference cannot go negative.
	started := c.started.Load()
	misses := c.misses.Load()
	return Stats{
		Queries:      c.queries.Load(),
		CacheHits:    c.hits.Load(),
		CacheMisses:  misses,
		Deduplicated: misses - started,
		Errors:       c.errs.Load(),
	}
}

// LookupTXT implements Resolver. Escapes that miekg/dns adds to
// non-printable bytes are undone, so the strings are the bytes on the wire
// as net.Resolver returns them.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := c.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, joinTXT(t.Txt))
		}
	}
	return out, nil
}

// LookupMX implements Resolver. Records come sorted by preference (RFC
// 5321 §5.1), ties in the server's order, like net.Resolver minus its
// shuffle, so results are reproducible.
func (c *Client) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := c.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupAddr implements Resolver: PTR records of the reverse name
// (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa nibbles).
func (c *Client) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, dnserr.Invalid(addr, "unrecognized address")
	}
	rrs, err := c.lookupAs(ctx, arpa, addr, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	return out, nil
}

// LookupIPAddr implements Resolver.
func (c *Client) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := c.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	return dnserr.IPAddrs(ips), nil
}

// LookupIP implements Resolver. IPv4 addresses come as 4-byte slices, IPv6
// as 16-byte ones. An IP literal is returned as is, as net.Resolver does
// (an MX or SPF a: target may be one).
//
// With both families, a temporary failure of either fails the whole
// lookup, unlike net.Resolver's default: half an answer would let SPF's
// a and mx mechanisms conclude "fail" for a client of the family that
// failed, where temperror is the truth (design: faults fail safe).
func (c *Client) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	v4, v6, err := dnserr.Families(network, host)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return literalIP(ip.Unmap(), host, v4, v6)
	}
	switch {
	case v4 && v6:
		return c.lookupBoth(ctx, host)
	case v4:
		return c.lookupAddrs(ctx, host, dns.TypeA)
	default:
		return c.lookupAddrs(ctx, host, dns.TypeAAAA)
	}
}

func literalIP(ip netip.Addr, host string, v4, v6 bool) ([]net.IP, error) {
	if (ip.Is4() && v4) || (ip.Is6() && v6) {
		return []net.IP{ip.AsSlice()}, nil
	}
	return nil, dnserr.NotFound(host)
}

func (c *Client) lookupBoth(ctx context.Context, host string) ([]net.IP, error) {
	var (
		wg         sync.WaitGroup
		four, six  []net.IP
		err4, err6 error
	)
	// failed is any error but "not found": that one just means the
	// other family is all there is.
	failed := func(err error) bool {
		var de *net.DNSError
		return errors.As(err, &de) && !de.IsNotFound
	}
	if c.fresh(host, dns.TypeAAAA) {
		// The usual case under load: the AAAA answer is cached, so there
		// is nothing to wait for in parallel and no goroutine to start.
		six, err6 = c.lookupAddrs(ctx, host, dns.TypeAAAA)
		four, err4 = c.lookupAddrs(ctx, host, dns.TypeA)
	} else {
		wg.Go(func() { six, err6 = c.lookupAddrs(ctx, host, dns.TypeAAAA) })
		four, err4 = c.lookupAddrs(ctx, host, dns.TypeA)
		wg.Wait()
	}
	switch {
	case failed(err4):
		return nil, err4
	case failed(err6):
		return nil, err6
	case err4 != nil && err6 != nil:
		return nil, err4
	}
	return append(four, six...), nil
}

func (c *Client) lookupAddrs(ctx context.Context, host string, qtype uint16) ([]net.IP, error) {
	rrs, err := c.lookup(ctx, host, qtype)
	if err != nil {
		return nil, err
	}
	out := make([]net.IP, 0, len(rrs))
	for _, rr := range rrs {
		switch a := rr.(type) {
		case *dns.A:
			if ip4 := a.A.To4(); ip4 != nil {
				out = append(out, slices.Clone(ip4))
			}
		case *dns.AAAA:
			if ip6 := a.AAAA.To16(); ip6 != nil {
				out = append(out, slices.Clone(ip6))
			}
		}
	}
	return out, nil
}

// normalize makes name absolute and lower case: the cache and the
// singleflight key must not depend on how a library spelled the name.
func normalize(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}
