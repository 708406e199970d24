package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/checks"
)

// verify returns the message's signatures with their results, or an error
// when the message as a whole cannot be verified.
func (c *Check) verify(ctx context.Context, m checks.Message) ([]Signature, error) {
	header := m.Header()
	sigs := Signatures(header)
	if len(sigs) == 0 {
		// Nothing to verify: spare reading the message.
		return nil, nil
	}
	verifs, err := dkim.VerifyWithOptions(messageReader(m, header), &dkim.VerifyOptions{
		LookupTXT:        c.lookup(ctx),
		MaxVerifications: c.max,
	})
	// Too many signatures is our own limit, not a fault of the message:
	// the first ones were verified.
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return nil, err
	}
	// Header() stops at 256 KiB; go-msgauth reads the whole header from
	// Open(), so it may see signatures past that point.
	for i := len(sigs); i < len(verifs); i++ {
		sigs = append(sigs, Signature{Domain: strings.ToLower(verifs[i].Domain), Identifier: verifs[i].Identifier})
	}
	for i := range sigs {
		if i < len(verifs) {
			sigs[i].Result, sigs[i].Reason = classify(verifs[i].Err, sigs[i].BodyLimited)
		} else {
			sigs[i].Result, sigs[i].Reason = "neutral", fmt.Sprintf("not verified: limit of %d signatures", c.max)
		}
	}
	return sigs, nil
}

// lookup adapts the resolver to go-msgauth, whose API has no context: each
// lookup gets its own deadline under ctx. The error is returned as the
// resolver gives it, an unwrapped *net.DNSError, because go-msgauth tells
// temperror from permerror with a type assertion on it (a wrapped SERVFAIL
// would become a permerror). The name is made absolute so no search list
// can apply.
func (c *Check) lookup(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return c.r.LookupTXT(ctx, dns.Fqdn(name))
	}
}

// classify maps a go-msgauth verification error to an RFC 8601 result and
// a reason.
func classify(err error, bodyLimited bool) (result, reason string) {
	switch {
	case err == nil:
		return "pass", ""
	case dkim.IsTempFail(err):
		return "temperror", errText(err)
	case dkim.IsPermFail(err):
		return "permerror", errText(err)
	case bodyLimited:
		// go-msgauth refuses l= before it looks at the hashes, so this
		// failure says nothing about whether the signature was good.
		return "fail", "l= body length limit not accepted (" + errText(err) + ")"
	default:
		return "fail", errText(err)
	}
}

// errText is an error's text without go-msgauth's "dkim: " prefix, which
// the record says already.
func errText(err error) string {
	return strings.TrimPrefix(err.Error(), "dkim: ")
}

// messageReader returns the message for go-msgauth, which insists on the
// empty line that ends the header section, though RFC 5322 §3.5 makes it
// optional for a message without a body. Without one, Header() is the
// whole message or was cut at 256 KiB; either way, ending the message
// with empty lines completes the header and changes no body hash: both
// canonicalizations ignore empty lines at the end of the body (RFC 6376
// §3.4.3, §3.4.4).
func messageReader(m checks.Message, header []byte) io.Reader {
	switch {
	case bytes.Equal(header, []byte("\r\n")) || bytes.HasSuffix(header, []byte("\n\r\n")):
		return m.Open()
	case bytes.HasSuffix(header, []byte("\n")):
		return io.MultiReader(m.Open(), strings.NewReader("\r\n"))
	default:
		return io.MultiReader(m.Open(), strings.NewReader("\r\n\r\n"))
	}
}
