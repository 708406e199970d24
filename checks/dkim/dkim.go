// Package dkim verifies the DKIM signatures of a message (RFC 6376), RSA
// (rsa-sha256; rsa-sha1 is refused, RFC 8301 §3.1) and Ed25519
// (ed25519-sha256, RFC 8463), with github.com/emersion/go-msgauth/dkim
// doing the cryptography and the gateway's resolver the key lookups.
//
// Every signature gets one of the RFC 8601 §2.7.1 results:
//
//   - pass: the signature verified;
//   - fail: it did not (body hash or signature mismatch), or it has an
//     l= body length limit, which go-msgauth refuses because it lets
//     anyone append unsigned content (RFC 6376 §8.1);
//   - temperror: the key could not be fetched for now (SERVFAIL, timeout;
//     RFC 6376 §6.1.2 TEMPFAIL);
//   - permerror: the signature cannot be verified at all: no key
//     (NXDOMAIN), a revoked key (empty p=, §3.6.1), a missing tag, an
//     unknown algorithm, an expired x= (§6.1.1 PERMFAIL);
//   - neutral: not verified because the message carries more than
//     Options.MaxSignatures signatures; each one verified costs a DNS
//     lookup and a public-key operation, and §6.1 lets a verifier
//     limit them.
//
// The check's result, and the dkim fact, is the best of them in the order
// pass, temperror, fail, permerror, neutral (see best). The d= of every
// passing signature is in dkim.domains, for DMARC (RFC 7489 §3.1.1) and
// rules. Each signature is one Authentication-Results entry: an
// authres.GenericResult with header.d, header.s, header.i and header.a
// (RFC 8601 §2.7.1), because authres.DKIMResult has no selector, and the
// reason, when there is one, in Params["reason"]. Nothing here decides: an unsigned or failing message is evidence,
// not a verdict (RFC 6376 §6.3).
package dkim

import (
	"context"
	"log/slog"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/policy"
)

func init() {
	policy.RegisterFact(policy.FactDef{Name: "dkim", Kind: policy.KindString, Stage: policy.StageData,
		Doc: "the best DKIM result over the message's signatures: pass, temperror, fail, permerror, neutral, or none without a signature"})
	policy.RegisterFact(policy.FactDef{Name: "dkim.domains", Kind: policy.KindSet, Stage: policy.StageData,
		Doc: "the d= domains of the signatures that passed"})
}

// Defaults for zero Options fields.
const (
	DefaultMaxSignatures = 5
	DefaultTimeout       = 5 * time.Second
)

// Options configure the check.
type Options struct {
	// MaxSignatures is how many signatures are verified, the first ones
	// in header order (default 5); the rest are reported as neutral,
	// "not verified (limit)".
	MaxSignatures int
	// Timeout bounds each key lookup (default 5s).
	Timeout time.Duration
	// Log receives a debug line per message; nil discards.
	Log *slog.Logger
}

// Check is the DKIM check. It is safe for concurrent use.
type Check struct {
	r       resolver.Resolver
	max     int
	timeout time.Duration
	log     *slog.Logger
}

var _ checks.Check = (*Check)(nil)

// New returns the check, looking keys up with r.
func New(r resolver.Resolver, o Options) *Check {
	c := &Check{r: r, max: o.MaxSignatures, timeout: o.Timeout, log: o.Log}
	if c.max <= 0 {
		c.max = DefaultMaxSignatures
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Name returns "dkim".
func (*Check) Name() string { return "dkim" }

// Stage returns policy.StageData: signatures cover the message.
func (*Check) Stage() policy.Stage { return policy.StageData }

// Run verifies the signatures of in.Message. Without a message it sets no
// facts, so rules see DKIM as unknown rather than as unsigned.
func (c *Check) Run(ctx context.Context, in checks.Input) checks.Result {
	if in.Message == nil {
		return checks.Result{Name: "dkim", Result: "none", Detail: "no message"}
	}
	sigs, err := c.verify(ctx, in.Message)
	if err != nil {
		c.log.Debug("dkim: message not verifiable", "err", err)
		return unverifiable(err)
	}
	r := report(sigs)
	c.log.Debug("dkim", "signatures", len(sigs), "result", r.Result)
	return r
}
