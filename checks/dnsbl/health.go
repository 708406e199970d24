package dnsbl

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// testPoint is a pair of RFC 5782 §5 test points: the first must be
// listed and the second must not, each as queried and as shown.
type testPoint struct {
	listed, unlisted         string
	showListed, showUnlisted string
}

var (
	testV4     = testPoint{"2.0.0.127", "1.0.0.127", "127.0.0.2", "127.0.0.1"}
	testV6     = testPoint{reverse6(netip.MustParseAddr("::ffff:7f00:2")), reverse6(netip.MustParseAddr("::ffff:7f00:1")), "::ffff:7f00:2", "::ffff:7f00:1"}
	testDomain = testPoint{"test", "invalid", "test", "invalid"}
)

// probeTimeout bounds one round of probes of the background prober.
const probeTimeout = 10 * time.Second

// reasonRefused is the state of a list that answers its test points with
// an error code: the resolver is refused (or rewrites answers), and every
// lookup would fail the same way.
const reasonRefused = "resolver refused: use a dedicated resolver"

// Start probes every list once, waiting for the probes or ctx, whichever
// ends first (and at most probeTimeout, 10 s), then (with a HealthInterval) probes again at that interval
// until Close. A second call does nothing.
func (d *DNSBL) Start(ctx context.Context) {
	if d == nil {
		return
	}
	d.startOnce.Do(func() {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		d.probeAll(pctx)
		cancel()
		if d.interval <= 0 {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.closed {
			return
		}
		// The caller's ctx bounds the first probe only; the prober lives
		// until Close.
		bg, stop := context.WithCancel(context.WithoutCancel(ctx))
		d.cancel = stop
		d.wg.Add(1)
		go d.prober(bg)
	})
}

func (d *DNSBL) prober(ctx context.Context) {
	defer d.wg.Done()
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, min(d.interval, probeTimeout))
			d.probeAll(pctx)
			cancel()
		}
	}
}

// Close stops the prober and waits for every probe to end. It is safe to
// call more than once, and without Start.
func (d *DNSBL) Close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.closed = true
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *DNSBL) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Health returns the state of every list, IP-based ones first, in
// configuration order.
func (d *DNSBL) Health() []ZoneHealth {
	if d == nil {
		return nil
	}
	out := make([]ZoneHealth, len(d.zones))
	for i, z := range d.zones {
		h := z.health.Load()
		out[i] = ZoneHealth{Name: z.name, Healthy: h.healthy, Reason: h.reason, Checked: h.checked,
			BadAnswers: z.badAnswers.Load(), Errors: z.errors.Load()}
	}
	return out
}

// probeAll probes every list in parallel and returns when all are done or
// ctx expires; the wait group lets Close wait for the stragglers.
func (d *DNSBL) probeAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, z := range d.zones {
		wg.Add(1)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer wg.Done()
			d.probe(ctx, z)
		}()
	}
	done := make(chan struct{})
	d.wg.Add(1)
	go func() { defer d.wg.Done(); wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// probe queries a list's test points (RFC 5782 §5) and updates its state.
// A probe that gets no answer decides nothing: a list that was healthy
// stays in use, so a resolver hiccup cannot switch every list off.
func (d *DNSBL) probe(ctx context.Context, z *zone) {
	tp := testV4
	if z.domain {
		tp = testDomain
	}
	reason, ok := d.testPoints(ctx, z, tp)
	if ok && tp == testV4 && reason == testV4.showListed+" not listed" {
		// An IPv6-only list has only the IPv6 test points, whose entries
		// are IPv4-mapped (§5); a list with both passes either way.
		if r6, ok6 := d.testPoints(ctx, z, testV6); ok6 && r6 == "" {
			reason = ""
		}
	}
	if ok {
		d.setHealth(z, reason)
	}
}

// testPoints queries one pair of test points and returns why the list
// fails them ("" when it passes); ok is false when a query got no answer,
// which it logs once.
func (d *DNSBL) testPoints(ctx context.Context, z *zone, tp testPoint) (reason string, ok bool) {
	pos := d.query(ctx, z, tp.listed)
	neg := d.query(ctx, z, tp.unlisted)
	switch {
	case pos.st == stBadAnswer || neg.st == stBadAnswer:
		return reasonRefused, true
	case pos.st == stError || neg.st == stError:
		why := pos.why
		if why == "" {
			why = neg.why
		}
		if ctx.Err() != nil && d.isClosed() {
			return "", false
		}
		if !z.probeFails.Swap(true) {
			d.log.Warn("dnsbl: health probe got no answer; the list keeps its state",
				"list", z.name, "error", why, "healthy", z.health.Load().healthy)
		}
		return "", false
	case neg.st == stListed: // first: it says the list lists anything
		return tp.showUnlisted + " listed", true
	case pos.st != stListed:
		return tp.showListed + " not listed", true
	}
	return "", true
}

// setHealth records a conclusive probe and logs a change of state.
func (d *DNSBL) setHealth(z *zone, reason string) {
	if z.probeFails.Swap(false) {
		d.log.Info("dnsbl: health probe answered again", "list", z.name)
	}
	next := &healthState{healthy: reason == "", reason: reason, checked: d.now()}
	prev := z.health.Swap(next)
	switch {
	case prev.healthy == next.healthy && prev.reason == next.reason:
	case next.healthy:
		d.log.Info("dnsbl: list passes its test again; back in use", "list", z.name)
	default:
		d.log.Warn("dnsbl: list fails its RFC 5782 test; skipped until it passes", "list", z.name, "reason", reason)
	}
}

// publicResolvers are well-known public resolvers, which Spamhaus and
// other lists refuse (answering 127.255.255.254 and the like) because
// their query volume is everyone's.
var publicResolvers = map[netip.Addr]string{}

func init() {
	for provider, addrs := range map[string][]string{
		"Google Public DNS": {"8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844"},
		"Cloudflare":        {"1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001"},
		"Quad9":             {"9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9"},
		"OpenDNS":           {"208.67.222.222", "208.67.220.220", "2620:119:35::35", "2620:119:53::53"},
	} {
		for _, a := range addrs {
			publicResolvers[netip.MustParseAddr(a)] = provider
		}
	}
}

// PublicResolverWarning returns one warning for each server (host:port,
// or a bare address) that is a well-known public resolver, for the caller
// to log once at startup when DNS lists are configured.
func PublicResolverWarning(servers []string) []string {
	var out []string
	for _, s := range servers {
		host := strings.TrimSpace(s)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		a, err := netip.ParseAddr(host)
		if err != nil {
			continue
		}
		if provider, ok := publicResolvers[a.Unmap().WithZone("")]; ok {
			out = append(out, fmt.Sprintf(
				"DNS server %s is a public resolver (%s): Spamhaus and other DNS lists refuse its queries, so they will not work; use a dedicated recursive resolver",
				s, provider))
		}
	}
	return out
}
