// Package ratelimit enforces per-client limits on connections, messages
// and recipients for the SMTP gateway. It only decides; the caller answers
// 421 4.7.0 (connections) or 451 4.7.1 (messages, recipients) and may quote
// the retry-after it is given.
//
// # Clients
//
// A client is its IPv4 address, or the /64 its IPv6 address is in: one
// host or one customer line routinely holds a whole /64, so limiting single
// IPv6 addresses would limit nothing. IPv4-mapped IPv6 addresses count as
// the IPv4 address. See [Key].
//
// # Algorithm
//
// Limits are metered with GCRA, the generic cell rate algorithm (the
// "leaky bucket as a meter" of ATM networks, as in redis-cell and Stripe's
// limiter). A rate of Limit cells per Per has an emission interval
// T = Per/Limit (rounded up to the nanosecond, so the rate is never
// exceeded) and a tolerance τ = Limit·T, which is what allows a burst of
// Limit at once. The only state per key is one timestamp, the theoretical
// arrival time TAT: when the bucket would be empty again if nothing more
// were taken. Taking n cells at time now computes
//
//	next = max(TAT, now) + n·T
//
// and succeeds, storing TAT = next, if next − now ≤ τ; otherwise nothing is
// stored and the client may retry after next − now − τ, which is exact.
// A key never seen (or forgotten) behaves as TAT ≤ now: a full bucket.
//
// Worked example, 3 per second: T = 333.3 ms, τ = 1 s. At t = 0 three takes
// move TAT to 0.33, 0.67 and 1 s, each with next − now ≤ 1 s. A fourth at
// t = 0 gives next = 1.33 s, 1.33 s over τ by 0.33 s: denied, retry after
// 333 ms. At t = 0.33 s, next = 1.33 s and next − now = 1 s: allowed. From
// then on one take is allowed every 333 ms.
//
// GCRA is a meter, not a window counter: the long-run rate is Limit per
// Per and at most Limit pass at once, but a window of length Per can see up
// to 2·Limit−1 (a full burst at its start, then the refills). A denied take
// changes nothing, so clients retrying while denied do not extend their
// wait. Taking more than Limit cells at once can never succeed and reports
// [Never].
//
// # Stores
//
// [Store] holds the TATs. [Memory] is the one-node store, a bounded LRU;
// a shared store lets several gateways behind one MX share limits.
package ratelimit
