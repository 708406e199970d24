package dkim

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/checks"
)

// maxListed bounds the signatures listed one by one in Detail and Auth: a
// message may carry thousands, and each would be a line of the record and
// a result in Authentication-Results. The configuration allows at most 50
// to be verified, so every verified one is listed.
const maxListed = 50

// maxReason bounds a reason in Authentication-Results; go-msgauth's texts
// are short, but a DNS error quotes the name looked up.
const maxReason = 200

// precedence orders results for best, most telling first.
var precedence = []string{"pass", "temperror", "fail", "permerror", "neutral"}

// best returns the result the dkim fact reports: pass if any signature
// passed; else temperror if any lookup failed for now, because that
// signature may yet pass and must not be hidden behind another's fail
// (a rule rejecting on fail would reject mail that a retry could
// authenticate); else fail, evidence of a signature that did not match;
// else permerror, a signature that could not be checked at all and so
// tells no more than its absence would; else neutral (only unverified
// signatures); "none" without signatures.
func best(sigs []Signature) string {
	top := len(precedence)
	for _, s := range sigs {
		if i := slices.Index(precedence, s.Result); i >= 0 && i < top {
			top = i
		}
	}
	if top == len(precedence) {
		return "none"
	}
	return precedence[top]
}

// report builds the check's result from verified signatures.
func report(sigs []Signature) checks.Result {
	r := checks.Result{
		Name:   "dkim",
		Result: best(sigs),
		Facts:  map[string]any{"dkim.domains": passing(sigs)},
	}
	r.Facts["dkim"] = r.Result
	if len(sigs) == 0 {
		r.Detail = "no signature"
		r.Auth = []authres.Result{&authres.GenericResult{Method: "dkim", Value: authres.ResultNone}}
		return r
	}
	lines := make([]string, 0, min(len(sigs), maxListed)+1)
	for _, s := range sigs[:min(len(sigs), maxListed)] {
		lines = append(lines, s.line())
		r.Auth = append(r.Auth, s.auth())
	}
	if n := len(sigs) - maxListed; n > 0 {
		lines = append(lines, fmt.Sprintf("%d more signatures not verified and not listed", n))
	}
	r.Detail = strings.Join(lines, "; ")
	return r
}

// passing returns the d= of the passing signatures, each once, in order.
// Never nil: an empty set is a value rules can match with false.
func passing(sigs []Signature) []string {
	out := []string{}
	for _, s := range sigs {
		if s.Result == "pass" && s.Domain != "" && !slices.Contains(out, s.Domain) {
			out = append(out, s.Domain)
		}
	}
	return out
}

// line is the signature in Detail: "d=example.test s=sel1 rsa-sha256:
// fail (body hash did not verify)".
func (s Signature) line() string {
	l := fmt.Sprintf("d=%s s=%s %s: %s", s.Domain, s.Selector, s.Algorithm, s.Result)
	if s.Reason != "" {
		l += " (" + s.Reason + ")"
	}
	return l
}

// auth is the signature's Authentication-Results entry. It is a
// GenericResult because authres.DKIMResult prints only header.d and
// header.i, while RFC 8601 §2.7.1 also lists header.a and header.s, which
// say which key was used. authres.Format prints the parameters sorted by
// name, after reason, and leaves out empty ones.
func (s Signature) auth() authres.Result {
	params := map[string]string{
		"header.d": safe(s.Domain),
		"header.s": safe(s.Selector),
		"header.i": safe(s.Identifier),
		"header.a": safe(s.Algorithm),
	}
	if s.Reason != "" {
		params["reason"] = safe(truncate(s.Reason, maxReason))
	}
	return &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(s.Result), Params: params}
}

// unverifiable is the result for a message go-msgauth could not read.
func unverifiable(err error) checks.Result {
	reason := errText(err)
	return checks.Result{
		Name:   "dkim",
		Result: "permerror",
		Detail: "message not verifiable: " + reason,
		Facts:  map[string]any{"dkim": "permerror", "dkim.domains": []string{}},
		Auth: []authres.Result{&authres.GenericResult{Method: "dkim", Value: authres.ResultPermError,
			Params: map[string]string{"reason": safe(truncate(reason, maxReason))}}},
	}
}

// safe makes a value from the message fit to print in a header field.
// authres quotes a value with a double quote but does not escape a
// backslash, so a signature's tags could end the quoted string early and
// add text of their own; control characters and non-ASCII (which the
// header field cannot carry unencoded) go too, each replaced by '?'.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
