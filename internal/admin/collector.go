package admin

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mxgate/mxgate/internal/metrics"
)

// registerOnce guards the collectors this package adds to metrics.Registry:
// a registry takes a collector once, and Start may run more than once in a
// process (tests).
var registerOnce sync.Once

func registerCollectors() {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		statsCollector{},
	} {
		if err := metrics.Registry.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err) // a name clash between collectors: a bug
			}
		}
	}
}

// statsSource is where the stats collector reads from: the functions of
// the latest admin server started, so the one collector registered serves
// whichever server is running.
type statsSource struct {
	dns   func() (queries, hits, misses uint64)
	relay func() (open, idle, inUse int)
}

var source atomic.Pointer[statsSource]

var (
	dnsQueriesDesc = prometheus.NewDesc("gateway_dns_queries_total",
		"DNS messages sent to the resolver's servers (every attempt, and TCP retries after truncation).", nil, nil)
	dnsHitsDesc = prometheus.NewDesc("gateway_dns_cache_hits_total",
		"DNS lookups answered from the resolver's cache.", nil, nil)
	dnsMissesDesc = prometheus.NewDesc("gateway_dns_cache_misses_total",
		"DNS lookups not in the resolver's cache.", nil, nil)
	relayConnsDesc = prometheus.NewDesc("gateway_relay_connections",
		"Backend connections: open (idle, in use or being dialled), idle in the pool, in use by a transaction.",
		[]string{"state"}, nil)
)

// statsCollector reads the resolver's and the relay pool's counters at
// scrape time, so they are those of the running configuration. A reload
// that changes dns or backend builds a new resolver or pool whose counters
// start at zero, which Prometheus reads as a counter reset.
type statsCollector struct{}

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dnsQueriesDesc
	ch <- dnsHitsDesc
	ch <- dnsMissesDesc
	ch <- relayConnsDesc
}

func (statsCollector) Collect(ch chan<- prometheus.Metric) {
	src := source.Load()
	if src == nil {
		return
	}
	if src.dns != nil {
		q, h, m := src.dns()
		ch <- prometheus.MustNewConstMetric(dnsQueriesDesc, prometheus.CounterValue, float64(q))
		ch <- prometheus.MustNewConstMetric(dnsHitsDesc, prometheus.CounterValue, float64(h))
		ch <- prometheus.MustNewConstMetric(dnsMissesDesc, prometheus.CounterValue, float64(m))
	}
	if src.relay != nil {
		open, idle, inUse := src.relay()
		ch <- prometheus.MustNewConstMetric(relayConnsDesc, prometheus.GaugeValue, float64(open), "open")
		ch <- prometheus.MustNewConstMetric(relayConnsDesc, prometheus.GaugeValue, float64(idle), "idle")
		ch <- prometheus.MustNewConstMetric(relayConnsDesc, prometheus.GaugeValue, float64(inUse), "in_use")
	}
}
