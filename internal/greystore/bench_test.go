package greystore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/testutil"
)

// The greylisting benchmarks measure what checks/greylist asks of a store
// for one recipient, with its key layout and record sizes (see
// checks/greylist/record.go): the JSON itself is checks/greylist's cost
// and is not measured here.

// benchAllowKey is the allow entry of a client that passed before, and
// benchAllow its value.
const (
	benchAllowKey = "a:org:example.org"
	benchAllow    = `{"v":1,"first":"2026-03-02T10:00:00Z","expires":"2026-04-06T10:00:00Z","passes":3,"source":"pass"}`
	// benchTriplet is a new triplet's value, benchPassed one that passed.
	benchTriplet = `{"v":1,"first":"2026-03-02T10:00:00Z","pass_at":"2026-03-02T10:05:00Z","expires":"2026-03-04T10:00:00Z","ref":"01JNK3M5Q8R7T6V4W2X0Y9Z8A7"}`
	benchPassed  = `{"v":1,"first":"2026-03-02T10:00:00Z","pass_at":"2026-03-02T10:05:00Z","expires":"2026-03-04T10:00:00Z","ref":"01JNK3M5Q8R7T6V4W2X0Y9Z8A7","passes":1}`
	// benchRetryKeys is how many triplets the retry benchmark cycles
	// through, so it does not hammer one hot key.
	benchRetryKeys = 1000
)

// benchTripletPrefix and an index of six digits make a triplet's key (the
// form greystore.BoltFill writes): a sender network, a sender and a
// recipient.
const benchTripletPrefix = "t:net:198.51.100.0/24|alice@example.org|bob"

func benchTripletKey(i int) string { return fmt.Sprintf("%s%06d", benchTripletPrefix, i) }

// benchStore opens a store for one benchmark.
type benchStore struct {
	name string
	open func(b *testing.B) greystore.Store
}

// benchStores are memory, bbolt in a temporary directory (a commit, with
// fsync, per Update) and Redis, skipped when redis-server is not
// installed.
var benchStores = []benchStore{
	{"memory", func(b *testing.B) greystore.Store { return greystore.NewMemory(0) }},
	{"bbolt", func(b *testing.B) greystore.Store {
		s, err := greystore.OpenBolt(filepath.Join(b.TempDir(), "grey.db"), greystore.BoltOptions{GCInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"redis", func(b *testing.B) greystore.Store {
		s, err := greystore.OpenRedis(startBenchRedis(b), greystore.RedisOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// startBenchRedis starts an empty redis-server on loopback for the rest of
// the calling benchmark and returns its URL; it skips the benchmark when
// redis-server is not installed.
func startBenchRedis(b *testing.B) string {
	b.Helper()
	if !testutil.Have("redis-server") {
		b.Skip("redis-server not installed (apt-get install redis-server)")
	}
	return testutil.StartRedis(b).URL("", 0)
}

// seed stores value under key for a day.
func seed(b *testing.B, s greystore.Store, key, value string) {
	b.Helper()
	err := s.Update(context.Background(), key, func([]byte) ([]byte, time.Duration, error) {
		return []byte(value), 24 * time.Hour, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGreylistAllowed measures the hot path of a greylist check for a
// client allowed by an earlier pass: one Get of its allow entry, which
// answers, so nothing is written.
func BenchmarkGreylistAllowed(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			ctx := context.Background()
			seed(b, s, benchAllowKey, benchAllow)
			b.ReportAllocs()
			for b.Loop() {
				if v, ok, err := s.Get(ctx, benchAllowKey); err != nil || !ok || len(v) != len(benchAllow) {
					b.Fatalf("Get: %q, %v, %v", v, ok, err)
				}
			}
		})
	}
}

// BenchmarkGreylistFirstSeen measures storing a triplet seen for the first
// time: an Update of a key that does not exist yet, creating it (what a
// greylisted first attempt costs, after its allow lookups miss).
func BenchmarkGreylistFirstSeen(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			ctx := context.Background()
			create := func(old []byte) ([]byte, time.Duration, error) {
				if old != nil {
					return nil, 0, errors.New("triplet exists")
				}
				return []byte(benchTriplet), 48 * time.Hour, nil
			}
			// Fresh keys are made in batches with the timer stopped, so
			// that only the store is measured.
			keys := make([]string, 0, 1024)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if i%cap(keys) == 0 {
					b.StopTimer()
					keys = keys[:0]
					for j := range cap(keys) {
						keys = append(keys, benchTripletKey(i+j))
					}
					b.StartTimer()
				}
				if err := s.Update(ctx, keys[i%cap(keys)], create); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkGreylistRetry measures a retry of a known triplet after the
// delay: an Update that reads the triplet and rewrites it, counting the
// pass. (A pass then also writes the client's allow entry: one more Update
// of the same cost.)
func BenchmarkGreylistRetry(b *testing.B) {
	keys := make([]string, benchRetryKeys)
	for i := range keys {
		keys[i] = benchTripletKey(i)
	}
	pass := func(old []byte) ([]byte, time.Duration, error) {
		if old == nil {
			return nil, 0, errors.New("triplet missing")
		}
		return []byte(benchPassed), 48 * time.Hour, nil
	}
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			ctx := context.Background()
			if bs, ok := s.(*greystore.Bolt); ok {
				// One transaction: an Update per key would be a
				// thousand commits, each with its fsync.
				if err := greystore.BoltFill(bs, benchTripletPrefix, len(keys), 24*time.Hour); err != nil {
					b.Fatal(err)
				}
			} else {
				for _, k := range keys {
					seed(b, s, k, benchTriplet)
				}
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Update(ctx, keys[i%len(keys)], pass); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
