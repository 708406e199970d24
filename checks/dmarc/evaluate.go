package dmarc

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// LookupTXT answers a TXT query for an absolute name
// ("_dmarc.example.test."), with errors as the resolver returns them
// (*net.DNSError, unwrapped).
type LookupTXT func(name string) ([]string, error)

// EvalInput is everything the DMARC decision depends on.
type EvalInput struct {
	// Header is the message's header section: From, Message-ID and Date
	// are read from it.
	Header []byte
	// SPF is the SPF result of the MAIL FROM identity ("pass", "fail",
	// ...); "" when SPF did not run, which counts as none.
	SPF string
	// SPFDomain is the domain SPF evaluated: the MAIL FROM domain, or the
	// HELO name for the null sender (RFC 7208 §2.4).
	SPFDomain string
	// DKIM is the best DKIM result, for the detail only.
	DKIM string
	// DKIMDomains are the d= domains of the signatures that passed.
	DKIMDomains []string
	// Lookup answers the DMARC record queries; nil answers "not found".
	// Evaluate does no other I/O, so with a lookup over fixed answers it
	// is a pure function (tests, explain).
	Lookup LookupTXT
}

// Outcome is the DMARC decision for one message.
type Outcome struct {
	// Result is Pass, Fail, None, TempError or PermError.
	Result string
	// Policy is the policy that applies to this message after sp and
	// pct: "none", "quarantine" or "reject"; "none" unless Result is
	// Fail.
	Policy string
	// Domain is the From domain (lower-case A-label); "" when the From
	// field gave none.
	Domain string
	// OrgDomain is Domain's Organizational Domain.
	OrgDomain string
	// RecordDomain is the domain whose _dmarc name held Record: Domain or
	// OrgDomain; "" with no record.
	RecordDomain string
	// Record is the DMARC record found; nil when none applies. It is
	// shared with every other outcome from the same published record
	// (parsed records are cached): read it, never change it.
	Record *dmarc.Record
	// SPFAligned and DKIMAligned say which identifiers passed aligned.
	SPFAligned, DKIMAligned bool
	// Sampled is whether pct selected the message for the requested
	// policy; always true when pct is 100 or absent.
	Sampled bool
	// Detail explains the outcome to people.
	Detail string
}

// Evaluate decides DMARC for a message (RFC 7489 §6.6): the From domain
// (§6.6.1), the record (§6.6.3), identifier alignment (§3.1) and the
// policy that applies (§6.6.4).
func Evaluate(in EvalInput) Outcome {
	h := scanHeader(in.Header)
	a, problem := h.author()
	if problem != "" {
		return Outcome{Result: PermError, Policy: PolicyNone, Detail: problem}
	}
	o := Outcome{Domain: a.domain, OrgDomain: orgDomain(a.domain), Policy: PolicyNone}
	head := fmt.Sprintf("from %s (org %s)", o.Domain, o.OrgDomain)
	f := discover(in.Lookup, o.Domain, o.OrgDomain)
	if f.rec == nil {
		o.Result, o.Detail = f.result, head+": "+f.detail
		return o
	}
	o.Record, o.RecordDomain = f.rec, f.at
	o.judge(in, h, a, head)
	return o
}

// judge sets the result and the policy that applies once a record is
// found: pass when an identifier aligns, else fail and the policy the
// record asks for this domain, relaxed when pct leaves the message out.
func (o *Outcome) judge(in EvalInput, h headerInfo, a author, head string) {
	rec := o.Record
	spfStrict, dkimStrict := rec.SPFAlignment == dmarc.AlignmentStrict, rec.DKIMAlignment == dmarc.AlignmentStrict
	o.SPFAligned = in.SPF == "pass" && aligned(in.SPFDomain, o.Domain, spfStrict)
	for _, d := range in.DKIMDomains {
		o.DKIMAligned = o.DKIMAligned || aligned(d, o.Domain, dkimStrict)
	}
	tag, requested := requestedPolicy(rec, o.RecordDomain, o.Domain)
	pct := percent(rec)
	o.Sampled = sampled(h, a, in.Header, pct)
	why := "(" + spfNote(in, *o) + "; " + dkimNote(in, *o) + ")"
	pol := fmt.Sprintf("record _dmarc.%s %s=%s", o.RecordDomain, tag, requested)
	switch {
	case o.SPFAligned || o.DKIMAligned:
		o.Result = Pass
	case requested != PolicyNone && in.SPF == "temperror" && aligned(in.SPFDomain, o.Domain, spfStrict):
		// A fail here would rest on a DNS failure: SPF of an aligned
		// domain might have passed. Rejecting on it would turn a
		// transient fault into a bounce (design: faults fail safe).
		o.Result = TempError
		o.Detail = fmt.Sprintf("%s %s: temperror %s: aligned SPF could not be evaluated", head, pol, why)
		return
	default:
		o.Result, o.Policy = Fail, requested
		if pct < 100 && requested != PolicyNone {
			pol += fmt.Sprintf(" pct=%d %s", pct, sampleWord(o.Sampled))
			if !o.Sampled {
				o.Policy = relax(requested)
			}
		}
	}
	o.Detail = fmt.Sprintf("%s %s: %s %s", head, pol, o.Result, why)
	if o.Result == Fail {
		o.Detail += ": policy " + o.Policy
	}
}

// requestedPolicy is the policy the record asks for the From domain
// (§6.6.4 via §6.3 "sp"): sp when the record is the Organizational
// Domain's and the From domain is a subdomain of it and sp is given, else
// p. It names the tag it came from.
func requestedPolicy(rec *dmarc.Record, at, from string) (tag, p string) {
	if at != from && rec.SubdomainPolicy != "" {
		return "sp", string(rec.SubdomainPolicy)
	}
	return "p", string(rec.Policy)
}

// percent is pct, 100 when absent (§6.3).
func percent(rec *dmarc.Record) int {
	if rec.Percent == nil {
		return 100
	}
	return *rec.Percent
}

// relax is the next less strict policy, which §6.6.4 applies to failing
// messages that pct leaves out.
func relax(p string) string {
	if p == PolicyReject {
		return PolicyQuarantine
	}
	return PolicyNone
}

// sampled decides whether a message falls in the pct% a policy applies
// to (§6.6.4). RFC 7489 asks for a random sample; this one is a hash of
// the message instead, so a retry of a message gets the same answer as
// the first attempt (a 451 on one try and a 250 on the next would make
// the policy meaningless), and the gateways of one cluster agree.
func sampled(h headerInfo, a author, header []byte, pct int) bool {
	switch {
	case pct >= 100:
		return true
	case pct <= 0:
		return false
	}
	return bucket(sampleKey(h, a, header)) < uint64(pct)
}

// sampleKey is what identifies a message across retries: its Message-ID,
// with folding whitespace collapsed, or, when it has none, the From
// address, the Date and the start of the header section.
func sampleKey(h headerInfo, a author, header []byte) string {
	if id := strings.Join(strings.Fields(h.messageID), " "); id != "" {
		return "message-id\x00" + id
	}
	head := header[:min(len(header), 1024)]
	return "fallback\x00" + a.address + "\x00" + h.date + "\x00" + string(head)
}

func sampleWord(in bool) string {
	if in {
		return "sampled"
	}
	return "not sampled"
}

// bucket maps a key to 0..99.
func bucket(key string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(key))
	return f.Sum64() % 100
}

// spfNote describes the SPF identifier for the detail.
func spfNote(in EvalInput, o Outcome) string {
	res := in.SPF
	if res == "" {
		res = "none"
	}
	s := "spf " + res
	if in.SPFDomain != "" {
		s += " " + in.SPFDomain
	}
	switch {
	case o.SPFAligned:
		s += " aligned"
	case res == "pass":
		s += " not aligned"
	}
	if o.Record.SPFAlignment == dmarc.AlignmentStrict {
		s += " (aspf=s)"
	}
	return s
}

// dkimNote describes the DKIM identifiers for the detail.
func dkimNote(in EvalInput, o Outcome) string {
	res := in.DKIM
	if res == "" {
		res = "none"
	}
	s := "dkim " + res
	if len(in.DKIMDomains) > 0 {
		s += " " + strings.Join(in.DKIMDomains, ",")
		if o.DKIMAligned {
			s += " aligned"
		} else {
			s += " not aligned"
		}
	}
	if o.Record.DKIMAlignment == dmarc.AlignmentStrict {
		s += " (adkim=s)"
	}
	return s
}
