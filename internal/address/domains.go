package address

import (
	"fmt"
	"slices"
)

// Domains is the set of domains we accept mail for. Entries and queries are
// normalised the same way as Addr.Domain, so membership is an exact match:
// a subdomain of a listed domain is not listed. It is immutable and safe for
// concurrent use.
type Domains struct {
	set  map[string]struct{}
	list []string
}

// NewDomains builds the set from configured names, which may be in any case,
// with or without the trailing dot, as U-labels or A-labels. An entry that is
// not a valid domain (including an address literal) is an error, so a typo
// in the configuration cannot silently stop or widen acceptance.
func NewDomains(list []string) (*Domains, error) {
	d := &Domains{set: make(map[string]struct{}, len(list))}
	for _, entry := range list {
		n, f := normaliseDomain(entry, true)
		if f != ok {
			return nil, fmt.Errorf("address: accepted domain %q is not a valid domain name", entry)
		}
		if _, dup := d.set[n]; !dup {
			d.set[n] = struct{}{}
			d.list = append(d.list, n)
		}
	}
	slices.Sort(d.list)
	return d, nil
}

// Contains reports whether domain is one of ours. domain may be in any case,
// with or without the trailing dot, as a U-label or an A-label; anything
// that does not normalise is not ours. A nil *Domains contains nothing.
func (d *Domains) Contains(domain string) bool {
	if d == nil {
		return false
	}
	n, f := normaliseDomain(domain, true)
	if f != ok {
		return false
	}
	_, found := d.set[n]
	return found
}

// List returns the normalised domains, sorted, as a fresh slice.
func (d *Domains) List() []string {
	if d == nil {
		return nil
	}
	return slices.Clone(d.list)
}
