package ratelimit

import (
	"errors"
	"math"
	"time"
)

// Never is the retry-after of a take that can never succeed, because it
// asks for more cells than the limit allows at once. Callers should split
// the request (one recipient per call, say) rather than wait.
const Never = time.Duration(math.MaxInt64)

// maxPer bounds Per so that now + 2·τ stays far from int64 overflow for
// any wall-clock time this code will see.
const maxPer = 50 * 365 * 24 * time.Hour

// checkTake rejects arguments for which GCRA has no meaning; stores share
// it so they agree on what is an error.
func checkTake(limit int, per time.Duration, n int) error {
	switch {
	case limit <= 0:
		return errors.New("ratelimit: limit must be positive")
	case per <= 0 || per > maxPer:
		return errors.New("ratelimit: per out of range")
	case n < 0:
		return errors.New("ratelimit: negative take")
	}
	return nil
}

// gcra takes n cells at now from a bucket whose theoretical arrival time
// is tat (Unix nanoseconds, 0 for a key never seen), for limit cells per
// per. It returns the TAT to store, which differs from tat only if the
// take succeeded or tat had to be capped, and if not ok how long to wait.
// The arguments must have passed checkTake.
func gcra(tat, now int64, limit int, per time.Duration, n int) (next int64, ok bool, retryAfter time.Duration) {
	if n > limit {
		return tat, false, Never
	}
	interval := (int64(per) + int64(limit) - 1) / int64(limit)
	tau := interval * int64(limit)
	// A stored TAT is never more than τ ahead of the clock it was stored
	// at. One that is ahead now was written before the wall clock stepped
	// back or under a longer Per; capping it costs the client at most one
	// period instead of the size of the step. The cap is stored even on
	// denial, or the client would stay "full" until the clock caught up.
	tat = min(tat, now+tau)
	next = max(tat, now) + int64(n)*interval
	if wait := next - now - tau; wait > 0 {
		return tat, false, time.Duration(wait)
	}
	return next, true, 0
}
