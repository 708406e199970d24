package greystore

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// ErrClosed is returned by every operation on a store after its Close.
var ErrClosed = errors.New("greystore: store is closed")

// DefaultMemoryKeys is the bound of the memory store that Open creates, and
// of NewMemory when it is given no positive bound.
const DefaultMemoryKeys = 1_000_000

// specForms is quoted by every error about a store spec, so that a typo in
// the configuration is answered with what would have been accepted.
const specForms = `"memory", "bbolt:PATH" or "redis://[user:pass@]host:port/db"`

// Open opens the store that spec (checks.greylist.store) names:
//
//   - "memory": NewMemory(DefaultMemoryKeys);
//   - "bbolt:PATH": OpenBolt with default options; a relative PATH is taken
//     under dataDir, whose directory must exist;
//   - "redis://…" (or "rediss://…" for TLS): OpenRedis with default options.
//
// Errors never contain the password of a Redis URL.
func Open(spec, dataDir string) (Store, error) {
	switch {
	case spec == "memory":
		return NewMemory(DefaultMemoryKeys), nil
	case strings.HasPrefix(spec, "bbolt:"):
		path := strings.TrimPrefix(spec, "bbolt:")
		if path == "" {
			return nil, fmt.Errorf("greystore: %q names no file; want %s", spec, specForms)
		}
		if !filepath.IsAbs(path) {
			if dataDir == "" {
				return nil, fmt.Errorf("greystore: bbolt path %q is relative and no data directory is set", path)
			}
			path = filepath.Join(dataDir, path)
		}
		return OpenBolt(path, BoltOptions{})
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		return OpenRedis(spec, RedisOptions{})
	}
	return nil, fmt.Errorf("greystore: unknown store %q; want %s", redactURL(spec), specForms)
}

// checkKey rejects the empty key in every store alike: bbolt cannot hold
// it, and a greylisting key is never empty, so an empty one is a bug.
func checkKey(key string) error {
	if key == "" {
		return errors.New("greystore: empty key")
	}
	return nil
}

// checkTTL rejects a value that would never live: with a non-positive TTL
// the stores would disagree (Redis refuses it, bbolt would store a dead
// entry), so all of them return this error instead.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("greystore: ttl %v is not positive (return a nil value to delete)", ttl)
	}
	return nil
}
