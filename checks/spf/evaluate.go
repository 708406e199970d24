package spf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/mxgate/mxgate/checks"
)

// outcome is one identity's result and, for people, why.
type outcome struct {
	result string
	why    string
}

// String reads "fail (matched -all)".
func (o outcome) String() string {
	if o.why == "" {
		return o.result
	}
	return o.result + " (" + o.why + ")"
}

// evaluate runs check_host() for one identity under its own budget.
func (c *Check) evaluate(ctx context.Context, ip netip.Addr, helo string, id identity) (out outcome) {
	if id.skip != "" {
		return outcome{result: None, why: id.skip}
	}
	// The library is third-party code fed with what clients and DNS say:
	// a panic in it must cost one temperror, not the gateway. Run's
	// caller recovers too, but not in the goroutine of the HELO check.
	defer func() {
		if v := recover(); v != nil {
			checks.Panics.Add(1)
			out = outcome{result: Temperror, why: fmt.Sprintf("internal error: %v", v)}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := spf.CheckHostWithSender(ip.AsSlice(), helo, id.sender,
		spf.WithResolver(c.r), spf.WithContext(ctx))
	out = outcome{result: string(res), why: explain(res, err, ip)}
	if !known(out.result) {
		// A result this package does not know would fall through every
		// rule: say so rather than invent a meaning for it.
		out = outcome{result: Permerror, why: fmt.Sprintf("unexpected result %q from the SPF library", res)}
	}
	c.log.Debug("spf", "identity", id.sender, "result", out.result, "detail", out.why, "diagnostic", err)
	return out
}

// known reports whether res is one of the seven results.
func known(res string) bool {
	switch res {
	case None, Neutral, Pass, Fail, Softfail, Temperror, Permerror:
		return true
	}
	return false
}

// explain turns the library's diagnostic error into a short phrase. The
// error is the library's own value or the resolver's *net.DNSError, and
// says why for every result (for pass and fail, which mechanism matched).
func explain(res spf.Result, err error, ip netip.Addr) string {
	if m := mechanism(err, ip); m != "" {
		return "matched " + qualifier(res) + m
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "DNS " + dnsFailure(de)
	}
	if res == spf.PermError && errors.Is(err, spf.ErrNoResult) {
		// "No record" behind a permerror is an include or a redirect whose
		// target has none (§5.2, §6.1), not the domain itself.
		return "included or redirected domain has no SPF record (§5.2, §6.1)"
	}
	for _, p := range phrases {
		if errors.Is(err, p.err) {
			return p.phrase
		}
	}
	switch {
	case err != nil:
		return clip(err.Error())
	case res == spf.Neutral:
		return "no mechanism matched (§4.7)"
	}
	return ""
}

// mechanism names the mechanism a "matched" diagnostic reports, or "".
func mechanism(err error, ip netip.Addr) string {
	switch {
	case errors.Is(err, spf.ErrMatchedAll):
		return "all"
	case errors.Is(err, spf.ErrMatchedA):
		return "a"
	case errors.Is(err, spf.ErrMatchedMX):
		return "mx"
	case errors.Is(err, spf.ErrMatchedPTR):
		return "ptr"
	case errors.Is(err, spf.ErrMatchedExists):
		return "exists"
	case errors.Is(err, spf.ErrMatchedIP):
		// The library does not say which. The client's family is the one
		// (only an IPv4-mapped ip6: prefix could match across families,
		// and nobody publishes those).
		if ip.Is4() {
			return "ip4"
		}
		return "ip6"
	}
	return ""
}

// qualifier is the qualifier of a mechanism that produced res (§4.6.2),
// left out for the implicit "+".
func qualifier(res spf.Result) string {
	switch res {
	case spf.Fail:
		return "-"
	case spf.SoftFail:
		return "~"
	case spf.Neutral:
		return "?"
	}
	return ""
}

// phrases are the library's other diagnostics, read for people. A slice
// and errors.Is rather than a map: a map lookup panics on an error whose
// dynamic type is not comparable.
var phrases = []struct {
	err    error
	phrase string
}{
	{spf.ErrNoResult, "no SPF record (§4.5)"},
	{spf.ErrLookupLimitReached, "lookup limit reached (10 DNS lookups, RFC 7208 §4.6.4)"},
	{spf.ErrVoidLookupLimitReached, "void lookup limit reached (2, §4.6.4)"},
	{spf.ErrMultipleRecords, "more than one SPF record (§4.5)"},
	{spf.ErrTooManyMXRecords, "more than 10 MX records (§4.6.4)"},
	{spf.ErrInvalidMacro, "syntax error: invalid macro (§7.1)"},
	{spf.ErrInvalidIP, "syntax error: invalid ip4 or ip6 address (§5.6)"},
	{spf.ErrInvalidMask, "syntax error: invalid CIDR length (§5.6)"},
	{spf.ErrInvalidDomain, "syntax error: invalid domain-spec or repeated redirect (§4.6.1, §6)"},
	{spf.ErrUnknownField, "syntax error: unknown mechanism (§4.6.1)"},
	{spf.ErrInvalidIPAddress, "invalid client address"},
}

// dnsFailure describes a lookup failure by name and rcode or timeout only:
// the resolver's text may name the server asked, which is nobody's
// business in a verdict record.
func dnsFailure(de *net.DNSError) string {
	what := de.Err
	switch {
	case de.IsTimeout:
		what = "timeout"
	case de.IsNotFound:
		what = "no such name"
	case what == "":
		what = "error"
	}
	name := clip(strings.TrimSuffix(de.Name, "."))
	if name == "" {
		return what
	}
	return name + ": " + what
}
