// Package greystore is where greylisting keeps its state: a small
// key-value interface with an atomic read-modify-write, and three
// implementations chosen by checks.greylist.store:
//
//   - memory: bounded LRU, for the demo and tests (lost on restart);
//   - bbolt:PATH: an embedded file that survives restarts, expired entries
//     collected in the background; the default for serve;
//   - redis://host:port/db: shared by several gateways behind the same MX
//     records, updated with WATCH/MULTI/EXEC, expiry with PEXPIRE.
//
// The greylisting state machine (checks/greylist) is written once, in Go,
// on top of Update; the stores only keep bytes, so they cannot disagree
// about what a triplet's state means. One conformance suite
// (greystoretest) runs against all three.
package greystore

import (
	"context"
	"errors"
	"time"
)

// Store keeps values under keys, each with its own expiry.
type Store interface {
	// Get returns the value of key, or ok false when there is none (or it
	// expired).
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Update atomically replaces key's value with what f returns, given
	// the current value (nil when there is none). f returns the new value
	// and how long it lives; a nil value deletes the key. f may be called
	// more than once (after a conflict with another gateway) and must not
	// have side effects. An error from f aborts the update and is returned.
	Update(ctx context.Context, key string, f func(old []byte) (value []byte, ttl time.Duration, err error)) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Scan calls fn for every live key with the prefix, in no particular
	// order, until fn returns false.
	Scan(ctx context.Context, prefix string, fn func(key string, value []byte) bool) error
	// Close releases the store.
	Close() error
}

// ErrConflict is returned by Update when the key kept changing under it
// (another gateway writing the same triplet) for every retry.
var ErrConflict = errors.New("greystore: update conflict, retries exhausted")
