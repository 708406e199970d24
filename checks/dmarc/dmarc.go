// Package dmarc evaluates DMARC (RFC 7489) for a received message: whether
// the domain in its From field authenticated it, through an SPF or DKIM
// identifier aligned with that domain, and which policy its owner asks
// receivers to apply when not.
//
// The check makes no SPF or DKIM query of its own. It runs after the spf
// and dkim checks (checks/registry orders it) and reads their facts from
// the prior results: spf and spf.domain, dkim and dkim.domains. So the
// three results always agree, and DMARC costs one or two TXT lookups.
//
// The steps, each in its own file:
//
//   - from.go: the RFC5322.From domain (§6.6.1). No From field, several
//     of them, several addresses, or an address without a usable domain
//     is permerror, so rules can reject what §6.6.1 says is "typically
//     rejected".
//   - domain.go: the Organizational Domain from the Public Suffix List
//     (§3.2), and identifier alignment (§3.1), relaxed or strict.
//   - discover.go: the record at _dmarc.<From domain>, else at
//     _dmarc.<Organizational Domain> (§6.6.3).
//   - evaluate.go: the result and the policy that applies (§6.6.4, with sp
//     and pct of §6.3).
//
// Where RFC 7489 leaves room, the choices are:
//
//   - A TXT record whose first tag is v=DMARC1 but that does not parse
//     (no valid p, a bad pct, a stray token) is permerror, so the broken
//     record is visible (RFC 7489 §11.2 lists it as a permerror cause);
//     no policy applies, as §6.6.3 step 7 would conclude. Tag names and
//     policy words are case-insensitive (the ABNF of §6.4), so "p=Reject"
//     is a reject policy, not a broken record.
//   - Two or more DMARC records at one name: result none, no policy
//     (§6.6.3 step 6), and no fallback to the Organizational Domain.
//   - A temporary DNS failure at either name is temperror: the policy
//     cannot be known, and failing open on it would let a flaky resolver
//     disable DMARC.
//   - pct (§6.6.4) is sampled by a hash of the Message-ID rather than at
//     random, so a retry of a message gets the same answer.
//   - A fail whose policy is quarantine or reject is temperror instead
//     when SPF of an aligned domain was temperror: the aligned identifier
//     might have passed, and a DNS fault must not become a bounce.
//
// Facts: dmarc, dmarc.policy and dmarc.domain. header_from.domain is a
// core fact the server sets, not this check.
package dmarc

import (
	"context"
	"log/slog"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/policy"
)

// The results (RFC 7489 §11.2), as fact dmarc and Result.Result.
const (
	Pass      = "pass"
	Fail      = "fail"
	None      = "none"
	TempError = "temperror"
	PermError = "permerror"
)

// The policies (RFC 7489 §6.3 "p"), as fact dmarc.policy.
const (
	PolicyNone       = "none"
	PolicyQuarantine = "quarantine"
	PolicyReject     = "reject"
)

// DefaultTimeout bounds one TXT lookup when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

func init() {
	policy.RegisterFact(policy.FactDef{Name: "dmarc", Kind: policy.KindString, Stage: policy.StageData,
		Doc: `the DMARC result for the From domain (RFC 7489): "pass" (SPF or DKIM passed for an aligned domain), "fail" (a record exists and neither did), "none" (no record, or several), "temperror" (the record lookup failed transiently) or "permerror" (no usable From field, or an invalid record)`})
	policy.RegisterFact(policy.FactDef{Name: "dmarc.policy", Kind: policy.KindString, Stage: policy.StageData,
		Doc: `the DMARC policy that applies to this message, after sp and pct (RFC 7489 §6.6.4): "none", "quarantine" or "reject"; always "none" unless dmarc is "fail"`})
	policy.RegisterFact(policy.FactDef{Name: "dmarc.domain", Kind: policy.KindDomain, Stage: policy.StageData,
		Doc: "the From domain DMARC evaluated, lower-case A-label; unset when the From field gave none"})
}

// Options configure the check.
type Options struct {
	// Timeout bounds each DNS lookup; zero means DefaultTimeout.
	Timeout time.Duration
	// Log receives lookup failures; nil discards.
	Log *slog.Logger
}

// Check is the DMARC check. It is safe for concurrent use.
type Check struct {
	r       resolver.Resolver
	timeout time.Duration
	log     *slog.Logger
}

var _ checks.Check = (*Check)(nil)

// New returns the check, resolving through r.
func New(r resolver.Resolver, o Options) *Check {
	c := &Check{r: r, timeout: o.Timeout, log: o.Log}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Name returns "dmarc".
func (*Check) Name() string { return "dmarc" }

// Stage returns policy.StageData: DMARC needs the header section, and the
// SPF and DKIM results.
func (*Check) Stage() policy.Stage { return policy.StageData }

// Run evaluates the message in in.Message against the spf and dkim facts
// of in.Prior. DNS failures are results, never errors; ctx bounds every
// lookup.
func (c *Check) Run(ctx context.Context, in checks.Input) checks.Result {
	if in.Message == nil {
		// Only a wiring mistake gets here; permerror ("no From header")
		// would let the default rules reject every message for it.
		return checks.Result{Name: "dmarc", Result: None, Detail: "no message", Facts: map[string]any{"dmarc": None, "dmarc.policy": PolicyNone}}
	}
	o := Evaluate(EvalInput{
		Header:      in.Message.Header(),
		SPF:         factString(in, "spf"),
		SPFDomain:   factString(in, "spf.domain"),
		DKIM:        factString(in, "dkim"),
		DKIMDomains: factStrings(in, "dkim.domains"),
		Lookup:      c.lookup(ctx),
	})
	if o.Result == TempError {
		c.log.Info("dmarc: result temperror", "domain", o.Domain, "detail", o.Detail)
	}
	return result(o)
}

// lookup makes one TXT query under the per-lookup timeout.
func (c *Check) lookup(ctx context.Context) LookupTXT {
	return func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return c.r.LookupTXT(ctx, name)
	}
}

// result turns an outcome into the check's result, facts and the
// Authentication-Results entry (RFC 7489 §11.2, RFC 8601 header.from).
func result(o Outcome) checks.Result {
	facts := map[string]any{"dmarc": o.Result, "dmarc.policy": o.Policy}
	if o.Domain != "" {
		facts["dmarc.domain"] = o.Domain
	}
	ar := &authres.DMARCResult{Value: authres.ResultValue(o.Result), From: o.Domain}
	if o.Result == TempError || o.Result == PermError {
		ar.Reason = o.Detail
	}
	return checks.Result{Name: "dmarc", Result: o.Result, Detail: o.Detail, Facts: facts, Auth: []authres.Result{ar}}
}

// factString reads a string fact; absent (the check did not run) is "".
func factString(in checks.Input, name string) string {
	v, _ := in.Fact(name)
	s, _ := v.(string)
	return s
}

// factStrings reads a set fact, as []string or as the []any a generic
// producer might build.
func factStrings(in checks.Input, name string) []string {
	v, _ := in.Fact(name)
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		return []string{v}
	}
	return nil
}
