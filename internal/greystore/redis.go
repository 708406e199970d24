package greystore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions tunes OpenRedis; the zero value is the default. Timeouts
// set here win over the same settings in the URL's query.
type RedisOptions struct {
	// Prefix is put before every key (default "mxgate:gl:"), so that a
	// Redis shared with other applications, or with other gateways'
	// stores, keeps this store's keys apart.
	Prefix string
	// DialTimeout bounds each connection attempt (default 2 s); OpenRedis
	// as a whole is bounded by DialTimeout+ReadTimeout.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each command (default 1 s each).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the most connections kept open (default 20).
	PoolSize int
	// MaxRetries is how many times Update retries after another client
	// changed the key during its transaction, before it gives up with
	// ErrConflict (default 10; negative: no retries).
	MaxRetries int
}

const (
	defaultRedisPrefix     = "mxgate:gl:"
	defaultRedisDial       = 2 * time.Second
	defaultRedisRW         = time.Second
	defaultRedisPool       = 20
	defaultRedisMaxRetries = 10

	// redisScanCount is the COUNT hint of SCAN, and the most keys one MGET
	// asks for.
	redisScanCount = 500

	// maxConflictBackoff caps the random pause between Update's retries.
	maxConflictBackoff = 20 * time.Millisecond
)

// Redis is a Store in a Redis server, shared by every gateway behind the
// same MX records so that a sender retrying through another one is
// recognised.
//
// Keys are Prefix+key and values are stored as they are; expiry is Redis's
// own (SET … PX), so there is no collector. Update is optimistic: WATCH
// key, GET, call f, then MULTI SET (or DEL) EXEC, which Redis refuses if
// the key changed after WATCH; it is then tried again (calling f again),
// after a short random pause, at most MaxRetries times, and then fails with
// ErrConflict. Only the key itself is watched, so gateways updating
// different triplets never conflict. After Close every operation returns
// ErrClosed.
type Redis struct {
	client     *redis.Client
	prefix     string
	maxRetries int
	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
}

// OpenRedis connects to the Redis server of rawURL,
// redis://[user:pass@]host:port/db (rediss:// for TLS; the query may set
// other go-redis options), and checks it with a PING, bounded by
// DialTimeout+ReadTimeout, so that a wrong address, database or password
// fails at start. Errors never contain the password.
func OpenRedis(rawURL string, opt RedisOptions) (*Redis, error) {
	if opt.Prefix == "" {
		opt.Prefix = defaultRedisPrefix
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = defaultRedisMaxRetries
	} else if opt.MaxRetries < 0 {
		opt.MaxRetries = 0
	}
	secret := urlPassword(rawURL)
	fail := func(err error) error {
		return redactErr(fmt.Errorf("greystore: redis %s: %w", redactURL(rawURL), err), secret)
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// url.Error quotes the whole URL, password and all.
			err = ue.Err
		}
		return nil, fail(err)
	}
	ro.DialTimeout = pick(opt.DialTimeout, ro.DialTimeout, defaultRedisDial)
	ro.ReadTimeout = pick(opt.ReadTimeout, ro.ReadTimeout, defaultRedisRW)
	ro.WriteTimeout = pick(opt.WriteTimeout, ro.WriteTimeout, defaultRedisRW)
	ro.PoolSize = pick(opt.PoolSize, ro.PoolSize, defaultRedisPool)
	// A caller's deadline (the SMTP command's) then bounds the socket
	// waits too, not only ReadTimeout.
	ro.ContextTimeoutEnabled = true
	// One dial attempt and one retry of a command on a broken connection:
	// with go-redis's defaults (5 dials, 3 retries) a dead server would
	// hold each RCPT for seconds before the greylist check fails open or
	// closed, whichever the caller chose.
	ro.DialerRetries = 1
	if ro.MaxRetries == 0 {
		ro.MaxRetries = 1
	}
	// Maintenance notifications are for Redis Enterprise/Cloud; "auto"
	// would send a command every plain server refuses, on every connection.
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	client := redis.NewClient(ro)
	ctx, cancel := context.WithTimeout(context.Background(), ro.DialTimeout+ro.ReadTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		if msg := err.Error(); strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "AUTH") {
			err = fmt.Errorf("%w (check the user and password in the URL)", err)
		}
		return nil, fail(err)
	}
	return &Redis{client: client, prefix: opt.Prefix, maxRetries: opt.MaxRetries}, nil
}

// pick returns the first of mine and theirs that is set, else def.
func pick[T int | time.Duration](mine, theirs, def T) T {
	switch {
	case mine > 0:
		return mine
	case theirs != 0:
		return theirs
	}
	return def
}

// redisErr names the command that failed and maps go-redis's "client is
// closed", seen by an operation racing Close, to ErrClosed.
func redisErr(cmd string, err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("greystore: redis %s: %w", cmd, err)
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if r.closed.Load() {
		return nil, false, ErrClosed
	}
	s, err := r.client.Get(ctx, r.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, redisErr("GET", err)
	}
	// Converted from the string, not StringCmd.Bytes: that aliases the
	// string's memory, and is nil for an empty value, which is not absent.
	return []byte(s), true, nil
}

// Update implements Store; see Redis for the transaction. f may run up to
// MaxRetries+1 times. A network error is returned as is, without retrying
// the transaction: whether EXEC ran is then unknown.
func (r *Redis) Update(ctx context.Context, key string, f func(old []byte) ([]byte, time.Duration, error)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	k := r.prefix + key
	// fErr keeps f's error apart from Redis's, to return it unchanged.
	var fErr error
	txn := func(tx *redis.Tx) error {
		s, err := tx.Get(ctx, k).Result()
		var old []byte
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return err
		default:
			old = []byte(s)
		}
		value, ttl, err := f(old)
		if err == nil && value != nil {
			err = checkTTL(ttl)
		}
		if err != nil {
			fErr = err
			return err
		}
		if value == nil && old == nil {
			// Nothing to delete; the result would be the same whoever
			// wrote meanwhile.
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if value == nil {
				p.Del(ctx, k)
			} else {
				p.Set(ctx, k, value, pxTTL(ttl))
			}
			return nil
		})
		return err
	}
	for attempt := 0; ; attempt++ {
		err := r.client.Watch(ctx, txn, k)
		switch {
		case fErr != nil:
			return fErr
		case err == nil:
			return nil
		case !errors.Is(err, redis.TxFailedErr):
			return redisErr("transaction", err)
		case attempt >= r.maxRetries:
			return ErrConflict
		}
		// A random pause spreads out clients that keep colliding on one
		// key; without it they retry in lockstep and collide again.
		if err := sleepCtx(ctx, rand.N(maxConflictBackoff>>max(0, 4-attempt))); err != nil {
			return err
		}
	}
}

// pxTTL rounds ttl up to Redis's millisecond: go-redis would otherwise send
// a sub-millisecond TTL as PX 0, which Redis refuses.
func pxTTL(ttl time.Duration) time.Duration {
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Delete implements Store.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return redisErr("DEL", err)
	}
	return nil
}

// Scan implements Store with SCAN MATCH prefix* and one MGET per page.
// Keys that expire between the two are skipped. SCAN may return a key more
// than once (while Redis resizes its table); Scan remembers the keys it
// passed to fn and skips repeats, which costs memory in proportion to the
// keys matched. Keys written during a Scan may or may not be seen.
func (r *Redis) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	full := r.prefix + prefix
	match := globEscape(full) + "*"
	seen := make(map[string]struct{})
	var cursor uint64
	for {
		keys, next, err := r.client.Scan(ctx, cursor, match, redisScanCount).Result()
		if err != nil {
			return redisErr("SCAN", err)
		}
		for len(keys) > 0 {
			page := keys[:min(len(keys), redisScanCount)]
			keys = keys[len(page):]
			vals, err := r.client.MGet(ctx, page...).Result()
			if err != nil {
				return redisErr("MGET", err)
			}
			for i, k := range page {
				s, ok := vals[i].(string)
				if !ok || !strings.HasPrefix(k, full) {
					continue // expired since SCAN
				}
				if _, dup := seen[k]; dup {
					continue
				}
				seen[k] = struct{}{}
				if !fn(strings.TrimPrefix(k, r.prefix), []byte(s)) {
					return nil
				}
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// globEscape quotes the characters special to Redis's MATCH, so that the
// prefix matches only itself.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Close implements Store: it closes the connections. Closing twice
// returns the first result.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		if err := r.client.Close(); err != nil {
			r.closeErr = fmt.Errorf("greystore: redis: %w", err)
		}
	})
	return r.closeErr
}

// urlPassword returns the password of a redis:// URL, even one url.Parse
// refuses, so that it can be kept out of error messages.
func urlPassword(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		p, _ := u.User.Password()
		return p
	}
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return ""
	}
	_, p, _ := strings.Cut(rest[:i], ":")
	return p
}

// redactURL returns raw with its password replaced by "xxxxx".
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if p := urlPassword(raw); p != "" {
		return strings.ReplaceAll(raw, p, "xxxxx")
	}
	return raw
}

// redactErr hides secret (and its URL-escaped form) in err's message,
// whatever part of the stack put it there; errors.Is and As still see
// through it.
func redactErr(err error, secret string) error {
	if secret == "" {
		return err
	}
	return &redactedError{err: err, secret: secret}
}

type redactedError struct {
	err    error
	secret string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range []string{e.secret, url.QueryEscape(e.secret), url.PathEscape(e.secret)} {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }
