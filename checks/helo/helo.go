// Package helo checks the HELO/EHLO argument for the lies and sloppiness
// that mark spam software. RFC 5321 §4.1.1.1 asks a client to give its
// fully qualified domain name, or an address literal when it has none, and
// §4.1.4 forbids a server to refuse mail merely because that name does
// not verify; so this check only records facts, and rules decide:
//
//   - helo.bare_ip: an address without the brackets of an address literal
//     (RFC 5321 §4.1.3), which no correct client sends;
//   - helo.literal_mismatch: an address literal that is not the client's
//     own address;
//   - helo.ours: our own hostname or one of our addresses, which only a
//     stranger pretending to be us would send;
//   - helo.dotless: a name with no dot ("localhost", "WORKSTATION"), which
//     is not fully qualified.
//
// Whether the argument is well formed at all is helo.valid, a core fact
// the server sets. This check uses no DNS.
package helo

import (
	"context"
	"net/netip"
	"strings"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/policy"
)

func init() {
	for _, f := range problems {
		policy.RegisterFact(policy.FactDef{Name: "helo." + f.name, Kind: policy.KindBool, Stage: policy.StageHelo, Doc: f.doc})
	}
}

// problems are the facts, in the order that picks Result.Result when
// several hold: the most telling first.
var problems = []struct{ name, doc string }{
	{"bare_ip", "the HELO/EHLO argument is an IPv4 or IPv6 address without the brackets of an address literal (RFC 5321 §4.1.3)"},
	{"literal_mismatch", "the HELO/EHLO argument is an address literal ([192.0.2.1], [IPv6:2001:db8::1]) that is not the client's address"},
	{"ours", "the HELO/EHLO argument is the gateway's own hostname or one of its addresses (bare or as a literal), from a client that is not the gateway itself"},
	{"dotless", `the HELO/EHLO argument is a name with no dot ("localhost", "WORKSTATION"): not fully qualified (RFC 5321 §4.1.1.1)`},
}

// Options configure the check.
type Options struct {
	// Hostname is the gateway's hostname.
	Hostname string
	// LocalIPs are the gateway's addresses: its listeners' and its
	// interfaces'.
	LocalIPs []netip.Addr
}

// Check is the HELO check. It is safe for concurrent use.
type Check struct {
	hostname string
	local    map[netip.Addr]bool
}

var _ checks.Check = (*Check)(nil)

// New returns the check for a gateway described by o.
func New(o Options) *Check {
	c := &Check{hostname: normName(o.Hostname), local: map[netip.Addr]bool{}}
	for _, a := range o.LocalIPs {
		// A wildcard listener's 0.0.0.0 or :: is no address of ours that
		// a client could name.
		if a.IsValid() && !a.IsUnspecified() {
			c.local[normAddr(a)] = true
		}
	}
	return c
}

// Name returns "helo".
func (*Check) Name() string { return "helo" }

// Stage returns policy.StageHelo.
func (*Check) Stage() policy.Stage { return policy.StageHelo }

// Run classifies in.Helo. An empty argument sets no facts and gives
// "none": there is nothing to judge, and rules should see the facts as
// unknown, as they see helo itself.
func (c *Check) Run(_ context.Context, in checks.Input) checks.Result {
	h := strings.TrimSpace(in.Helo)
	if h == "" {
		return checks.Result{Name: "helo", Result: "none", Detail: "no HELO"}
	}
	found := c.classify(h, normAddr(in.IP))
	r := checks.Result{Name: "helo", Result: "pass", Facts: map[string]any{}}
	var notes []string
	for _, p := range problems {
		note, ok := found[p.name]
		r.Facts["helo."+p.name] = ok
		if ok {
			if r.Result == "pass" {
				r.Result = p.name
			}
			notes = append(notes, p.name+": "+note)
		}
	}
	r.Detail = strings.Join(notes, "; ")
	return r
}

// normName makes a hostname comparable: lower case, no trailing dot.
func normName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// normAddr makes an address comparable: IPv4-mapped addresses unmapped,
// since a dual-stack listener sees IPv4 clients that way, and no zone.
func normAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }
