package policy

// Values are the facts known about one transaction so far. Set checks each
// value against its fact's kind, so a condition never meets a value of the
// wrong type, and stores it in one representation per kind (string,
// netip.Addr, float64, bool, []string). Map and ValuesFromMap convert to
// and from the JSON form in the verdict record, which is how `gateway
// replay` decides a recorded transaction again without DNS.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
)

// Values holds the facts known about one transaction so far. The zero
// value is not usable; call NewValues. A Values is not safe for concurrent
// use; Clone gives a copy another goroutine may own.
type Values struct {
	m map[string]any
}

// NewValues returns an empty set of facts, sized for the thirty or so facts a
// transaction gathers, so that it does not grow step by step as they come.
func NewValues() *Values { return &Values{m: make(map[string]any, typicalFacts)} }

// typicalFacts is about how many facts a clean transaction sets.
const typicalFacts = 32

// Set records a fact. val must fit the fact's kind: a string for string,
// domain and address facts, a valid netip.Addr for ip, an integer or
// finite float for number, a bool for bool, a []string for set (copied).
// Names in a family ("header.X-Mailer") are stored lower-cased after the
// prefix. The score fact cannot be set: the evaluation supplies it.
func (v *Values) Set(name string, val any) error {
	key, def, ok := canonicalFact(name)
	if !ok {
		return fmt.Errorf("policy: unknown fact %q", name)
	}
	if key == scoreFact {
		return errors.New("policy: fact score is computed by the evaluation and cannot be set")
	}
	norm, err := convert(def.Kind, val)
	if err != nil {
		return fmt.Errorf("policy: fact %s: %w", key, err)
	}
	v.m[key] = norm
	return nil
}

// convert checks that val fits kind and returns its stored form.
func convert(kind Kind, val any) (any, error) {
	switch kind {
	case KindString, KindDomain, KindAddress:
		if s, ok := val.(string); ok {
			return s, nil
		}
	case KindIP:
		if a, ok := val.(netip.Addr); ok {
			if !a.IsValid() {
				return nil, errors.New("the zero netip.Addr is not an address")
			}
			return a, nil
		}
	case KindNumber:
		if f, ok := toFloat(val); ok {
			// The record is JSON, which has no NaN or infinity.
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("%v is not a finite number", f)
			}
			return f, nil
		}
	case KindBool:
		if b, ok := val.(bool); ok {
			return b, nil
		}
	case KindSet:
		if s, ok := val.([]string); ok {
			return append([]string{}, s...), nil
		}
	}
	return nil, fmt.Errorf("want a value for a %s fact, got %T", kind, val)
}

func toFloat(val any) (float64, bool) {
	switch n := val.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float32:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// Get returns a fact's value in its stored form (see Set) and whether it
// is set. A set is returned as a copy.
func (v *Values) Get(name string) (any, bool) {
	key, _, ok := canonicalFact(name)
	if !ok {
		return nil, false
	}
	val, ok := v.get(key)
	if s, isSet := val.([]string); isSet {
		return slices.Clone(s), ok
	}
	return val, ok
}

// get looks up a canonical name; a nil Values knows nothing, so a
// condition can be tried before any fact exists.
func (v *Values) get(key string) (any, bool) {
	if v == nil {
		return nil, false
	}
	val, ok := v.m[key]
	return val, ok
}

// Map returns a snapshot for the verdict record: each fact under its
// canonical name, ip as its string form, number as float64, set as a
// []string (never nil, so an empty set is [] in JSON).
func (v *Values) Map() map[string]any {
	if v == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(v.m))
	for k, val := range v.m {
		switch x := val.(type) {
		case netip.Addr:
			out[k] = x.String()
		case []string:
			out[k] = slices.Clone(x)
		default:
			out[k] = val
		}
	}
	return out
}

// ValuesFromMap rebuilds Values from a decoded verdict record's facts: the
// inverse of Map after a JSON round trip, where numbers arrive as float64
// (or json.Number), ip as a string and a set as []any of strings. Every
// problem is reported, unknown facts together in one error naming them.
func ValuesFromMap(m map[string]any) (*Values, error) {
	v := NewValues()
	var unknown []string
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m)) {
		_, def, ok := canonicalFact(name)
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		val, err := fromJSON(def.Kind, m[name])
		if err == nil {
			err = v.Set(name, val)
		} else {
			err = fmt.Errorf("policy: fact %s: %w", name, err)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(unknown) > 0 {
		errs = append([]error{fmt.Errorf("policy: unknown facts: %s", strings.Join(unknown, ", "))}, errs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// fromJSON turns a JSON-decoded value into what Set takes for kind.
func fromJSON(kind Kind, val any) (any, error) {
	switch kind {
	case KindIP:
		s, ok := val.(string)
		if !ok {
			return nil, fmt.Errorf("want an IP address string, got %T", val)
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		return a, nil
	case KindNumber:
		if n, ok := val.(json.Number); ok {
			return n.Float64()
		}
	case KindSet:
		list, ok := val.([]any)
		if !ok {
			return val, nil // []string, or a wrong type Set reports
		}
		out := make([]string, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d: want a string, got %T", i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return val, nil
}

// Clone returns an independent copy. Stored values are immutable (sets are
// copied in and out), so copying the map is enough.
func (v *Values) Clone() *Values {
	if v == nil {
		return NewValues()
	}
	return &Values{m: maps.Clone(v.m)}
}
