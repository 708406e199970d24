package resolver

import (
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/resolver/internal/dnserr"
)

// ednsSize is the UDP payload size we advertise (RFC 6891 §6.2.5): large
// enough for most answers, small enough not to fragment.
const ednsSize = 1232

// maxChain bounds how many CNAMEs of an answer are followed; real chains
// are one or two long, and an answer may not loop us forever.
const maxChain = 16

type cacheKey struct {
	name  string // normalized
	qtype uint16
}

// entry is one cached answer. Nil rrs is a negative answer (NXDOMAIN or
// NODATA). Entries are shared between callers and never modified.
type entry struct {
	rrs     []dns.RR // records of qtype at the end of any CNAME chain
	expires time.Time
}

// failure is why a query got no usable answer. Each caller turns it into
// its own *net.DNSError, named as that caller asked.
type failure struct {
	reason  string
	server  string
	timeout bool
}

func (f *failure) dnsError(name string) *net.DNSError {
	if f.timeout {
		return dnserr.Timeout(name, f.server)
	}
	return dnserr.Temporary(name, f.server, f.reason)
}

// outcome is what a flight hands to every waiter.
type outcome struct {
	entry *entry
	fail  *failure
}

// lookup returns the records of qtype for name, from the cache or the
// servers.
func (c *Client) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	return c.lookupAs(ctx, name, name, qtype)
}

// fresh reports whether the cache holds an unexpired answer for name and
// qtype, without counting a hit or a miss or touching the LRU order. An
// entry may still expire before the lookup that follows: that lookup then
// simply goes to the network.
func (c *Client) fresh(name string, qtype uint16) bool {
	e, ok := c.cache.Peek(cacheKey{normalize(name), qtype})
	return ok && c.now().Before(e.expires)
}

// lookupAs queries qname but reports errors under display, the name the
// caller gave (an address for LookupAddr).
func (c *Client) lookupAs(ctx context.Context, qname, display string, qtype uint16) ([]dns.RR, error) {
	key := cacheKey{normalize(qname), qtype}
	if _, ok := dns.IsDomainName(key.name); !ok {
		// As net.Resolver: a name that cannot exist has no records.
		return nil, dnserr.NotFound(display)
	}
	if e, ok := c.cache.Get(key); ok && c.now().Before(e.expires) {
		c.hits.Add(1)
		return e.result(display)
	}
	if err := ctx.Err(); err != nil {
		c.errs.Add(1)
		return nil, dnserr.FromContext(display, err)
	}
	c.misses.Add(1)
	ch := c.flights.DoChan(key.name+"/"+dns.TypeToString[qtype], func() (any, error) {
		c.started.Add(1)
		return c.resolve(key), nil
	})
	select {
	case r := <-ch:
		o := r.Val.(outcome)
		if o.fail != nil {
			c.errs.Add(1)
			return nil, o.fail.dnsError(display)
		}
		return o.entry.result(display)
	case <-ctx.Done():
		// The flight goes on for the other waiters and the cache.
		c.errs.Add(1)
		return nil, dnserr.FromContext(display, ctx.Err())
	}
}

func (e *entry) result(name string) ([]dns.RR, error) {
	if len(e.rrs) == 0 {
		return nil, dnserr.NotFound(name)
	}
	return e.rrs, nil
}

// resolve runs one flight: ask the servers, cache a definite answer.
func (c *Client) resolve(key cacheKey) outcome {
	// Detached from every caller: see the package comment. The budget
	// covers every attempt's UDP and TCP halves.
	budget := time.Duration(c.attempts) * 2 * c.timeout
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	msg, fail := c.exchange(ctx, key.name, key.qtype)
	if fail != nil {
		return outcome{fail: fail}
	}
	e := c.entryFrom(msg, key.name, key.qtype)
	c.cache.Add(key, e)
	return outcome{entry: e}
}

// exchange asks the servers in turn, starting with the one that answered
// last, until one gives NOERROR or NXDOMAIN.
func (c *Client) exchange(ctx context.Context, qname string, qtype uint16) (*dns.Msg, *failure) {
	q := new(dns.Msg)
	q.SetQuestion(qname, qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)

	first := int(c.preferred.Load())
	var last *failure
	for i := range c.attempts {
		if ctx.Err() != nil {
			break
		}
		idx := (first + i) % len(c.servers)
		resp, fail := c.try(ctx, q, c.servers[idx])
		if fail == nil {
			if idx != first {
				c.preferred.Store(int32(idx))
			}
			return resp, nil
		}
		c.log.Debug("dns attempt failed", "name", qname, "type", dns.TypeToString[qtype],
			"server", fail.server, "attempt", i+1, "err", fail.reason)
		last = fail
	}
	if last == nil { // the budget ran out before the first attempt
		last = &failure{reason: "i/o timeout", timeout: true}
	}
	return nil, last
}

// try is one attempt against one server: UDP, then TCP if truncated.
func (c *Client) try(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, *failure) {
	q.Id = dns.Id() // fresh per attempt, so a late answer to the last one is ignored
	c.queries.Add(1)
	resp, _, err := c.udp.ExchangeContext(ctx, q, server)
	if err == nil && resp.Truncated {
		c.queries.Add(1)
		resp, _, err = c.tcp.ExchangeContext(ctx, q, server)
	}
	if err != nil {
		return nil, transportFailure(err, server)
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != q.Question[0].Qtype ||
		!strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) {
		return nil, &failure{reason: "answer to another question", server: server}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	reason, ok := dns.RcodeToString[resp.Rcode]
	if !ok {
		reason = "rcode " + strconv.Itoa(resp.Rcode)
	}
	return nil, &failure{reason: reason, server: server}
}

func transportFailure(err error, server string) *failure {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &failure{reason: "i/o timeout", server: server, timeout: true}
	}
	return &failure{reason: err.Error(), server: server}
}

// entryFrom turns an NOERROR or NXDOMAIN answer into a cache entry,
// following the CNAME chain from qname inside the answer section.
func (c *Client) entryFrom(m *dns.Msg, qname string, qtype uint16) *entry {
	name := qname
	ttl := uint32(math.MaxUint32)
	for range maxChain {
		var found []dns.RR
		next, cnameTTL := "", uint32(0)
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, name) {
				continue
			}
			if h.Rrtype == qtype {
				found = append(found, rr)
			} else if cn, ok := rr.(*dns.CNAME); ok && next == "" {
				next, cnameTTL = strings.ToLower(cn.Target), h.Ttl
			}
		}
		if len(found) > 0 {
			for _, rr := range found {
				ttl = min(ttl, rr.Header().Ttl)
			}
			return &entry{rrs: found, expires: c.expiry(ttl)}
		}
		if next == "" {
			break
		}
		ttl = min(ttl, cnameTTL)
		name = next
	}
	if soa := negativeTTL(m); soa >= 0 {
		return &entry{expires: c.expiry(min(ttl, uint32(soa)))}
	}
	// No SOA to say how long "no" holds (RFC 2308 §5): the shortest we may.
	return &entry{expires: c.now().Add(c.minTTL)}
}

// negativeTTL is RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the SOA in the
// authority section, or -1 when there is none.
func negativeTTL(m *dns.Msg) int64 {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return int64(min(soa.Hdr.Ttl, soa.Minttl))
		}
	}
	return -1
}

// expiry clamps a TTL in seconds to [MinTTL, MaxTTL] from now.
func (c *Client) expiry(ttl uint32) time.Time {
	d := time.Duration(ttl) * time.Second
	d = min(max(d, c.minTTL), c.maxTTL)
	return c.now().Add(d)
}
