package resolver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// benchLookups are the lookups the checks make most, each answered from
// the shared test zones.
var benchLookups = []struct {
	name   string
	lookup func(ctx context.Context, c *Client) error
}{
	// SPF and DMARC records.
	{"TXT", func(ctx context.Context, c *Client) error {
		_, err := c.LookupTXT(ctx, "example.test")
		return err
	}},
	// A DNSBL hit, an SPF a: mechanism, FCrDNS's forward lookup.
	{"A", func(ctx context.Context, c *Client) error {
		_, err := c.LookupIP(ctx, "ip4", "mail.example.test")
		return err
	}},
	// FCrDNS and SPF mx: A and AAAA, queried in parallel.
	{"A+AAAA", func(ctx context.Context, c *Client) error {
		_, err := c.LookupIPAddr(ctx, "mail.example.test")
		return err
	}},
	// FCrDNS's reverse lookup.
	{"PTR", func(ctx context.Context, c *Client) error {
		_, err := c.LookupAddr(ctx, "127.0.0.5")
		return err
	}},
	// The commonest of all: a DNSBL that does not list the client
	// (NXDOMAIN, RFC 5782 §5's 127.0.0.1 test point).
	{"NXDOMAIN", func(ctx context.Context, c *Client) error {
		_, err := c.LookupIP(ctx, "ip4", "1.0.0.127.bl.test")
		if de, ok := err.(*net.DNSError); ok && de.IsNotFound {
			return nil
		} else if err == nil {
			return errors.New("1.0.0.127.bl.test answered, want NXDOMAIN")
		}
		return err
	}},
}

// warmClient returns a Client on the test zones, with the wall clock (as
// in production) and every answer cached for an hour, after making every
// one of benchLookups once; and a function that counts the queries the
// zone server got, to show that none followed.
func warmClient(b *testing.B) (*Client, func() int) {
	s := serveTestdata(b)
	c, _ := client(b, Config{MinTTL: time.Hour, MaxTTL: time.Hour}, s.Addr())
	c.now = time.Now
	for _, l := range benchLookups {
		if err := l.lookup(context.Background(), c); err != nil {
			b.Fatalf("%s: %v", l.name, err)
		}
	}
	return c, s.Queries
}

// checkAllHits fails the benchmark if a lookup went to the server.
func checkAllHits(b *testing.B, queries func() int, before int) {
	b.Helper()
	if n := queries() - before; n != 0 {
		b.Fatalf("%d queries reached the server: not all cache hits", n)
	}
}

// BenchmarkCachedLookup measures a lookup answered from the cache, per
// record type, and a cached negative answer: the cost of every DNS
// question a check asks after the first connection from a client.
func BenchmarkCachedLookup(b *testing.B) {
	c, queries := warmClient(b)
	ctx := context.Background()
	for _, l := range benchLookups {
		b.Run(l.name, func(b *testing.B) {
			before := queries()
			b.ReportAllocs()
			for b.Loop() {
				if err := l.lookup(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			checkAllHits(b, queries, before)
		})
	}
}

// BenchmarkCachedLookupParallel is BenchmarkCachedLookup with every
// goroutine asking the same cached questions at once: contention on the
// cache's lock and the hit counters, as when many sessions from one
// client network run their checks together.
func BenchmarkCachedLookupParallel(b *testing.B) {
	c, queries := warmClient(b)
	ctx := context.Background()
	for _, l := range benchLookups {
		b.Run(l.name, func(b *testing.B) {
			before := queries()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.lookup(ctx, c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			checkAllHits(b, queries, before)
		})
	}
}
