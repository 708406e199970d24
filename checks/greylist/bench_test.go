package greylist

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/testutil"
)

// BenchmarkCheckAllowed is the greylisting cost per recipient of a client
// the store allows, the common case under load, through the whole check:
// key, normalisation and the allow cache in front of the store. Set
// against internal/greystore's BenchmarkGreylistAllowed (a store Get
// alone: 60 µs or so on Redis), it shows what the cache saves.
func BenchmarkCheckAllowed(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) greystore.Store
	}{
		{"memory", func(*testing.B) greystore.Store { return greystore.NewMemory(0) }},
		{"redis", func(b *testing.B) greystore.Store {
			if !testutil.Have("redis-server") {
				b.Skip("redis-server not installed (apt-get install redis-server)")
			}
			s, err := greystore.OpenRedis(testutil.StartRedis(b).URL("", 0), greystore.RedisOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	c := Client{IP: netip.MustParseAddr("192.0.2.7"), MailDomain: "sender.example"}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			ctx := context.Background()
			g := New(st.open(b), Options{})
			if err := g.Allow(ctx, "192.0.2.0/24", time.Hour); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				d, err := g.Check(ctx, c, "a+tag@sender.example", "b@ours.example", "ref")
				if err != nil || d.State != StateAllowed {
					b.Fatalf("Check = %s, %v; want allowed", d.State, err)
				}
			}
		})
	}
}
