// Package refid makes the reference ids that tie an SMTP reply to its
// verdict record. They are ULIDs (https://github.com/ulid/spec): 48 bits of
// milliseconds and 80 random bits in Crockford base32, 26 characters, so
// they sort by time, are safe to grep, and contain nothing a client could
// learn anything from.
package refid

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// New returns a fresh id for time t.
func New(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails (crypto/rand since Go 1.24)
	return encode(b)
}

// encode writes 128 bits as 26 base32 digits, most significant first (the
// first digit carries only 3 bits).
func encode(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
