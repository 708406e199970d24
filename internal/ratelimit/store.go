package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Store keeps the limiter state. Memory is the one-node store; the
// greylisting issue will add a shared store (Redis) for several gateways
// behind one MX, implementing this interface with an atomic script, so
// keep it minimal and atomic in meaning.
//
// A shared store should keep the TAT as Unix nanoseconds of the caller's
// now, run the same arithmetic as the package comment describes (including
// storing the cap at now+τ even on denial), and may expire a key at its TAT, when it is
// equivalent to an absent key.
type Store interface {
	// Take tries to take n cells from key's bucket (limit cells per per)
	// at time now; it returns whether they were taken and, if not, how
	// long until they could be. n > limit is never taken and reports
	// Never; limit or per not positive, or n negative, is an error.
	Take(ctx context.Context, key string, limit int, per time.Duration, n int, now time.Time) (ok bool, retryAfter time.Duration, err error)
}

// Memory is a Store in this process's memory, bounded to a number of
// keys. When full it evicts the least recently used key, which forgets
// that client's state: the client gets a full bucket again, so an
// overflow fails open rather than denying anyone. Memory is safe for
// concurrent use.
type Memory struct {
	// One mutex around a plain LRU, because a take is a read-modify-write
	// that must be atomic; the LRU's own locking would not make it so.
	mu  sync.Mutex
	lru *simplelru.LRU[string, int64] // key → TAT in Unix nanoseconds
}

// NewMemory returns an empty Memory holding at most maxKeys keys (all
// kinds together). It panics if maxKeys is not positive.
func NewMemory(maxKeys int) *Memory {
	lru, err := simplelru.NewLRU[string, int64](maxKeys, nil)
	if err != nil {
		panic("ratelimit: NewMemory: " + err.Error())
	}
	return &Memory{lru: lru}
}

// Take implements Store. It never blocks on I/O, so ctx is unused.
func (m *Memory) Take(_ context.Context, key string, limit int, per time.Duration, n int, now time.Time) (bool, time.Duration, error) {
	if err := checkTake(limit, per, n); err != nil {
		return false, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Get also refreshes a denied key, so an active abuser is the last to
	// be evicted.
	tat, _ := m.lru.Get(key)
	next, ok, retry := gcra(tat, now.UnixNano(), limit, per, n)
	if next != tat {
		m.lru.Add(key, next)
	}
	return ok, retry, nil
}

// Len returns the number of keys held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}
