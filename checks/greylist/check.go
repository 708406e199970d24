package greylist

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Check decides one recipient. sender is the envelope sender as received
// ("" for the null sender), rcpt the recipient, ref the reference the
// session gives the client in its reply (a queue or transaction id), kept
// with a new triplet so an operator can Release it.
//
//   - allowed: an allow entry covers the client (see allowed); nothing is
//     written, so the entry ages from its latest pass, not its latest use.
//   - passed: the triplet is live and Delay has passed, or it was
//     released; the client key is then allowed for AllowFor (refreshed on
//     every pass). The triplet stays until it expires, counting passes.
//   - early: the triplet is live and Delay has not passed.
//   - new: no live triplet; one is stored that passes after Delay and
//     expires RetryWindow after now (the window is not extended by
//     retries, so a sender that keeps retrying early cannot hold it open).
//   - skipped: no client key could be formed.
//   - error: the store failed; err says how. Never a panic.
func (g *Greylist) Check(ctx context.Context, c Client, sender, rcpt, ref string) (Decision, error) {
	ck := ClientKey(c, g.o)
	if ck == "" {
		return Decision{State: StateSkipped}, nil
	}
	t := Triplet{Client: ck, Sender: NormalizeSender(sender), Rcpt: asciiLower(rcpt)}
	d := Decision{Key: t.Key()}
	now := g.now()
	allowed, err := g.allowed(ctx, c, ck, now)
	if err != nil {
		return failed(d, err)
	}
	if allowed {
		d.State = StateAllowed
		return d, nil
	}
	rec, state, err := g.step(ctx, d.Key, ref, now)
	if err != nil {
		return failed(d, err)
	}
	d.State, d.FirstSeen, d.PassAt, d.Ref = state, rec.First, rec.PassAt, rec.Ref
	if state == StatePassed {
		if err := g.recordPass(ctx, ck, now); err != nil {
			// The triplet passed; the caller fails open on the error,
			// so the recipient is accepted either way.
			return failed(d, err)
		}
	}
	return d, nil
}

// failed turns a store error into State error.
func failed(d Decision, err error) (Decision, error) {
	d.State = StateError
	return d, fmt.Errorf("greylist: %w", err)
}

// step moves the triplet on in one atomic update. The callback may run
// more than once; it only assigns rec and state, so the values returned
// are those of the run that committed.
func (g *Greylist) step(ctx context.Context, key, ref string, now time.Time) (rec tripletRec, state State, err error) {
	err = g.store.Update(ctx, tripletPrefix+key, func(old []byte) ([]byte, time.Duration, error) {
		r, ok, err := decodeTriplet(old)
		switch {
		case err != nil:
			return nil, 0, err
		case !ok || !now.Before(r.Expires):
			rec, state = tripletRec{V: schemaVersion, First: now, PassAt: now.Add(g.o.Delay), Expires: now.Add(g.o.RetryWindow), Ref: ref}, StateNew
		case r.Released || !now.Before(r.PassAt):
			r.Passes++
			rec, state = r, StatePassed
		default:
			rec, state = r, StateEarly
			return nil, 0, errKeep // an early retry changes nothing: no write
		}
		return encode(rec, rec.Expires, now)
	})
	if errors.Is(err, errKeep) {
		err = nil
	}
	return rec, state, err
}

// recordPass allows the client key for AllowFor from now, or keeps a
// later expiry (an operator's longer allowance is not shortened by a pass).
func (g *Greylist) recordPass(ctx context.Context, ck string, now time.Time) error {
	return g.store.Update(ctx, allowPrefix+ck, func(old []byte) ([]byte, time.Duration, error) {
		r, ok, err := decodeAllow(old)
		if err != nil {
			return nil, 0, err
		}
		if !ok || !now.Before(r.Expires) {
			r = allowRec{V: schemaVersion, First: now, Source: sourcePass}
		}
		if exp := now.Add(g.o.AllowFor); exp.After(r.Expires) {
			r.Expires = exp
		}
		r.Passes++
		return encode(r, r.Expires, now)
	})
}

// lookup is one allow key that may cover a client.
type lookup struct {
	key string
	// operatorOnly: only an operator's entry counts, because the key
	// comes from a claim the session could not verify.
	operatorOnly bool
}

// allowed reports whether a live allow entry covers the client.
func (g *Greylist) allowed(ctx context.Context, c Client, ck string, now time.Time) (bool, error) {
	lookups := g.allowLookups(c, ck)
	for _, l := range lookups {
		if until, ok := g.allowHits.Get(l.cacheKey()); ok && now.Before(until) {
			return true, nil
		}
	}
	for _, l := range lookups {
		b, ok, err := g.store.Get(ctx, allowPrefix+l.key)
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		r, ok, err := decodeAllow(b)
		if err != nil {
			return false, err
		}
		if ok && now.Before(r.Expires) && (!l.operatorOnly || r.Source == sourceOperator) {
			g.allowHits.Add(l.cacheKey(), earliest(r.Expires, now.Add(allowCacheTTL)))
			return true, nil
		}
	}
	return false, nil
}

// cacheKey is the lookup's key in allowHits. Operator-only lookups are
// kept apart: an entry a pass created must never satisfy one.
func (l lookup) cacheKey() string {
	if l.operatorOnly {
		return "op " + l.key
	}
	return l.key
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// allowLookups lists the keys whose allow entries cover the client: its
// client key; its network of the configured size and its exact address,
// whatever its key, since an operator allows addresses regardless of
// authentication; and the organisation of its MAIL FROM domain. Without
// SPF that domain is only a claim, so only an operator's entry counts for
// it: allowing a domain is how an operator lets one-time-code mail from
// senders without SPF through. A pass-created org: entry must not, or
// anyone could forge a big sender's domain past greylisting.
func (g *Greylist) allowLookups(c Client, ck string) []lookup {
	ls := []lookup{{key: ck}}
	add := func(l lookup) {
		for _, x := range ls {
			if x.key == l.key {
				return // the earlier, more permissive lookup covers it
			}
		}
		ls = append(ls, l)
	}
	if p, ok := clientNet(c.IP, g.o); ok {
		add(lookup{key: netKey + p.String()})
	}
	if p, ok := hostNet(c.IP); ok {
		add(lookup{key: netKey + p.String()})
	}
	if d, ok := normDomain(c.MailDomain); ok {
		add(lookup{key: orgKey + orgDomain(d), operatorOnly: true})
	}
	return ls
}
