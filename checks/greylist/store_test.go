package greylist

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// memStore is a Store in a map, for the tests (greystore's own stores are
// tested by greystoretest). It ignores TTLs for expiry, because the tests'
// clock is fake and decisions must come from the records' own times; it
// records them, to check them.
type memStore struct {
	mu     sync.Mutex
	vals   map[string][]byte
	ttls   map[string]time.Duration
	writes int
	gets   int
	// replay runs every Update callback twice and keeps the second
	// result, as a store does after a conflict: a callback with side
	// effects would show.
	replay bool
	// fail, when set, is returned by every operation whose name
	// ("get", "update", "delete", "scan") it is keyed under.
	fail map[string]error
}

func newMemStore() *memStore {
	return &memStore{vals: map[string][]byte{}, ttls: map[string]time.Duration{}}
}

func (m *memStore) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["get"]; err != nil {
		return nil, false, err
	}
	m.gets++
	v, ok := m.vals[key]
	return v, ok, nil
}

func (m *memStore) Update(_ context.Context, key string, f func(old []byte) ([]byte, time.Duration, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["update"]; err != nil {
		return err
	}
	old := m.vals[key]
	if m.replay {
		if _, _, err := f(old); err != nil {
			return err
		}
	}
	v, ttl, err := f(old)
	if err != nil {
		return err
	}
	if v == nil {
		delete(m.vals, key)
		delete(m.ttls, key)
		return nil
	}
	if ttl <= 0 {
		return fmt.Errorf("memStore: %s: ttl %v", key, ttl)
	}
	m.vals[key], m.ttls[key] = v, ttl
	m.writes++
	return nil
}

func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["delete"]; err != nil {
		return err
	}
	delete(m.vals, key)
	delete(m.ttls, key)
	return nil
}

func (m *memStore) Scan(_ context.Context, prefix string, fn func(string, []byte) bool) error {
	m.mu.Lock()
	type kv struct {
		k string
		v []byte
	}
	var all []kv
	for k, v := range m.vals {
		if strings.HasPrefix(k, prefix) {
			all = append(all, kv{k, v})
		}
	}
	err := m.fail["scan"]
	m.mu.Unlock()
	if err != nil {
		return err
	}
	// Outside the lock, and each key twice, as a Redis SCAN may give it.
	for _, e := range all {
		for range 2 {
			if !fn(e.k, e.v) {
				return nil
			}
		}
	}
	return nil
}

func (m *memStore) Close() error { return nil }

func (m *memStore) set(key, value string, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[key], m.ttls[key] = []byte(value), ttl
}

func (m *memStore) value(key string) (string, time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	return string(v), m.ttls[key], ok
}

func (m *memStore) writeCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

var errBroken = errors.New("store broken")

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

// t0 is the tests' epoch.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// at sets the clock to t0+d.
func (c *clock) at(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t0.Add(d)
}

// newTest returns a Greylist with the default timings on a fresh store
// and clock.
func newTest(o Options) (*Greylist, *memStore, *clock) {
	st, clk := newMemStore(), newClock()
	o.Now = clk.Now
	return New(st, o), st, clk
}
