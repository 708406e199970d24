package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// Reply is the one internal error type that carries an SMTP reply: basic
// code, enhanced code, client-visible text and the reason token. Every
// component that wants the client to see something returns a *Reply; the
// SMTP boundary (package server) converts it to go-smtp's *SMTPError and
// turns any other error into ErrInternal, so raw error text never reaches a
// client.
//
// Text is what the client sees (before the reference id is appended). It is
// generic on purpose: details belong in the verdict record.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
	Reason   Reason
}

// Error makes *Reply an error, so it flows through ordinary Go error returns.
func (r *Reply) Error() string {
	return fmt.Sprintf("%d %s %s", r.Code, r.EnhancedString(), r.Text)
}

// EnhancedString formats the enhanced status code as "x.y.z".
func (r *Reply) EnhancedString() string {
	return fmt.Sprintf("%d.%d.%d", r.Enhanced[0], r.Enhanced[1], r.Enhanced[2])
}

// Temporary reports whether the reply is a 4xx.
func (r *Reply) Temporary() bool { return r.Code/100 == 4 }

// Permanent reports whether the reply is a 5xx.
func (r *Reply) Permanent() bool { return r.Code/100 == 5 }

// Valid reports whether the basic and enhanced codes agree in class (RFC 3463
// §2: the enhanced class must equal the first digit of the basic code) and
// the code is one a server may send.
func (r *Reply) Valid() error {
	class := r.Code / 100
	if r.Code < 200 || r.Code > 599 || class == 3 {
		return fmt.Errorf("reply code %d is not a 2xx, 4xx or 5xx", r.Code)
	}
	if r.Enhanced[0] != class {
		return fmt.Errorf("reply %d has enhanced code %s of another class", r.Code, r.EnhancedString())
	}
	if r.Enhanced[1] < 0 || r.Enhanced[1] > 999 || r.Enhanced[2] < 0 || r.Enhanced[2] > 999 {
		return fmt.Errorf("reply %d has malformed enhanced code %s", r.Code, r.EnhancedString())
	}
	return nil
}

// WithText returns a copy of r with another text, for replies whose text
// names something specific (a limit, a domain).
func (r *Reply) WithText(format string, args ...any) *Reply {
	c := *r
	c.Text = fmt.Sprintf(format, args...)
	return &c
}

// Passthrough builds the reply for an answer the backend gave, keeping its
// code, enhanced code and text, so the sender sees exactly why the backend
// refused. Two things are repaired rather than passed on, because the client
// must never see an inconsistent reply: an enhanced code that is missing or
// of another class becomes "x.0.0" of the basic code's class (RFC 3463), and
// a 421 becomes a 451 (the backend closing its connection to us is not the
// gateway closing the client's connection). Text control characters other
// than line breaks are dropped.
func Passthrough(code int, enhanced [3]int, text string, reason Reason) *Reply {
	if code == 421 {
		code = 451
	}
	r := &Reply{Code: code, Enhanced: enhanced, Text: cleanText(text), Reason: reason}
	if r.Enhanced[0] != code/100 {
		r.Enhanced = [3]int{code / 100, 0, 0}
	}
	if code < 200 || code > 599 || code/100 == 3 {
		// Not a reply a server may end a command with: treat as our fault.
		return ErrInternal
	}
	if r.Text == "" {
		r.Text = "Backend replied without text"
	}
	return r
}

func cleanText(s string) string {
	return strings.Map(func(c rune) rune {
		if c == '\n' {
			return c
		}
		if c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, strings.TrimRight(s, "\r\n"))
}

// placeholderRE finds the {fact.name} placeholders of a rule's reply text.
var placeholderRE = regexp.MustCompile(`\{([a-z0-9_.-]+)\}`)

// placeholderProblem says what is wrong with the placeholders of a reply
// text (an unknown fact, an unclosed brace), or "".
func placeholderProblem(text string) string {
	for _, m := range placeholderRE.FindAllStringSubmatch(text, -1) {
		if _, ok := LookupFact(m[1]); !ok {
			return fmt.Sprintf("reply names {%s}, which is not a fact", m[1])
		}
	}
	if rest := placeholderRE.ReplaceAllString(text, ""); strings.ContainsAny(rest, "{}") {
		return "reply has a { or } that is not part of a {fact.name} placeholder"
	}
	return ""
}

// Facts returns the canonical names of the facts the reply's placeholders
// name, in order of appearance; nil for a nil reply.
func (r *Reply) Facts() []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, m := range placeholderRE.FindAllStringSubmatch(r.Text, -1) {
		if name, _, ok := canonicalFact(m[1]); ok {
			out = append(out, name)
		}
	}
	return out
}

// maxExpanded bounds what one placeholder may add to a reply.
const maxExpanded = 200

// Expand returns r with every {fact.name} placeholder replaced by the
// fact's value in v ("" when unset): a set becomes a comma-separated list,
// and the value is reduced to printable ASCII and at most 200 characters,
// so nothing a client sent can break the reply line. r itself is shared
// and never changed.
func (r *Reply) Expand(v *Values) *Reply {
	if v == nil || !strings.Contains(r.Text, "{") {
		return r
	}
	c := *r
	c.Text = placeholderRE.ReplaceAllStringFunc(r.Text, func(ph string) string {
		val, ok := v.Get(ph[1 : len(ph)-1])
		if !ok {
			return ""
		}
		var s string
		switch x := val.(type) {
		case []string:
			s = strings.Join(x, ",")
		default:
			s = fmt.Sprint(x)
		}
		s = strings.Map(func(c rune) rune {
			if c < ' ' || c > '~' || c == '{' || c == '}' {
				return -1
			}
			return c
		}, s)
		if len(s) > maxExpanded {
			s = s[:maxExpanded]
		}
		return s
	})
	return &c
}
