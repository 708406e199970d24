// Package dnsbl checks the client's IP address against DNS block and allow
// lists, and the HELO name and envelope sender domain against domain-based
// lists (RHSBLs), as RFC 5782 describes them.
//
// An IP-based list is queried for an A record at the address reversed under
// the list's zone: 192.0.2.99 in zen.example is 99.2.0.192.zen.example.
// (§2.1); an IPv6 address is its 32 nibbles, least significant first (§2.4).
// IPv4-mapped IPv6 addresses are unmapped first, or an IPv4 client behind a
// dual-stack listener would never be found. A domain-based list is queried
// at the name itself under the zone: example.com.dbl.example. (§3.1).
//
// An answer (§2.3) is a listing only when it falls in the list's configured
// answer set (by default 127.0.0.0/8). NXDOMAIN is "not listed". Answers in
// 127.255.255.0/24, or outside 127.0.0.0/8 altogether, are never listings:
// Spamhaus and others use them to say "query refused: you use a public or
// open resolver, or you are over quota", and a wildcarding resolver produces
// the latter. Treating either as a listing would reject all mail, so they
// are errors for that list, like SERVFAIL and timeouts, and every error
// fails open (design.md §1.5).
//
// Each list is probed with its test points (§5): 127.0.0.2 must be listed
// and 127.0.0.1 must not; "test" and "invalid" for domain lists. A list
// that fails is skipped until it passes again, so a dead or hijacked list
// (one that has started to list the whole Internet) cannot reject mail.
//
// A zone may contain a private key (Spamhaus DQS puts it in the first
// label). It is only ever used to build query names: results, facts, logs,
// errors and health report the list's display name instead.
package dnsbl

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/policy"
)

func init() {
	policy.RegisterFact(policy.FactDef{Name: "dnsbl.score", Kind: policy.KindNumber, Stage: policy.StageConnect,
		Doc: "the sum of the weights of the IP-based lists (RFC 5782) that list the client; allow lists have negative weights"})
	policy.RegisterFact(policy.FactDef{Name: "dnsbl.listed", Kind: policy.KindSet, Stage: policy.StageConnect,
		Doc: "the names of the IP-based lists that list the client, allow lists included"})
	policy.RegisterFact(policy.FactDef{Name: "dnsbl.reason", Kind: policy.KindString, Stage: policy.StageConnect,
		Doc: `why the client is listed, for a reply: the text of the deciding answer, or "listed by NAME (ANSWER)" for the highest-weight block list; "" when no block list lists it`})
	policy.RegisterFact(policy.FactDef{Name: "rhsbl.helo.listed", Kind: policy.KindSet, Stage: policy.StageHelo,
		Doc: "the names of the domain-based lists that list the HELO/EHLO name"})
	policy.RegisterFact(policy.FactDef{Name: "rhsbl.mail_from.listed", Kind: policy.KindSet, Stage: policy.StageMail,
		Doc: "the names of the domain-based lists that list the envelope sender's domain"})
	policy.RegisterFact(policy.FactDef{Name: "rhsbl.score", Kind: policy.KindNumber, Stage: policy.StageMail,
		Doc: "the sum of the weights of the domain-based lists that list the HELO name or the envelope sender's domain (a list listing the same name for both counts once)"})
}

// Answer is an answer that counts as a listing: a single address or a
// range. Lists encode the reason for a listing in the answer (Spamhaus ZEN:
// 127.0.0.2 SBL, 127.0.0.4 XBL, 127.0.0.10 PBL), so each may weigh and
// read differently.
type Answer struct {
	// Net is an IPv4 prefix inside 127.0.0.0/8; ParseAnswer makes one
	// from configuration.
	Net netip.Prefix
	// Weight replaces the list's weight for this answer; nil keeps it.
	Weight *float64
	// Text replaces dnsbl.reason when this answer decides it.
	Text string
}

// Zone is one IP-based list.
type Zone struct {
	// Zone is the DNS zone queried. It may contain a private key
	// (Spamhaus DQS) and so never appears anywhere but in queries.
	Zone string
	// Name is what results, facts, logs and metrics call the list. It
	// defaults to Zone, so it is required when the zone holds a key
	// (New insists for *.dq.spamhaus.net).
	Name string
	// Weight is added to the score when the list lists; a negative weight
	// makes an allow list.
	Weight float64
	// Answers are the answers that count as a listing; empty means any in
	// 127.0.0.0/8 (127.255.255.0/24 is always an error, never a listing).
	Answers []Answer
}

// DomainZone is one domain-based list (RHSBL, RFC 5782 §3).
type DomainZone struct {
	Zone
	// On says which names are looked up: "helo", "mail_from" or both.
	On []string
}

// Options configures a DNSBL. It mirrors the dnsbl section of the
// configuration, which the caller converts (Answer.Net from ParseAnswer).
type Options struct {
	// Zones are the IP-based lists.
	Zones []Zone
	// Domains are the domain-based lists.
	Domains []DomainZone
	// HealthInterval is how often every list is probed after Start; 0
	// probes only at Start.
	HealthInterval time.Duration
	// Log receives state changes of lists and error answers; nil discards.
	Log *slog.Logger
}

// ZoneHealth is the state of one list, for logs, metrics and readiness.
type ZoneHealth struct {
	// Name is the list's display name.
	Name string
	// Healthy is false while the list fails its RFC 5782 §5 test and is
	// skipped.
	Healthy bool
	// Reason says why the list is unhealthy; "" when it is healthy.
	Reason string
	// Checked is when the state was last established by a probe; zero
	// until the first conclusive probe. A probe that gets no answer
	// (SERVFAIL, timeout) establishes nothing: the list keeps its state.
	Checked time.Time
	// BadAnswers counts answers that were errors rather than listings
	// (127.255.255.0/24, outside 127.0.0.0/8), probes included.
	BadAnswers uint64
	// Errors counts lookups that failed (SERVFAIL, REFUSED, timeout),
	// probes included.
	Errors uint64
}

// The default answer set; refused is the error range inside it.
var (
	loopback8 = netip.MustParsePrefix("127.0.0.0/8")
	refused24 = netip.MustParsePrefix("127.255.255.0/24")
)

// maxName is the longest domain name in presentation form without the
// trailing dot (RFC 1035 §2.3.4's 255 octets on the wire).
const maxName = 253

// zone is a validated list with its state.
type zone struct {
	idx     int    // position in DNSBL.zones: the cache key
	query   string // lower-case, no trailing dot; may hold a key
	name    string
	weight  float64
	answers []Answer // most specific first, so the first match decides
	domain  bool
	onHelo  bool
	onMail  bool

	health     atomic.Pointer[healthState]
	probeFails atomic.Bool  // a probe got no answer last time: log once
	lastWarn   atomic.Int64 // unix nanoseconds of the last bad-answer warning
	badAnswers atomic.Uint64
	errors     atomic.Uint64
}

type healthState struct {
	healthy bool
	reason  string
	checked time.Time
}

// DNSBL holds the configured lists, their health and a short cache of
// results. Its checks are safe for concurrent use.
type DNSBL struct {
	r        resolver.Resolver
	log      *slog.Logger
	interval time.Duration
	zones    []*zone // IP-based lists, then domain-based ones
	ip       []*zone
	helo     []*zone
	mail     []*zone
	cache    *cache
	now      func() time.Time

	startOnce sync.Once
	mu        sync.Mutex // guards closed and cancel
	closed    bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the prober and probes that outlived Start
}

// New validates the options and returns a DNSBL that queries through r.
// Errors name a list by its position and display name, never by its zone.
func New(r resolver.Resolver, o Options) (*DNSBL, error) {
	if r == nil {
		return nil, fmt.Errorf("dnsbl: no resolver")
	}
	if o.HealthInterval < 0 {
		return nil, fmt.Errorf("dnsbl: health interval %v is negative", o.HealthInterval)
	}
	d := &DNSBL{r: r, log: o.Log, interval: o.HealthInterval, now: time.Now,
		cache: newCache(cacheSize, cacheTTL)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	names := map[string]string{}
	queries := map[string]string{}
	add := func(where string, z Zone, domain bool) (*zone, error) {
		zz, err := newZone(z, domain)
		if err != nil {
			return nil, fmt.Errorf("dnsbl: %s: %w", where, err)
		}
		where = fmt.Sprintf("%s (%q)", where, zz.name)
		if prev, dup := names[zz.name]; dup {
			return nil, fmt.Errorf("dnsbl: %s: name already used by %s", where, prev)
		}
		kind := "ip:"
		if domain {
			kind = "domain:"
		}
		if prev, dup := queries[kind+zz.query]; dup {
			return nil, fmt.Errorf("dnsbl: %s: same zone as %s", where, prev)
		}
		names[zz.name], queries[kind+zz.query] = where, where
		zz.idx = len(d.zones)
		zz.health.Store(&healthState{healthy: true})
		d.zones = append(d.zones, zz)
		return zz, nil
	}
	for i, z := range o.Zones {
		zz, err := add(fmt.Sprintf("zones[%d]", i), z, false)
		if err != nil {
			return nil, err
		}
		d.ip = append(d.ip, zz)
	}
	for i, z := range o.Domains {
		where := fmt.Sprintf("domains[%d]", i)
		zz, err := add(where, z.Zone, true)
		if err != nil {
			return nil, err
		}
		if len(z.On) == 0 {
			return nil, fmt.Errorf("dnsbl: %s (%q): on: give helo, mail_from or both", where, zz.name)
		}
		for _, on := range z.On {
			switch {
			case on == "helo" && !zz.onHelo:
				zz.onHelo = true
				d.helo = append(d.helo, zz)
			case on == "mail_from" && !zz.onMail:
				zz.onMail = true
				d.mail = append(d.mail, zz)
			default:
				return nil, fmt.Errorf("dnsbl: %s (%q): on: %q is not helo or mail_from, or is repeated", where, zz.name, on)
			}
		}
	}
	return d, nil
}

// newZone validates one list. Its errors never quote the zone.
func newZone(z Zone, domain bool) (*zone, error) {
	q := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(z.Zone)), ".")
	if q == "" {
		return nil, fmt.Errorf("zone is empty")
	}
	if !validZone(q) {
		return nil, fmt.Errorf("zone is not a domain name (letters, digits, '-' and '_' in dot-separated labels)")
	}
	name := z.Name
	if name == "" {
		// A DQS zone's first label is the customer's key: showing the
		// zone would publish it in every reply and metric.
		if strings.HasSuffix(q, ".dq.spamhaus.net") {
			return nil, fmt.Errorf("name is required: the zone holds a private key")
		}
		name = q
	}
	if !validDisplayName(name) {
		return nil, fmt.Errorf("name %q: use at most %d letters, digits, '.', '-' and '_'", name, maxName)
	}
	if math.IsNaN(z.Weight) || math.IsInf(z.Weight, 0) {
		return nil, fmt.Errorf("weight is not a finite number")
	}
	zz := &zone{query: q, name: name, weight: z.Weight, domain: domain}
	seen := map[netip.Prefix]bool{}
	for i, a := range z.Answers {
		if err := checkAnswer(a.Net); err != nil {
			return nil, fmt.Errorf("answers[%d]: %w", i, err)
		}
		if seen[a.Net] {
			return nil, fmt.Errorf("answers[%d]: %s is given twice", i, a.Net)
		}
		seen[a.Net] = true
		if a.Weight != nil && (math.IsNaN(*a.Weight) || math.IsInf(*a.Weight, 0)) {
			return nil, fmt.Errorf("answers[%d]: weight is not a finite number", i)
		}
		zz.answers = append(zz.answers, a)
	}
	slices.SortStableFunc(zz.answers, func(a, b Answer) int { return b.Net.Bits() - a.Net.Bits() })
	return zz, nil
}

// ParseAnswer parses an answer of the configuration: an IPv4 address
// ("127.0.0.2") or a masked prefix ("127.0.0.0/24") inside 127.0.0.0/8.
func ParseAnswer(match string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(match, "/") {
		var err error
		if p, err = netip.ParsePrefix(match); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", match)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s?", match, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(match)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", match)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err := checkAnswer(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// checkAnswer rejects answers that could never be a listing, so a typo is
// a configuration error rather than a list that silently never lists.
func checkAnswer(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("no answer address")
	case !p.Addr().Is4():
		return fmt.Errorf("%s: answers are IPv4 (A records)", p)
	case p != p.Masked():
		return fmt.Errorf("%s has host bits set: did you mean %s?", p, p.Masked())
	case p.Bits() < loopback8.Bits() || !loopback8.Contains(p.Addr()):
		return fmt.Errorf("%s is not inside 127.0.0.0/8: other answers are errors, never listings", p)
	case refused24.Bits() <= p.Bits() && refused24.Contains(p.Addr()):
		return fmt.Errorf("%s is inside 127.255.255.0/24, which lists use for refused queries", p)
	}
	return nil
}

// validZone accepts dot-separated labels of letters, digits, '-' and '_'
// ('_' because private zones and keys are not bound by hostname rules).
func validZone(s string) bool {
	if len(s) > maxName {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !validLabel(l, true) {
			return false
		}
	}
	return true
}

// validLabel checks one lower-case label: 1 to 63 of letters, digits and
// '-' (RFC 1123 §2.1), not at either end; '_' only when underscore.
func validLabel(l string, underscore bool) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || underscore && c == '_') {
			return false
		}
	}
	return true
}

// validDisplayName keeps names usable as metric labels and set elements.
func validDisplayName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// queryDomain returns name as it is looked up in a domain list: lower
// case, without the trailing dot. Address literals, bare addresses and
// anything that is not a domain of two or more labels are not looked up:
// a list cannot list them, and the query would leak junk to the list.
func queryDomain(name string) (string, bool) {
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if name == "" || len(name) > maxName || strings.HasPrefix(name, "[") {
		return "", false
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", false
	}
	for _, l := range labels {
		if !validLabel(l, false) {
			return "", false
		}
	}
	// An all-numeric last label is no TLD (RFC 3696 §2): "1.2.3" is junk.
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", false
	}
	return name, true
}

// reverseIP returns the part of an IP list query before the zone: the
// octets of an IPv4 address in reverse (RFC 5782 §2.1), or the 32 nibbles
// of an IPv6 address, least significant first (§2.4). IPv4-mapped
// addresses are unmapped: lists key IPv4 clients by their IPv4 form.
func reverseIP(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	return reverse6(ip)
}

// reverse6 is the nibble form of any address as 16 bytes, IPv4-mapped
// ones included (the IPv6 test points of §5 are IPv4-mapped).
func reverse6(ip netip.Addr) string {
	const hex = "0123456789abcdef"
	b := ip.As16()
	buf := make([]byte, 0, 63)
	for i := 15; i >= 0; i-- {
		buf = append(buf, hex[b[i]&0xf], '.', hex[b[i]>>4], '.')
	}
	return string(buf[:len(buf)-1])
}
