package fcrdns

import (
	"context"
	"errors"
	"net"
)

// isNotFound reports whether err says the name or record does not exist
// (NXDOMAIN or NODATA): a definitive answer, unlike every other error,
// which may pass on a later try.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// describe names a lookup failure briefly for a detail: "timeout", or the
// resolver's own word for it ("SERVFAIL", "REFUSED", ...).
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
