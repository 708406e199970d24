package greylist

import (
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/policy"
)

func init() {
	// PerRecipient: the decision is made per RCPT, so a transaction with
	// several recipients has no single value at DATA; a rule must not
	// combine it with DATA facts.
	policy.RegisterFact(policy.FactDef{Name: "greylist", Kind: policy.KindString, Stage: policy.StageRcpt, PerRecipient: true,
		Doc: "the greylisting decision for the recipient being evaluated: new (first attempt, deferred), early (retried before the delay, deferred), passed (retried in time, accepted), allowed (client or sender domain allowed, not greylisted), skipped (greylisting did not apply), error (the greylist store failed; the recipient is not deferred)"})
}

// Defaults of Options.
const (
	DefaultDelay       = 5 * time.Minute
	DefaultRetryWindow = 48 * time.Hour
	DefaultAllowFor    = 35 * 24 * time.Hour
	DefaultPrefixV4    = 24
	DefaultPrefixV6    = 64
)

// Options configure a Greylist. Zero values take the defaults.
type Options struct {
	// Delay is how long after the first attempt a retry passes
	// (DefaultDelay).
	Delay time.Duration
	// RetryWindow is how long after the first attempt a retry is still
	// accepted; a later one starts over (DefaultRetryWindow).
	RetryWindow time.Duration
	// AllowFor is how long a client key that passed is allowed without
	// greylisting, counted from its latest pass (DefaultAllowFor).
	AllowFor time.Duration
	// PrefixV4 and PrefixV6 are the network sizes that key a client with
	// neither SPF nor a confirmed PTR (DefaultPrefixV4, DefaultPrefixV6).
	PrefixV4, PrefixV6 int
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// withDefaults fills in the zero fields.
func (o Options) withDefaults() Options {
	if o.Delay == 0 {
		o.Delay = DefaultDelay
	}
	if o.RetryWindow == 0 {
		o.RetryWindow = DefaultRetryWindow
	}
	if o.AllowFor == 0 {
		o.AllowFor = DefaultAllowFor
	}
	if o.PrefixV4 == 0 {
		o.PrefixV4 = DefaultPrefixV4
	}
	if o.PrefixV6 == 0 {
		o.PrefixV6 = DefaultPrefixV6
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// validate reports options no configuration should produce. Delay must be
// below RetryWindow, or no retry could ever pass.
func (o Options) validate() error {
	switch {
	case o.Delay < 0 || o.RetryWindow < 0 || o.AllowFor < 0:
		return fmt.Errorf("negative duration (delay %v, retry window %v, allow for %v)", o.Delay, o.RetryWindow, o.AllowFor)
	case o.Delay >= o.RetryWindow:
		return fmt.Errorf("delay %v is not below the retry window %v", o.Delay, o.RetryWindow)
	case o.PrefixV4 < 0 || o.PrefixV4 > 32:
		return fmt.Errorf("IPv4 prefix /%d out of range", o.PrefixV4)
	case o.PrefixV6 < 0 || o.PrefixV6 > 128:
		return fmt.Errorf("IPv6 prefix /%d out of range", o.PrefixV6)
	}
	return nil
}

// Greylist is the greylisting state machine over a Store. It is safe for
// concurrent use as far as the Store is.
type Greylist struct {
	store greystore.Store
	o     Options
	// allowHits remembers allow entries found in the store, so a regular
	// correspondent costs no store round trip per recipient; see
	// allowCacheTTL. Only hits are kept: a client without an entry is
	// looked up every time, so a pass recorded by another gateway counts
	// at once.
	allowHits *lru.Cache[string, time.Time]
}

// allowCacheTTL bounds how long a remembered allow entry is trusted: an
// entry deleted from a shared store (gateway greylist delete, on another
// machine) stops counting here within this time. allowCacheSize bounds the
// memory: about 100 bytes an entry.
const (
	allowCacheTTL  = time.Minute
	allowCacheSize = 20000
)

// New returns a Greylist keeping its state in store. It panics when store
// is nil or the options are inconsistent (see Options): configuration
// validation must have refused them, so either is a programmer error.
func New(store greystore.Store, o Options) *Greylist {
	if store == nil {
		panic("greylist: New: nil store")
	}
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		panic("greylist: New: " + err.Error())
	}
	hits, err := lru.New[string, time.Time](allowCacheSize)
	if err != nil {
		panic("greylist: New: " + err.Error())
	}
	return &Greylist{store: store, o: o, allowHits: hits}
}

// now is the clock, in UTC so stored times read the same everywhere.
func (g *Greylist) now() time.Time { return g.o.Now().UTC() }

// State is the outcome of Check, and the value of the greylist fact.
type State string

// The states.
const (
	// StateNew: no live triplet; it is created and the recipient deferred.
	StateNew State = "new"
	// StateEarly: the triplet exists but Delay has not passed; deferred.
	StateEarly State = "early"
	// StatePassed: the triplet was retried in time (or released); accepted.
	StatePassed State = "passed"
	// StateAllowed: the client key, network, address or sender domain is
	// allowed; not greylisted.
	StateAllowed State = "allowed"
	// StateSkipped: greylisting did not apply (no key could be formed, or
	// the session's policy skipped it).
	StateSkipped State = "skipped"
	// StateError: the store failed; the session fails open.
	StateError State = "error"
)

// Deferred reports whether the recipient is to be answered "try again
// later".
func (s State) Deferred() bool { return s == StateNew || s == StateEarly }

// Decision is Check's answer for one recipient.
type Decision struct {
	State State
	// Key is the triplet key, for the verdict record.
	Key string
	// FirstSeen is when the triplet was first seen (new, early, passed).
	FirstSeen time.Time
	// PassAt is when a retry will pass (new, early).
	PassAt time.Time
	// Ref is the reference stored with the triplet: the one the sender
	// was given on its first attempt, which an operator can Release.
	Ref string
}
