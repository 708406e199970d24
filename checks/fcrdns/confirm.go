package fcrdns

import (
	"context"
	"net/netip"
	"strings"

	"github.com/mxgate/mxgate/checks"
)

// maxShown bounds the addresses a detail lists for one name, so a name
// with a large round-robin set does not bloat the verdict record.
const maxShown = 4

// confirm resolves the PTR names in order, stopping at the first that
// resolves back to ip. Lookups are sequential: nearly every address has one
// PTR name, and stopping early sends no query that is not needed.
func (c *Check) confirm(ctx context.Context, ip netip.Addr, names []string) checks.Result {
	if len(names) > maxNames {
		names = names[:maxNames]
	}
	var notes []string
	temp := 0
	for _, name := range names {
		addrs, err := c.r.LookupIPAddr(ctx, name)
		switch {
		case err != nil && !isNotFound(err):
			temp++
			notes = append(notes, "ptr "+name+": "+describe(err))
		case len(addrs) == 0:
			notes = append(notes, "ptr "+name+" does not resolve")
		default:
			got := make([]string, 0, len(addrs))
			for _, a := range addrs {
				fa, ok := netip.AddrFromSlice(a.IP)
				if ok && fa.Unmap() == ip {
					return result(Pass, name, "ptr "+name+" confirmed")
				}
				got = append(got, a.IP.String())
			}
			notes = append(notes, "ptr "+name+" resolves to "+list(got))
		}
	}
	// A name that answered definitively without the address is evidence of
	// a forgery or a stale record; only when no name answered at all is the
	// outcome unknown.
	res := Fail
	if temp == len(names) {
		res = TempError
	}
	return result(res, names[0], strings.Join(notes, "; "))
}

// list joins up to maxShown addresses for a detail.
func list(addrs []string) string {
	if len(addrs) <= maxShown {
		return strings.Join(addrs, ", ")
	}
	return strings.Join(addrs[:maxShown], ", ") + ", ..."
}
