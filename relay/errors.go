package relay

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/policy"
)

// outcome is what one exchange with the backend came to.
type outcome struct {
	reply  *policy.Reply // nil: the backend said 2xx
	broken bool          // the connection must not be used again
}

// classify maps what go-smtp returned for a command to the reply the client
// gets. A reply the backend gave is passed through with reason; 421 (the
// backend is closing, RFC 5321 §3.8) and codes a server may not end a
// command with also break the connection. Anything that is not a reply is
// a transport failure: timeout, or the connection is lost.
func classify(ctx context.Context, err error, reason policy.Reason) outcome {
	if err == nil {
		return outcome{}
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch {
		case se.Code/100 == 2:
			// textproto wanted an exact code (250) but any 2xx is positive
			// completion (RFC 5321 §4.2.1).
			return outcome{}
		case se.Code == 421:
			return outcome{reply: policy.Passthrough(se.Code, se.EnhancedCode, se.Message, reason), broken: true}
		case se.Code/100 == 4 || se.Code/100 == 5:
			return outcome{reply: policy.Passthrough(se.Code, se.EnhancedCode, se.Message, reason)}
		default:
			// 1xx, 3xx or nonsense where a final reply belongs: the
			// dialogue is out of step.
			return outcome{reply: policy.ErrBackendLost, broken: true}
		}
	}
	return outcome{reply: transportReply(ctx, err), broken: true}
}

// transportReply picks the fixed reply for a failure that is not an SMTP
// reply. A context that ended closed the connection under the operation, so
// its error decides, not the resulting "use of closed connection".
func transportReply(ctx context.Context, err error) *policy.Reply {
	switch {
	case ctx != nil && errors.Is(ctx.Err(), context.Canceled):
		return policy.ErrBackendLost
	case ctxDone(ctx):
		return policy.ErrBackendTimout
	case isTimeout(err):
		return policy.ErrBackendTimout
	default:
		return policy.ErrBackendLost
	}
}

// ctxDone reports whether ctx has ended or reached its deadline: a
// connection deadline taken from the context fires a moment before the
// context's own timer does.
func ctxDone(ctx context.Context) bool {
	if ctx == nil {
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// connectError is why no connection to a server could be had. reply is
// ErrBackendDown or ErrBackendTimout; cause is for the log only.
type connectError struct {
	reply *policy.Reply
	cause error
	// tlsFailure: the connection stood but TLS could not be established,
	// which opportunistic mode answers with plaintext rather than failover.
	tlsFailure bool
	// noSlot: the pool was full; not the server's fault.
	noSlot bool
}

func (e *connectError) Error() string { return e.cause.Error() }
func (e *connectError) Unwrap() error { return e.cause }

// connectFailure wraps a failure while connecting: timeouts stay timeouts
// (RFC 5321 §4.5.3.2 gives each phase its own), everything else means the
// destination is unavailable, since no transaction was started.
func connectFailure(ctx context.Context, err error) *connectError {
	r := policy.ErrBackendDown
	if transportReply(ctx, err) == policy.ErrBackendTimout {
		r = policy.ErrBackendTimout
	}
	return &connectError{reply: r, cause: err}
}

// splitEnhanced removes the RFC 2034 enhanced status code from a reply
// text: go-smtp does so for error replies but leaves positive ones as they
// came. It strips the code from every line that carries it and returns
// {class,0,0} when the first line has none (or one of another class).
func splitEnhanced(code int, text string) ([3]int, string) {
	class := code / 100
	none := [3]int{class, 0, 0}
	first, _, _ := strings.Cut(text, "\n")
	tok, _, _ := strings.Cut(first, " ")
	enh, ok := parseEnhanced(tok)
	if !ok || enh[0] != class {
		return none, text
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if rest, found := strings.CutPrefix(l, tok); found && (rest == "" || rest[0] == ' ') {
			lines[i] = strings.TrimPrefix(rest, " ")
		}
	}
	return enh, strings.Join(lines, "\n")
}

func parseEnhanced(s string) ([3]int, bool) {
	var enh [3]int
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return enh, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || p == "" || p[0] == '+' {
			return enh, false
		}
		enh[i] = n
	}
	return enh, true
}
