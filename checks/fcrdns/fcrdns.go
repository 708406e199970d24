// Package fcrdns checks forward-confirmed reverse DNS: whether the client's
// address has a PTR name that resolves back to it. This is the "iprev"
// method of RFC 8601 §3, and what RFC 1912 §2.1 asks of every host: a PTR
// record whose name has a matching A (or AAAA) record. Anyone can publish
// any PTR name for addresses they control, so only the forward lookup,
// answered by the name's own zone, makes the name evidence.
//
// The check looks up the PTR names of the client's address, then resolves
// up to ten of them, in the order returned, until one has the client's
// address among its A and AAAA records. Ten is the limit RFC 7208 §4.6.4
// sets for the same walk in SPF's "ptr" mechanism: a zone that returns
// hundreds of names must not make the gateway send hundreds of queries.
//
// The result (fact client.fcrdns) follows RFC 8601 §2.7.3, except that no
// PTR at all is "none" rather than "permerror", since it is a plain fact
// about the client and not an error:
//
//   - pass: a PTR name resolves back to the client's address;
//   - fail: PTR names exist but none does, including when a name does not
//     resolve at all (NXDOMAIN or no address records);
//   - none: the address has no PTR (NXDOMAIN or NODATA);
//   - temperror: the PTR lookup failed transiently (SERVFAIL, REFUSED,
//     timeout), or every forward lookup did and none confirmed.
package fcrdns

import (
	"context"
	"strings"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/policy"
)

// The results, as fact client.fcrdns and Result.Result.
const (
	Pass      = "pass"
	Fail      = "fail"
	None      = "none"
	TempError = "temperror"
)

// maxNames bounds the forward lookups per connection (RFC 7208 §4.6.4).
const maxNames = 10

func init() {
	policy.RegisterFact(policy.FactDef{Name: "client.fcrdns", Kind: policy.KindString, Stage: policy.StageConnect,
		Doc: `forward-confirmed reverse DNS of the client (RFC 8601 "iprev"): "pass" (a PTR name resolves back to the client's address), "fail" (PTR names exist but none resolves back), "none" (no PTR record) or "temperror" (DNS failed transiently)`})
	policy.RegisterFact(policy.FactDef{Name: "client.ptr", Kind: policy.KindDomain, Stage: policy.StageConnect,
		Doc: "the client's PTR name, lower-case without the trailing dot: the confirmed name when client.fcrdns is pass, else the first name returned; unset when there is none"})
}

// Check is the FCrDNS check. It is safe for concurrent use.
type Check struct {
	r resolver.Resolver
}

var _ checks.Check = (*Check)(nil)

// New returns the check, resolving through r.
func New(r resolver.Resolver) *Check { return &Check{r: r} }

// Name returns "fcrdns".
func (*Check) Name() string { return "fcrdns" }

// Stage returns policy.StageConnect: the check needs only the client's
// address.
func (*Check) Stage() policy.Stage { return policy.StageConnect }

// Run looks up the client's PTR names and confirms them. DNS failures are
// results, never errors; ctx bounds every query.
func (c *Check) Run(ctx context.Context, in checks.Input) checks.Result {
	ip := in.IP.Unmap().WithZone("")
	if !ip.IsValid() {
		return result(None, "", "no client address")
	}
	names, err := c.r.LookupAddr(ctx, ip.String())
	if err != nil && !isNotFound(err) {
		return result(TempError, "", "PTR lookup: "+describe(err))
	}
	names = normalize(names)
	if len(names) == 0 {
		return result(None, "", "no PTR")
	}
	return c.confirm(ctx, ip, names)
}

// normalize lower-cases the names and drops the trailing dot, so that
// client.ptr reads as people write names; it drops empty names (a PTR of
// the root), which cannot confirm anything.
func normalize(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n = strings.ToLower(strings.TrimSuffix(n, ".")); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// result builds the check's result; ptr is "" when there is no name.
func result(res, ptr, detail string) checks.Result {
	facts := map[string]any{"client.fcrdns": res}
	if ptr != "" {
		facts["client.ptr"] = ptr
	}
	return checks.Result{Name: "fcrdns", Result: res, Detail: detail, Facts: facts}
}
