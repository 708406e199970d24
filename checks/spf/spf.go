// Package spf checks the Sender Policy Framework (RFC 7208): whether the
// domain of an identity authorizes the client's address to send mail for
// it. check_host() (RFC 7208 §4) is blitiri.com.ar/go/spf's, asked through
// the gateway's caching resolver; this package chooses the identities,
// bounds the time they take and turns the library's diagnostics into
// readable details.
//
// Two identities are checked, in parallel:
//
//   - MAIL FROM (RFC 7208 §2.4): the envelope sender. For the null sender
//     it is "postmaster@" + the HELO name, which the library does not
//     substitute itself; a sender without a local-part gets "postmaster"
//     as well (§4.3).
//   - HELO (RFC 7208 §2.3): "postmaster@" + the HELO name, when that is a
//     domain name rather than an address literal. For the null sender the
//     two are the same check, which runs once.
//
// An identity whose domain is not a multi-label domain name (an address
// literal, "localhost", an empty label) is "none" without any lookup, as
// §4.3 requires.
//
// All seven results of §2.6 are reported (none, neutral, pass, fail,
// softfail, temperror, permerror), with the cause of an error in the
// detail: the lookup limits of §4.6.4 (10 DNS-querying terms, 2 void
// lookups, 10 MX names), the syntax error, or the name and rcode of a DNS
// failure. The library has no overall time budget, so each identity gets
// Options.Timeout, 20 s by default: §4.6.4 says a check should be allowed
// at least that long. The explanation of exp= (§6.2) is not fetched, and
// the ptr mechanism's %{p} expands to "unknown" (library choices).
//
// Stage: the check needs the envelope sender, but runs at policy.StageRcpt:
// the gateway starts it in the background at MAIL FROM and joins it at the
// first RCPT TO, so its DNS latency, which a chain of includes makes the
// longest of any check, overlaps the RCPT round trip instead of delaying
// the reply to MAIL.
package spf

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/policy"
)

// The results (RFC 7208 §2.6), as facts spf and spf.helo and Result.Result.
const (
	None      = "none"
	Neutral   = "neutral"
	Pass      = "pass"
	Fail      = "fail"
	Softfail  = "softfail"
	Temperror = "temperror"
	Permerror = "permerror"
)

// DefaultTimeout is the budget of one identity's check when
// Options.Timeout is zero (RFC 7208 §4.6.4: at least 20 seconds).
const DefaultTimeout = 20 * time.Second

func init() {
	policy.RegisterFact(policy.FactDef{Name: "spf", Kind: policy.KindString, Stage: policy.StageRcpt,
		Doc: "SPF result for the MAIL FROM identity (RFC 7208): pass, fail, softfail, neutral, none, temperror, permerror; for the null sender, of postmaster@HELO"})
	policy.RegisterFact(policy.FactDef{Name: "spf.helo", Kind: policy.KindString, Stage: policy.StageRcpt,
		Doc: "SPF result for the HELO identity (RFC 7208 §2.3); none when the HELO is not a domain name"})
	policy.RegisterFact(policy.FactDef{Name: "spf.domain", Kind: policy.KindDomain, Stage: policy.StageRcpt,
		Doc: "the domain the spf result is about: the MAIL FROM domain, or the HELO name for the null sender; unset when that is not a domain name (an address literal)"})
}

// Options configures the check.
type Options struct {
	// Timeout bounds the check of one identity. Zero means DefaultTimeout.
	Timeout time.Duration
	// Log receives each identity's result and the library's diagnostic at
	// debug level. Nil discards.
	Log *slog.Logger
}

// Check is the SPF check. It is safe for concurrent use.
type Check struct {
	r       resolver.Resolver
	timeout time.Duration
	log     *slog.Logger
}

var _ checks.Check = (*Check)(nil)

// New returns the check, resolving through r.
func New(r resolver.Resolver, o Options) *Check {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Check{r: r, timeout: o.Timeout, log: o.Log}
}

// Name returns "spf".
func (*Check) Name() string { return "spf" }

// Stage returns policy.StageRcpt: started at MAIL FROM, joined at the
// first RCPT TO (see the package comment).
func (*Check) Stage() policy.Stage { return policy.StageRcpt }

// Run checks the MAIL FROM and HELO identities of in. DNS failures are
// temperror results, never errors; ctx bounds every query.
func (c *Check) Run(ctx context.Context, in checks.Input) checks.Result {
	ip := in.IP.Unmap().WithZone("")
	helo := heloIdentity(in.Helo)
	mail := helo
	if in.MailFrom != "" {
		mail = mailIdentity(in.MailFrom)
	}
	var mailOut, heloOut outcome
	switch {
	case !ip.IsValid():
		mailOut = outcome{result: None, why: "no client address"}
		heloOut = mailOut
	case in.MailFrom == "":
		mailOut = c.evaluate(ctx, ip, in.Helo, mail)
		heloOut = mailOut
	default:
		var wg sync.WaitGroup
		wg.Go(func() { heloOut = c.evaluate(ctx, ip, in.Helo, helo) })
		mailOut = c.evaluate(ctx, ip, in.Helo, mail)
		wg.Wait()
	}
	return result(in, mail, helo, mailOut, heloOut)
}

// result assembles the check's result from the two outcomes.
func result(in checks.Input, mail, helo identity, mailOut, heloOut outcome) checks.Result {
	facts := map[string]any{"spf": mailOut.result, "spf.helo": heloOut.result}
	if mail.domain != "" {
		facts["spf.domain"] = mail.domain
	}
	auth := []authres.Result{&authres.SPFResult{Value: authValue(mailOut.result), From: mail.sender, Helo: in.Helo}}
	var detail string
	if in.MailFrom == "" {
		detail = "null sender, helo " + clip(in.Helo) + ": " + mailOut.String()
	} else {
		detail = "mailfrom " + mail.display + ": " + mailOut.String() + "; helo " + clip(in.Helo) + ": " + heloOut.String()
		if helo.skip == "" {
			// Checked on its own: RFC 8601 §2.7.2 reports it as a second
			// spf result carrying only smtp.helo.
			auth = append(auth, &authres.SPFResult{Value: authValue(heloOut.result), Helo: in.Helo})
		}
	}
	return checks.Result{Name: "spf", Result: mailOut.result, Detail: detail, Facts: facts, Auth: auth}
}

// authValue maps a result to its RFC 8601 value. The words are the same;
// going through authres's constants makes a change on either side a
// compile error or a visible "none" rather than a header that drifts.
func authValue(res string) authres.ResultValue {
	switch res {
	case Pass:
		return authres.ResultPass
	case Fail:
		return authres.ResultFail
	case Softfail:
		return authres.ResultSoftFail
	case Neutral:
		return authres.ResultNeutral
	case Temperror:
		return authres.ResultTempError
	case Permerror:
		return authres.ResultPermError
	}
	return authres.ResultNone
}
