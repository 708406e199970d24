package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Rate is a limit of Limit units per Per. Limit 0 means no limit; so does
// a non-positive Per, which configuration validation should reject.
type Rate struct {
	Limit int
	Per   time.Duration
}

func (r Rate) enabled() bool { return r.Limit > 0 && r.Per > 0 }

// Kind names what is being limited. It prefixes the store key, so each
// kind has its own bucket per client.
type Kind string

// The kinds the gateway limits.
const (
	Connections Kind = "connections" // per accepted connection; 421 4.7.0
	Messages    Kind = "messages"    // per message transaction; 451 4.7.1
	Recipients  Kind = "recipients"  // per accepted RCPT TO; 451 4.7.1
)

var errInvalidAddr = errors.New("ratelimit: invalid client address")

// Limiter applies per-client rates of several kinds over one Store. It is
// safe for concurrent use if its Store is.
type Limiter struct {
	store Store
	rates map[Kind]Rate    // enabled kinds only
	now   func() time.Time // time.Now; tests override it
}

// New returns a Limiter over store with the given rates; kinds absent from
// rates, or with Limit 0, are not limited. rates is copied.
func New(store Store, rates map[Kind]Rate) *Limiter {
	l := &Limiter{store: store, rates: make(map[Kind]Rate, len(rates)), now: time.Now}
	for k, r := range rates {
		if r.enabled() {
			l.rates[k] = r
		}
	}
	return l
}

// Enabled reports whether kind is limited at all, so callers can skip
// work (and logging) for unlimited kinds.
func (l *Limiter) Enabled(kind Kind) bool {
	_, ok := l.rates[kind]
	return ok
}

// Allow takes n units of kind for the client ip; a store error fails OPEN
// (allowed, and the error returned for logging/metrics). When not allowed,
// retryAfter is how long until the same take would be, or Never if n
// exceeds the limit. An invalid ip also fails open with an error.
//
// The store key is the kind, a colon and Key(ip), e.g.
// "recipients:2001:db8:1:2::/64".
func (l *Limiter) Allow(ctx context.Context, kind Kind, ip netip.Addr, n int) (ok bool, retryAfter time.Duration, err error) {
	r, on := l.rates[kind]
	if !on {
		return true, 0, nil
	}
	if !ip.IsValid() {
		return true, 0, errInvalidAddr
	}
	// Built on the stack so the string conversion is the one allocation.
	var buf [64]byte
	key := appendKey(append(append(buf[:0], kind...), ':'), ip)
	ok, retryAfter, err = l.store.Take(ctx, string(key), r.Limit, r.Per, n, l.now())
	if err != nil {
		// Fail open: a broken store must not turn the gateway into a
		// tempfail-everything machine.
		return true, 0, fmt.Errorf("ratelimit: %s for %s: %w", kind, Key(ip), err)
	}
	return ok, retryAfter, nil
}
