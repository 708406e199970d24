// Package dnserr builds the *net.DNSError values that both the caching
// resolver and its test fake return, so the two cannot drift apart.
//
// The SPF, DKIM and DMARC libraries classify lookup failures with a type
// assertion (err.(*net.DNSError)) rather than errors.As, so these values
// must reach them unwrapped: a wrapped SERVFAIL turns SPF's temperror (a
// 451, retried) into permerror (possibly a wrong 550). The field choices
// follow net.Resolver's, so code written against the standard library
// keeps working:
//
//   - NXDOMAIN and NODATA: IsNotFound, Err "no such host" (RFC 2308 §1
//     distinguishes them, but every consumer here treats both as "no
//     record", exactly as net.Resolver does);
//   - SERVFAIL, REFUSED and any other rcode: IsTemporary, Err the rcode;
//   - timeouts: IsTimeout and IsTemporary;
//   - any other transport failure: IsTemporary.
package dnserr

import (
	"context"
	"errors"
	"net"
)

// Texts that mirror net.Resolver's, so logs read the same whichever
// resolver produced them.
const (
	noSuchHost = "no such host"
	ioTimeout  = "i/o timeout"
	canceled   = "operation was canceled"
)

// NotFound is the answer for NXDOMAIN and for NODATA.
func NotFound(name string) *net.DNSError {
	return &net.DNSError{Err: noSuchHost, Name: name, IsNotFound: true}
}

// Temporary is a failure that may go away by itself: SERVFAIL, REFUSED,
// an unexpected rcode or a transport error.
func Temporary(name, server, reason string) *net.DNSError {
	return &net.DNSError{Err: reason, Name: name, Server: server, IsTemporary: true}
}

// Timeout is a query that got no answer in time.
func Timeout(name, server string) *net.DNSError {
	return &net.DNSError{Err: ioTimeout, Name: name, Server: server, IsTimeout: true, IsTemporary: true}
}

// Invalid is a malformed request (an address that is not one, an unknown
// network). It is neither temporary nor not-found: asking again cannot help
// and "no record" would be a lie.
func Invalid(name, reason string) *net.DNSError {
	return &net.DNSError{Err: reason, Name: name}
}

// FromContext maps the caller's context error. UnwrapErr keeps
// errors.Is(err, context.Canceled) working without wrapping the DNSError
// itself (Go 1.23+), which is also what net.Resolver does.
func FromContext(name string, err error) *net.DNSError {
	if errors.Is(err, context.DeadlineExceeded) {
		e := Timeout(name, "")
		e.UnwrapErr = err
		return e
	}
	e := Temporary(name, "", canceled)
	e.UnwrapErr = err
	return e
}
