package greystore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltOptions tunes OpenBolt; the zero value is the default.
type BoltOptions struct {
	// GCInterval is how often expired entries are deleted from the file
	// (default 10 minutes; negative: never, for tools and benchmarks).
	// Between collections expired entries take space but are never
	// returned.
	GCInterval time.Duration
	// Timeout bounds the wait for the file's lock (default 2 s). bbolt
	// locks the file for one process, so a second gateway on the same file
	// fails after Timeout instead of waiting forever.
	Timeout time.Duration
}

const (
	defaultBoltGCInterval = 10 * time.Minute
	defaultBoltTimeout    = 2 * time.Second

	// boltBatch bounds the keys one transaction visits, in Scan and in the
	// collector: a read transaction held long stops bbolt from reusing
	// freed pages, and the collector's write transaction blocks every
	// Update while it runs.
	boltBatch = 1000

	// expiryLen is the size of the expiry prefix of every stored value.
	expiryLen = 8
)

var boltBucket = []byte("greystore")

// Bolt is a Store in a bbolt file, for a single gateway that must keep its
// greylisting state across restarts.
//
// One bucket holds every key; a value is its expiry (Unix nanoseconds,
// big-endian; wall clock, since it outlives the process) followed by the
// payload. Update is one bbolt read-write transaction, and bbolt runs one
// at a time, so it is atomic and f runs exactly once; each is a commit to
// disk (fsync). An expired entry counts as absent at once; a background
// collector deletes expired entries every GCInterval, a batch of keys per
// transaction, and stops on Close. After Close every operation returns
// ErrClosed.
type Bolt struct {
	db     *bolt.DB
	path   string
	closed atomic.Bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// OpenBolt opens (or creates, mode 0600) the bbolt file at path, whose
// directory must exist, and starts its collector.
func OpenBolt(path string, opt BoltOptions) (*Bolt, error) {
	if opt.GCInterval == 0 {
		opt.GCInterval = defaultBoltGCInterval
	}
	if opt.Timeout <= 0 {
		opt.Timeout = defaultBoltTimeout
	}
	// Checked here because bbolt would only say "no such file or
	// directory", which reads as if the file itself were expected.
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("greystore: bbolt %s: directory %s does not exist (it is not created)", path, dir)
		}
		return nil, fmt.Errorf("greystore: bbolt %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("greystore: bbolt %s: %s is not a directory", path, dir)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opt.Timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("greystore: bbolt %s is locked by another process (another gateway using the same file?); gave up after %v: %w",
				path, opt.Timeout, err)
		}
		return nil, fmt.Errorf("greystore: bbolt %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("greystore: bbolt %s: %w", path, err)
	}
	b := &Bolt{db: db, path: path, stop: make(chan struct{})}
	if opt.GCInterval > 0 {
		b.wg.Add(1)
		go b.collectLoop(opt.GCInterval)
	}
	return b, nil
}

// decodeBolt splits a stored value; ok is false when it expired at now or
// is too short to have been written by Update.
func decodeBolt(v []byte, now int64) (payload []byte, ok bool) {
	if len(v) < expiryLen || int64(binary.BigEndian.Uint64(v)) <= now {
		return nil, false
	}
	return v[expiryLen:], true
}

// boltErr maps bbolt's "database not open", seen by an operation racing
// Close, to ErrClosed.
func boltErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Get implements Store. The value returned is the caller's to keep.
func (b *Bolt) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if b.closed.Load() {
		return nil, false, ErrClosed
	}
	var value []byte
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		// Copied: what bbolt returns lives in its memory map only as long
		// as the transaction.
		if p, live := decodeBolt(tx.Bucket(boltBucket).Get([]byte(key)), time.Now().UnixNano()); live {
			value, ok = bytes.Clone(p), true
		}
		return nil
	})
	if err != nil {
		return nil, false, boltErr(err)
	}
	return value, ok, nil
}

// Update implements Store. f runs once, inside the write transaction, so it
// must not call the store (that would wait for the transaction forever).
func (b *Bolt) Update(ctx context.Context, key string, f func(old []byte) ([]byte, time.Duration, error)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrClosed
	}
	// An error from f must reach the caller unchanged; bbolt returns the
	// callback's error as is, but keep it apart anyway from bbolt's own.
	var fErr error
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		k := []byte(key)
		now := time.Now()
		stored := bk.Get(k)
		old, live := decodeBolt(stored, now.UnixNano())
		if live {
			old = bytes.Clone(old)
		}
		value, ttl, err := f(old)
		if err != nil {
			fErr = err
			return err
		}
		if value == nil {
			if stored == nil {
				return nil
			}
			return bk.Delete(k)
		}
		if err := checkTTL(ttl); err != nil {
			fErr = err
			return err
		}
		buf := make([]byte, expiryLen+len(value))
		binary.BigEndian.PutUint64(buf, uint64(now.Add(ttl).UnixNano()))
		copy(buf[expiryLen:], value)
		return bk.Put(k, buf)
	})
	if fErr != nil {
		return fErr
	}
	return boltErr(err)
}

// Delete implements Store.
func (b *Bolt) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrClosed
	}
	return boltErr(b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		k := []byte(key)
		// Skipping the delete of a missing key leaves the transaction
		// without changes, and bbolt then commits without writing.
		if bk.Get(k) == nil {
			return nil
		}
		return bk.Delete(k)
	}))
}

// Scan implements Store. Keys come in byte order, boltBatch per read
// transaction, and fn is called between transactions, so fn may use the
// store (even Update or Delete, which inside a read transaction of the same
// goroutine could deadlock bbolt).
func (b *Bolt) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) bool) error {
	if b.closed.Load() {
		return ErrClosed
	}
	type kv struct {
		key   string
		value []byte
	}
	p := []byte(prefix)
	var after []byte // last key of the previous batch
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var batch []kv
		done := false
		err := b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(boltBucket).Cursor()
			k, v := seekAfter(c, p, after)
			now := time.Now().UnixNano()
			for n := 0; k != nil && n < boltBatch; k, v = c.Next() {
				if !bytes.HasPrefix(k, p) {
					break
				}
				n++
				after = append(after[:0], k...)
				if payload, ok := decodeBolt(v, now); ok {
					batch = append(batch, kv{string(k), bytes.Clone(payload)})
				}
			}
			done = k == nil || !bytes.HasPrefix(k, p)
			return nil
		})
		if err != nil {
			return boltErr(err)
		}
		for _, e := range batch {
			if !fn(e.key, e.value) {
				return nil
			}
		}
		if done {
			return nil
		}
	}
}

// seekAfter positions c on the first key after after, or on the first key
// at or after start when after is nil (the first batch).
func seekAfter(c *bolt.Cursor, start, after []byte) (k, v []byte) {
	if after == nil {
		if len(start) == 0 {
			return c.First()
		}
		return c.Seek(start)
	}
	k, v = c.Seek(after)
	if k != nil && bytes.Equal(k, after) {
		k, v = c.Next()
	}
	return k, v
}

// collectLoop runs collect every interval until Close.
func (b *Bolt) collectLoop(interval time.Duration) {
	defer b.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			// An error (a full disk, say) leaves expired entries for the
			// next round; they are invisible meanwhile, so nothing else
			// is affected.
			b.collect()
		}
	}
}

// collect deletes expired entries, visiting at most boltBatch keys per
// write transaction so that Updates waiting for the writer lock are held
// up for one batch at a time, not for the whole file. It returns how many
// entries it deleted; it stops early, without error, when Close begins.
func (b *Bolt) collect() (int, error) {
	deleted := 0
	var after []byte
	for {
		select {
		case <-b.stop:
			return deleted, nil
		default:
		}
		done, n := false, 0
		err := b.db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(boltBucket)
			c := bk.Cursor()
			k, v := seekAfter(c, nil, after)
			now := time.Now().UnixNano()
			var dead [][]byte
			for seen := 0; k != nil && seen < boltBatch; k, v = c.Next() {
				seen++
				after = append(after[:0], k...)
				if _, ok := decodeBolt(v, now); !ok {
					// Copied: deleting rewrites the pages k points into.
					dead = append(dead, bytes.Clone(k))
				}
			}
			done = k == nil
			for _, k := range dead {
				if err := bk.Delete(k); err != nil {
					return err
				}
			}
			n = len(dead)
			return nil
		})
		if err != nil {
			return deleted, err
		}
		deleted += n
		if done {
			return deleted, nil
		}
	}
}

// Close implements Store: it stops the collector, waits for it, and closes
// the file (releasing its lock). Closing twice returns the first result.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
		b.wg.Wait()
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("greystore: bbolt %s: %w", b.path, err)
		}
	})
	return b.closeErr
}
