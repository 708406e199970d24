package zoneserver

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// defaultTTL applies to records when neither they nor a $TTL give one, so
// a zone written inside a test can stay short.
const defaultTTL = 3600

// Zone is one zone in RFC 1035 §5 master-file format. $ORIGIN, $TTL and
// $GENERATE are honoured; $INCLUDE is refused, so a zone is self-contained.
type Zone struct {
	// Origin is the zone's apex. Empty means the first $ORIGIN of Text.
	Origin string
	// Text is the master file. It must hold exactly one SOA, at the apex,
	// and only names at or below it.
	Text string
}

// LoadZoneFile reads a master file. The origin is its first $ORIGIN
// directive, or else the file name minus ".zone" (so
// "0.0.127.in-addr.arpa.zone" needs no directive).
func LoadZoneFile(path string) (Zone, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return Zone{}, err
	}
	origin := directiveOrigin(string(text))
	if origin == "" {
		origin = strings.TrimSuffix(filepath.Base(path), ".zone")
	}
	return Zone{Origin: dns.Fqdn(origin), Text: string(text)}, nil
}

// LoadZoneDir loads every *.zone file of dir, in name order: the
// directory testdata/zones at the module root holds the zones shared by
// every package's tests.
func LoadZoneDir(dir string) ([]Zone, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.zone"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("zoneserver: no *.zone files in %s", dir)
	}
	slices.Sort(paths)
	zones := make([]Zone, 0, len(paths))
	for _, p := range paths {
		z, err := LoadZoneFile(p)
		if err != nil {
			return nil, err
		}
		zones = append(zones, z)
	}
	return zones, nil
}

// directiveOrigin returns the argument of the first $ORIGIN line, or "".
func directiveOrigin(text string) string {
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "$ORIGIN") {
			return f[1]
		}
	}
	return ""
}

// zone is a parsed Zone, read-only once built.
type zone struct {
	origin string // lower case, absolute
	soa    *dns.SOA
	rrs    map[string]map[uint16][]dns.RR // lower-case owner → type → RRset
	// exists holds every owner and every ancestor up to the apex: an
	// ancestor without records is an empty non-terminal, which answers
	// NODATA, not NXDOMAIN (RFC 8020 §2, RFC 4592 §2.2.2).
	exists map[string]bool
}

func parseZone(z Zone) (*zone, error) {
	origin := z.Origin
	if origin == "" {
		origin = directiveOrigin(z.Text)
	}
	if origin == "" {
		return nil, errors.New("zoneserver: zone without Origin or $ORIGIN")
	}
	origin = strings.ToLower(dns.Fqdn(origin))
	if _, ok := dns.IsDomainName(origin); !ok {
		return nil, fmt.Errorf("zoneserver: bad origin %q", origin)
	}
	pz := &zone{
		origin: origin,
		rrs:    make(map[string]map[uint16][]dns.RR),
		exists: map[string]bool{origin: true},
	}
	zp := dns.NewZoneParser(strings.NewReader(z.Text), origin, "")
	zp.SetDefaultTTL(defaultTTL)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := pz.add(rr); err != nil {
			return nil, fmt.Errorf("zoneserver: zone %s: %w", origin, err)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zoneserver: zone %s: %w", origin, err)
	}
	if pz.soa == nil {
		return nil, fmt.Errorf("zoneserver: zone %s: no SOA at the apex", origin)
	}
	for owner, types := range pz.rrs {
		// RFC 1034 §3.6.2: a CNAME owner has no other data, or answers
		// would depend on the query type in ways no server agrees on.
		if len(types[dns.TypeCNAME]) > 0 && len(types) > 1 {
			return nil, fmt.Errorf("zoneserver: zone %s: %s has a CNAME and other data", origin, owner)
		}
	}
	return pz, nil
}

func (z *zone) add(rr dns.RR) error {
	h := rr.Header()
	owner := strings.ToLower(h.Name)
	if !dns.IsSubDomain(z.origin, owner) {
		return fmt.Errorf("%s is outside the zone", h.Name)
	}
	if h.Class != dns.ClassINET {
		return fmt.Errorf("%s: class %s, want IN", h.Name, dns.ClassToString[h.Class])
	}
	if soa, ok := rr.(*dns.SOA); ok {
		if owner != z.origin || z.soa != nil {
			return fmt.Errorf("%s: SOA must appear once, at the apex", h.Name)
		}
		z.soa = soa
	}
	if z.rrs[owner] == nil {
		z.rrs[owner] = make(map[uint16][]dns.RR)
	}
	z.rrs[owner][h.Rrtype] = append(z.rrs[owner][h.Rrtype], rr)
	for n := owner; n != z.origin; n = parent(n) {
		z.exists[n] = true
	}
	return nil
}

// parent strips the first label ("a.b.test." → "b.test.", "test." → ".").
func parent(name string) string {
	if off, end := dns.NextLabel(name, 0); !end {
		return name[off:]
	}
	return "."
}

// result says what a zone knows about one name and type.
type result int

const (
	found    result = iota // rrs answer the question
	cname                  // rrs is the CNAME to follow
	nodata                 // the name exists without that type
	nxdomain               // the name does not exist
)

// lookup answers name (lower case, inside the zone) and qtype from the
// zone's own data, synthesizing from a wildcard when name does not exist.
func (z *zone) lookup(name string, qtype uint16) ([]dns.RR, result) {
	types, ok := z.rrs[name]
	if !ok {
		if z.exists[name] {
			return nil, nodata
		}
		wc := z.wildcard(name)
		if wc == "" {
			return nil, nxdomain
		}
		types = z.rrs[wc]
	}
	pick := func(rrs []dns.RR) []dns.RR {
		out := make([]dns.RR, len(rrs))
		for i, rr := range rrs {
			out[i] = dns.Copy(rr)
			if !ok { // synthesized: the owner is the name asked (RFC 4592 §3.3)
				out[i].Header().Name = name
			}
		}
		return out
	}
	switch {
	case len(types[qtype]) > 0:
		return pick(types[qtype]), found
	case qtype == dns.TypeANY:
		var all []dns.RR
		for _, t := range slices.Sorted(maps.Keys(types)) {
			all = append(all, types[t]...)
		}
		return pick(all), found
	case len(types[dns.TypeCNAME]) > 0:
		return pick(types[dns.TypeCNAME]), cname
	}
	return nil, nodata
}

// wildcard returns the source of synthesis for a name that does not exist
// (RFC 4592 §3.3): "*." plus the closest encloser, the nearest existing
// ancestor. It is "" when that wildcard is not in the zone, which is also
// why *.example.test does not match a.b.example.test when b.example.test
// exists.
func (z *zone) wildcard(name string) string {
	for n := parent(name); dns.IsSubDomain(z.origin, n); n = parent(n) {
		if n == z.origin || z.exists[n] {
			wc := "*." + n
			if _, ok := z.rrs[wc]; ok {
				return wc
			}
			return ""
		}
	}
	return ""
}

// negativeSOA is the SOA for the authority section of a negative answer,
// its TTL lowered to the MINIMUM field as RFC 2308 §3 asks.
func (z *zone) negativeSOA() dns.RR {
	soa := dns.Copy(z.soa).(*dns.SOA)
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return soa
}
