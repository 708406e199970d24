package greylist

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The store layout, shared by every gateway on one store, of whatever
// version:
//
//	t:<Triplet.Key()>  a triplet; lives until its expires (first + RetryWindow)
//	a:<ClientKey>      an allow entry; lives until its expires
//
// Values are JSON objects, schema version 1:
//
//	triplet: {"v":1, "first":T, "pass_at":T, "expires":T,
//	          "ref":"…", "released":true, "passes":N}
//	allow:   {"v":1, "first":T, "expires":T, "passes":N,
//	          "source":"pass"|"operator"}
//
// T is an RFC 3339 time in UTC. ref, released and passes are omitted when
// empty, false or 0. "first" is when the triplet was first seen, or when
// the allow entry was created; "pass_at" is when a retry passes; "passes"
// counts the retries that passed (triplet) or the passes recorded for the
// client key (allow). "source" says who allowed the key: a pass, or an
// operator; only an operator's entry for a domain is honoured for a
// sender whose SPF did not pass.
//
// Decisions read expires, not the store's TTL, which only collects
// garbage. Readers follow three rules so that gateways of different
// versions can share a store:
//
//   - unknown fields are ignored (a v1 writer may add optional ones; an
//     older gateway drops them when it rewrites the record, so a field
//     whose loss matters needs a new version);
//   - a record with a higher "v" is left alone: Check reports State error
//     (failing open) rather than overwrite a newer gateway's state;
//   - a record that does not decode, has no "v", or lacks a time it
//     needs ("expires"; for a triplet also "first" and "pass_at"), is
//     treated as absent and overwritten.
const (
	tripletPrefix = "t:"
	allowPrefix   = "a:"
	schemaVersion = 1

	sourcePass     = "pass"
	sourceOperator = "operator"
)

// tripletRec is a triplet's value.
type tripletRec struct {
	V        int       `json:"v"`
	First    time.Time `json:"first"`
	PassAt   time.Time `json:"pass_at"`
	Expires  time.Time `json:"expires"`
	Ref      string    `json:"ref,omitempty"`
	Released bool      `json:"released,omitempty"`
	Passes   int       `json:"passes,omitempty"`
}

// allowRec is an allow entry's value.
type allowRec struct {
	V       int       `json:"v"`
	First   time.Time `json:"first"`
	Expires time.Time `json:"expires"`
	Passes  int       `json:"passes,omitempty"`
	Source  string    `json:"source"`
}

// errNewer reports a record of a later schema version.
var errNewer = errors.New("greylist: record of a newer schema version")

// errKeep aborts a Store.Update whose record must stay as it is: no write,
// and no need to know the TTL the store holds.
var errKeep = errors.New("greylist: keep record")

// decodeRec decodes a value into rec (a *tripletRec or *allowRec). ok is
// false when there is no usable record (valid says which are); err is
// errNewer for a later version.
func decodeRec(b []byte, rec any, valid func() bool) (ok bool, err error) {
	if b == nil {
		return false, nil
	}
	var head struct {
		V int `json:"v"`
	}
	if json.Unmarshal(b, &head) != nil || head.V <= 0 {
		return false, nil
	}
	if head.V > schemaVersion {
		return false, fmt.Errorf("%w (v%d)", errNewer, head.V)
	}
	if json.Unmarshal(b, rec) != nil || !valid() {
		return false, nil
	}
	return true, nil
}

// decodeTriplet decodes a triplet; one without its three times is not
// usable (a zero pass_at would pass at once).
func decodeTriplet(b []byte) (tripletRec, bool, error) {
	var r tripletRec
	ok, err := decodeRec(b, &r, func() bool { return !r.First.IsZero() && !r.PassAt.IsZero() && !r.Expires.IsZero() })
	return r, ok, err
}

// decodeAllow decodes an allow entry. An unknown source counts as a
// pass, the weaker of the two.
func decodeAllow(b []byte) (allowRec, bool, error) {
	var r allowRec
	ok, err := decodeRec(b, &r, func() bool { return !r.Expires.IsZero() })
	return r, ok, err
}

// encode marshals a record, with its TTL: the time left until expires.
func encode(rec any, expires, now time.Time) ([]byte, time.Duration, error) {
	b, err := json.Marshal(rec)
	return b, expires.Sub(now), err
}
