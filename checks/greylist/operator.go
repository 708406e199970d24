package greylist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The kinds of Entry.
const (
	KindTriplet = "triplet"
	KindAllow   = "allow"
)

// Entry is one live record, as `greylist list` shows it.
type Entry struct {
	// Kind is KindTriplet or KindAllow.
	Kind string `json:"kind"`
	// Key is the triplet key or the client key; Delete takes it.
	Key string `json:"key"`
	// FirstSeen is when the triplet was first seen, or when the allow
	// entry was created.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// PassAt is when the triplet's retry passes (triplets only).
	PassAt time.Time `json:"pass_at,omitzero"`
	// Expires is when the record ends.
	Expires time.Time `json:"expires,omitzero"`
	// Ref is the reference the sender was given (triplets only).
	Ref string `json:"ref,omitempty"`
	// Released reports an operator's Release (triplets only).
	Released bool `json:"released,omitempty"`
	// Passes counts the retries that passed (triplet) or the passes that
	// refreshed the entry (allow).
	Passes int `json:"passes,omitempty"`
	// Source is who allowed the key, "pass" or "operator" (allow only).
	Source string `json:"source,omitempty"`
}

// Allow lets what through without greylisting for d. what is one of:
//
//   - an IP address: "net:192.0.2.7/32" (IPv4-mapped as IPv4);
//   - a CIDR range, stored as the units Check looks up: client networks
//     of the configured size ("192.0.2.0/23" → two "net:…/24" entries), or
//     single addresses for a range narrower than that ("192.0.2.0/30" →
//     four /32 entries); at most 256 entries;
//   - a domain, or "org:DOMAIN": "org:" + its organisational domain
//     ("mail.example.com" → "org:example.com"). It covers senders with
//     SPF for the domain and also, since an operator vouched for it, the
//     MAIL FROM domain without SPF (one-time-code mail);
//   - "ptr:DOMAIN": clients whose confirmed PTR is in that organisation;
//   - "net:CIDR", as a CIDR range.
//
// An existing entry is overwritten with the operator's lifetime, so Allow
// also shortens one.
func (g *Greylist) Allow(ctx context.Context, what string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("greylist: allow %q: lifetime %v is not positive", what, d)
	}
	keys, err := g.allowKeys(what)
	if err != nil {
		return err
	}
	now := g.now()
	exp := now.Add(d)
	for _, k := range keys {
		err := g.store.Update(ctx, allowPrefix+k, func(old []byte) ([]byte, time.Duration, error) {
			r, ok, err := decodeAllow(old)
			if err != nil {
				return nil, 0, err
			}
			if !ok || !now.Before(r.Expires) {
				r = allowRec{V: schemaVersion, First: now}
			}
			r.Source, r.Expires = sourceOperator, exp
			return encode(r, exp, now)
		})
		if err != nil {
			return fmt.Errorf("greylist: allow %s: %w", k, err)
		}
	}
	return nil
}

// Release marks every live triplet stored with ref as released, so each
// passes on its next try; a message with several recipients has one
// triplet per recipient, all with its ref. It reports whether any was.
func (g *Greylist) Release(ctx context.Context, ref string) (bool, error) {
	if ref == "" {
		return false, nil
	}
	now := g.now()
	keys := map[string]bool{} // a set: a Redis SCAN may return a key twice
	err := g.store.Scan(ctx, tripletPrefix, func(k string, v []byte) bool {
		if r, ok, _ := decodeTriplet(v); ok && r.Ref == ref && now.Before(r.Expires) {
			keys[k] = true
		}
		return true
	})
	if err != nil {
		return false, fmt.Errorf("greylist: release %q: %w", ref, err)
	}
	released := false
	for k := range keys {
		var done bool
		err := g.store.Update(ctx, k, func(old []byte) ([]byte, time.Duration, error) {
			done = false
			r, ok, err := decodeTriplet(old)
			switch {
			case err != nil:
				return nil, 0, err
			case !ok || r.Ref != ref || !now.Before(r.Expires):
				return nil, 0, errKeep // gone or replaced since the scan
			}
			r.Released, done = true, true
			return encode(r, r.Expires, now)
		})
		if err != nil && !errors.Is(err, errKeep) {
			return released, fmt.Errorf("greylist: release %q: %w", ref, err)
		}
		released = released || done
	}
	return released, nil
}

// Delete removes a triplet (by its key, as List shows it) or allow
// entries (by their client key, or anything Allow takes, so `delete X`
// undoes `allow X`). It reports whether any record was there.
func (g *Greylist) Delete(ctx context.Context, key string) (bool, error) {
	g.allowHits.Purge() // in this process at once; elsewhere within allowCacheTTL
	keys, err := g.storeKeys(key)
	if err != nil {
		return false, err
	}
	found := false
	for _, k := range keys {
		_, ok, err := g.store.Get(ctx, k)
		if err == nil && ok {
			found = true
			err = g.store.Delete(ctx, k)
		}
		if err != nil {
			return found, fmt.Errorf("greylist: delete %s: %w", k, err)
		}
	}
	return found, nil
}

// storeKeys resolves Delete's argument to store keys. Only triplet keys
// contain '|'. A client key is also taken verbatim, so an entry made under
// another prefix size (before a configuration change) can still be
// deleted by the key List shows.
func (g *Greylist) storeKeys(key string) ([]string, error) {
	if strings.Contains(key, "|") {
		return []string{tripletPrefix + key}, nil
	}
	ks, err := g.allowKeys(key)
	if err != nil {
		return nil, err
	}
	var out []string
	if strings.HasPrefix(key, netKey) || strings.HasPrefix(key, orgKey) || strings.HasPrefix(key, ptrKey) {
		out = append(out, allowPrefix+key)
	}
	for _, k := range ks {
		if k != key {
			out = append(out, allowPrefix+k)
		}
	}
	return out, nil
}

// List returns the live records, allow entries first, each kind sorted by
// key.
func (g *Greylist) List(ctx context.Context) ([]Entry, error) {
	now := g.now()
	seen := map[string]Entry{} // by store key: a Redis SCAN may repeat one
	err := g.store.Scan(ctx, tripletPrefix, func(k string, v []byte) bool {
		if r, ok, _ := decodeTriplet(v); ok && now.Before(r.Expires) {
			seen[k] = Entry{Kind: KindTriplet, Key: strings.TrimPrefix(k, tripletPrefix), FirstSeen: r.First, PassAt: r.PassAt,
				Expires: r.Expires, Ref: r.Ref, Released: r.Released, Passes: r.Passes}
		}
		return true
	})
	if err == nil {
		err = g.store.Scan(ctx, allowPrefix, func(k string, v []byte) bool {
			if r, ok, _ := decodeAllow(v); ok && now.Before(r.Expires) {
				seen[k] = Entry{Kind: KindAllow, Key: strings.TrimPrefix(k, allowPrefix), FirstSeen: r.First,
					Expires: r.Expires, Passes: r.Passes, Source: r.Source}
			}
			return true
		})
	}
	if err != nil {
		return nil, fmt.Errorf("greylist: list: %w", err)
	}
	out := make([]Entry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		// "allow" sorts before "triplet".
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Key, b.Key))
	})
	return out, nil
}
