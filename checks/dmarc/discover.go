package dmarc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	lru "github.com/hashicorp/golang-lru/v2"
)

// found is what discovery learned: a record, or the result that stands in
// for one (none, temperror, permerror) and why.
type found struct {
	rec    *dmarc.Record
	at     string // the domain whose _dmarc name holds rec
	result string // "" when rec is set
	detail string
}

// discover is the policy discovery of RFC 7489 §6.6.3: the From domain's
// record, else the Organizational Domain's. The second query is made
// only when the first name has no DMARC record at all; a temporary
// failure, several records or an invalid record at the first name end
// discovery there, since the org record may not be the one that applies.
func discover(lookup LookupTXT, from, org string) found {
	f, next := queryName(lookup, from)
	if next && org != from {
		f, _ = queryName(lookup, org)
	}
	return f
}

// queryName reads the DMARC record of one domain. next is true when the
// name has no DMARC record, which is when discovery moves on.
func queryName(lookup LookupTXT, domain string) (f found, next bool) {
	name := "_dmarc." + domain
	var txts []string
	var err error
	if lookup != nil {
		txts, err = lookup(name + ".") // absolute: no search list may answer
	}
	if err != nil {
		return lookupFailed(name, err)
	}
	var rec *parsed
	n := 0
	for _, t := range txts {
		if r := parseTXT(t); r != nil {
			rec = r
			n++
		}
	}
	switch n {
	case 0:
		return found{result: None, detail: "no DMARC record"}, true
	case 1:
	default:
		// The answer order is arbitrary, so neither record can be
		// trusted to be the one the owner meant (§6.6.3 step 6).
		return found{result: None, detail: fmt.Sprintf("%d DMARC records at %s: no policy applies", n, name)}, false
	}
	if rec.err != "" {
		return found{result: PermError, detail: fmt.Sprintf("invalid DMARC record at %s: %s", name, rec.err)}, false
	}
	return found{rec: rec.rec, at: domain}, false
}

// parsed is a TXT string read as a DMARC record: the record, or why it is
// invalid.
type parsed struct {
	rec *dmarc.Record
	err string
}

// notDMARC is what the cache holds for a TXT string that is no DMARC
// record at all.
var notDMARC = &parsed{}

// records holds TXT strings already read: a domain's record is the same
// for every message from it, and parsing it again each time was a third
// of the check's allocations. The records in it are shared between
// goroutines and must not be changed. The key is the TXT string itself,
// so an owner's new record is a new entry, never a stale one; the size
// bounds what a flood of distinct records can hold.
var records, _ = lru.New[string, *parsed](4096)

// parseTXT returns a TXT string's DMARC record, or nil when the string is
// not one (its first tag is not v=DMARC1).
func parseTXT(txt string) *parsed {
	if p, ok := records.Get(txt); ok {
		if p == notDMARC {
			return nil
		}
		return p
	}
	p := notDMARC
	if canon, ok := canonicalRecord(txt); ok {
		p = &parsed{}
		if rec, err := dmarc.Parse(canon); err != nil {
			p.err = strings.TrimPrefix(err.Error(), "dmarc: ")
		} else {
			p.rec = rec
		}
	}
	records.Add(txt, p)
	if p == notDMARC {
		return nil
	}
	return p
}

// lookupFailed classifies a failed TXT lookup. Not found (NXDOMAIN or
// NODATA) is "no record here"; a temporary failure is temperror, because
// the policy cannot be known. Any other *net.DNSError is a request the DNS
// can never answer (a name over 253 octets, say), so no record can exist;
// an error of any other type is unknown and fails safe as temperror.
func lookupFailed(name string, err error) (found, bool) {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return found{result: None, detail: "no DMARC record"}, true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return found{result: TempError, detail: name + ": " + describe(err)}, false
	case de != nil && (de.IsTemporary || de.IsTimeout):
		return found{result: TempError, detail: name + ": " + describe(err)}, false
	case de != nil:
		return found{result: None, detail: name + ": " + describe(err)}, true
	}
	return found{result: TempError, detail: name + ": " + err.Error()}, false
}

// describe names a lookup failure briefly: "timeout", or the resolver's
// own word for it ("SERVFAIL", "REFUSED", ...).
func describe(err error) string {
	var de *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &de) && de.IsTimeout:
		return "timeout"
	case de != nil && de.Err != "":
		return de.Err
	}
	return err.Error()
}

// canonicalRecord reports whether a TXT string is a DMARC record, one
// whose first tag is v=DMARC1 (§6.6.3 step 3; the ABNF of §6.4 makes the
// tag names and the policy words case-insensitive and "DMARC1" exact),
// and returns it spelt the way go-msgauth's case-sensitive parser
// accepts: tag names and the values of p, sp, adkim, aspf, fo and rf
// lower-cased, so "P=Reject" is the reject policy its owner published
// rather than an invalid record. Report URIs keep their case. Leading
// whitespace is tolerated: the owner's intent is plain.
func canonicalRecord(txt string) (string, bool) {
	tags := strings.Split(txt, ";")
	k, v, _ := strings.Cut(tags[0], "=")
	if !strings.EqualFold(strings.TrimSpace(k), "v") || strings.TrimSpace(v) != "DMARC1" {
		return "", false
	}
	out := make([]string, 0, len(tags))
	out = append(out, "v=DMARC1")
	for _, t := range tags[1:] {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			out = append(out, t) // empty, or a stray token the parser refuses
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		switch k {
		case "p", "sp", "adkim", "aspf", "fo", "rf":
			v = strings.ToLower(v)
		}
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ";"), true
}
