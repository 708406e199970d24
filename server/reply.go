package server

import (
	"errors"
	"io"
	"log/slog"
	"os"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// asReply turns any error into a *policy.Reply. A *policy.Reply passes
// unchanged; go-smtp's own errors that reach a Session method (the DATA
// reader's) are mapped to ours; anything else is an internal error whose
// text is logged, never sent (style.md §7).
func asReply(err error, log *slog.Logger) *policy.Reply {
	var r *policy.Reply
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &r):
		return r
	case errors.Is(err, smtp.ErrDataTooLarge):
		return policy.ErrTooLarge
	case errors.Is(err, smtp.ErrTooLongLine):
		return policy.ErrLineTooLong
	case errors.Is(err, os.ErrDeadlineExceeded):
		return policy.ErrDataTimeout
	case errors.Is(err, smtp.ErrDataReset), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe):
		return policy.ErrDataAborted
	case errors.As(err, &se):
		// A go-smtp SMTPError we did not make: keep its codes, drop
		// nothing the client could not already see.
		return policy.Passthrough(se.Code, [3]int(se.EnhancedCode), se.Message, policy.ReasonInternal)
	default:
		log.Error("internal error", "err", err)
		return policy.ErrInternal
	}
}

// toSMTP is the go-smtp boundary: the only place a reply becomes the bare
// *smtp.SMTPError that go-smtp type-asserts (a wrapped or plain error would
// reach the client as "451 4.0.0 <raw text>", or from Data as a permanent
// "554 5.0.0"). The reference id is appended to the text here, and
// verdict.ReplyOf renders the record's copy the same way.
func toSMTP(r *policy.Reply, ref string) *smtp.SMTPError {
	if r == nil {
		return nil
	}
	return &smtp.SMTPError{
		Code:         r.Code,
		EnhancedCode: smtp.EnhancedCode(r.Enhanced),
		Message:      verdict.WithRef(r.Text, ref),
	}
}
