package greystore

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Memory is a Store in process memory: a least-recently-used cache of at
// most maxKeys entries, each a value and an expiry. It is for the demo and
// tests; everything is lost on restart, and when it is full the entry least
// recently read or written is forgotten (for greylisting: a sender that has
// to retry once more).
//
// One mutex guards everything, so Update is atomic and f runs exactly once
// per call. There is no collector goroutine: an expired entry counts as
// absent, is dropped when an operation comes across it, and otherwise
// waits to be evicted. After Close every operation returns ErrClosed and
// the entries are released.
type Memory struct {
	mu     sync.Mutex
	lru    *simplelru.LRU[string, memEntry]
	closed bool
}

type memEntry struct {
	value []byte
	// expires carries a monotonic clock reading (from time.Now), so a
	// wall-clock step neither revives nor kills entries.
	expires time.Time
}

func (e memEntry) live(now time.Time) bool { return now.Before(e.expires) }

// NewMemory returns an empty memory store of at most maxKeys entries
// (DefaultMemoryKeys if maxKeys is not positive).
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = DefaultMemoryKeys
	}
	l, err := simplelru.NewLRU[string, memEntry](maxKeys, nil)
	if err != nil {
		// Only a non-positive size is refused, and that was replaced above.
		panic("greystore: " + err.Error())
	}
	return &Memory{lru: l}
}

// lookup returns key's live entry, dropping it if it expired. touch marks
// it recently used; Scan must not, or a periodic scan would keep every
// entry at the front. m.mu must be held.
func (m *Memory) lookup(key string, now time.Time, touch bool) (memEntry, bool) {
	var e memEntry
	var ok bool
	if touch {
		e, ok = m.lru.Get(key)
	} else {
		e, ok = m.lru.Peek(key)
	}
	if !ok {
		return memEntry{}, false
	}
	if !e.live(now) {
		m.lru.Remove(key)
		return memEntry{}, false
	}
	return e, true
}

// Get implements Store. The value returned is the caller's to keep.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	e, ok := m.lookup(key, time.Now(), true)
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(e.value), true, nil
}

// Update implements Store. f runs once, with the mutex held, so it must
// not call the store.
func (m *Memory) Update(ctx context.Context, key string, f func(old []byte) ([]byte, time.Duration, error)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	now := time.Now()
	var old []byte
	if e, ok := m.lookup(key, now, true); ok {
		// A copy, so that f scribbling on old and then failing cannot
		// change what is stored.
		old = bytes.Clone(e.value)
	}
	value, ttl, err := f(old)
	if err != nil {
		return err
	}
	if value == nil {
		m.lru.Remove(key)
		return nil
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	m.lru.Add(key, memEntry{value: bytes.Clone(value), expires: now.Add(ttl)})
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.lru.Remove(key)
	return nil
}

// Scan implements Store. The matching entries are copied under the mutex
// and fn is called after it is released, so fn may use the store; it sees
// the entries as they were when Scan began.
func (m *Memory) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	type kv struct {
		key   string
		value []byte
	}
	var found []kv
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	now := time.Now()
	for _, k := range m.lru.Keys() {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if e, ok := m.lookup(k, now, false); ok {
			found = append(found, kv{k, bytes.Clone(e.value)})
		}
	}
	m.mu.Unlock()
	for _, e := range found {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn(e.key, e.value) {
			return nil
		}
	}
	return nil
}

// Len returns how many entries the store holds, expired ones not yet
// dropped included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0
	}
	return m.lru.Len()
}

// Close implements Store: it releases the entries. Closing twice is not
// an error.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.lru.Purge()
	}
	return nil
}
