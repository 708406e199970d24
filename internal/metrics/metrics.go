// Package metrics holds mxgate's Prometheus metrics (namespace "gateway").
// Label values are bounded: actions, reason tokens, rule names (bounded by
// the configuration), never addresses, IPs or domains (CoreDNS's rule for
// plugin metrics). The admin listener serves Registry at /metrics.
package metrics

import (
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
	// Replies counts the final replies by class (2xx, 4xx, 5xx).
	Replies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gateway", Name: "replies_total",
		Help: "Final replies of transactions by class.",
	}, []string{"class"})
)

func init() {
	Registry.MustRegister(Transactions, RuleMatches, Replies)
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
	if r.Reply != nil && r.Reply.Code >= 200 && r.Reply.Code < 600 {
		Replies.WithLabelValues(string(rune('0'+r.Reply.Code/100)) + "xx").Inc()
	}
}
