// Package metrics holds mxgate's Prometheus metrics (namespace "gateway").
// Label values are bounded: actions, reason tokens, rule names (bounded by
// the configuration), never addresses, IPs or domains (CoreDNS's rule for
// plugin metrics). The admin listener serves Registry at /metrics.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/internal/verdict"
)

// Registry holds every mxgate metric; it is not the global default
// registry, so tests and several gateways in one process stay apart.
var Registry = prometheus.NewRegistry()

var (
	// Transactions counts verdict records by action and reason token.
	Transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Name: "transactions_total",
		Help: "Transactions (and connections without one) by how they ended: action and reason token.",
	}, []string{"action", "reason"})
	// RuleMatches counts the rules that matched, shadow or not.
	RuleMatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Name: "rule_matches_total",
		Help: "Policy rules that matched, by rule name; shadow=\"true\" for shadow rules (recorded, not applied).",
	}, []string{"rule", "shadow"})
	// CheckResults counts check results by check and result.
	CheckResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Name: "check_results_total",
		Help: "Check results by check and result (listed, clean, pass, fail, temperror, ...).",
	}, []string{"check", "result"})
	// CheckSeconds is how long checks take.
	CheckSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gateway", Name: "check_duration_seconds",
		Help:    "How long each check took.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"check"})
	// GreylistErrors counts greylist store failures (mail let through).
	GreylistErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gateway", Name: "greylist_store_errors_total",
		Help: "Greylist store failures; the mail was accepted without greylisting (fail open).",
	})
	// Replies counts the final replies by class (2xx, 4xx, 5xx).
	Replies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Name: "replies_total",
		Help: "Final replies of transactions by class.",
	}, []string{"class"})
)

func init() {
	Registry.MustRegister(Transactions, RuleMatches, Replies, CheckResults, CheckSeconds, GreylistErrors, dnsblHealth{})
}

// Record counts what one verdict record says. It is the only hook: every
// record passes through it, so the metrics cannot disagree with the log.
func Record(r *verdict.Record) {
	Transactions.WithLabelValues(string(r.Action), string(r.Reason)).Inc()
	for _, m := range r.Rules {
		shadow := "false"
		if m.Shadow {
			shadow = "true"
		}
		RuleMatches.WithLabelValues(m.Name, shadow).Inc()
	}
	for _, c := range r.Checks {
		CheckResults.WithLabelValues(c.Name, c.Result).Inc()
		CheckSeconds.WithLabelValues(c.Name).Observe(float64(c.MS) / 1000)
	}
	if r.Reply != nil && r.Reply.Code >= 200 && r.Reply.Code < 600 {
		Replies.WithLabelValues(string(rune('0'+r.Reply.Code/100)) + "xx").Inc()
	}
}

// ZoneHealth is one DNS list's health, by its display name.
type ZoneHealth struct {
	Name    string
	Healthy bool
}

var dnsblSource atomic.Pointer[func() []ZoneHealth]

// SetDNSBLHealth sets where gateway_dnsbl_zone_healthy reads the lists'
// health from at each scrape (the running configuration's DNSBL check).
func SetDNSBLHealth(f func() []ZoneHealth) { dnsblSource.Store(&f) }

var dnsblDesc = prometheus.NewDesc("gateway_dnsbl_zone_healthy",
	"1 when a DNS list passes its RFC 5782 health probes, 0 when it is skipped (fail open).", []string{"zone"}, nil)

// dnsblHealth collects the gauge at scrape time, so it always shows the
// lists of the running configuration.
type dnsblHealth struct{}

func (dnsblHealth) Describe(ch chan<- *prometheus.Desc) { ch <- dnsblDesc }

func (dnsblHealth) Collect(ch chan<- prometheus.Metric) {
	f := dnsblSource.Load()
	if f == nil {
		return
	}
	for _, z := range (*f)() {
		v := 0.0
		if z.Healthy {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(dnsblDesc, prometheus.GaugeValue, v, z.Name)
	}
}
