package greystore

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltRawCount returns how many entries b's bucket holds, expired ones the
// collector has not yet deleted included.
func BoltRawCount(b *Bolt) (n int, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(boltBucket).Stats().KeyN
		return nil
	})
	return n, err
}

// BoltFill stores n entries prefix+index, living ttl, in one transaction:
// Update would commit (and fsync) each.
func BoltFill(b *Bolt, prefix string, n int, ttl time.Duration) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		exp := time.Now().Add(ttl).UnixNano()
		for i := range n {
			v := binary.BigEndian.AppendUint64(nil, uint64(exp))
			if err := bk.Put(fmt.Appendf(nil, "%s%06d", prefix, i), append(v, 'v')); err != nil {
				return err
			}
		}
		return nil
	})
}

// BoltCollect runs one collection now.
func BoltCollect(b *Bolt) (int, error) { return b.collect() }
