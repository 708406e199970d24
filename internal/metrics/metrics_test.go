package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

func TestRecord(t *testing.T) {
	before := testutil.ToFloat64(RuleMatches.WithLabelValues("r1", "true"))
	Record(&verdict.Record{
		Action: policy.ActionReject, Reason: policy.ReasonRule,
		Rules: []verdict.Rule{{Name: "r1", Shadow: true}, {Name: "r2"}},
		Reply: &verdict.Reply{Code: 550},
	})
	if got := testutil.ToFloat64(RuleMatches.WithLabelValues("r1", "true")) - before; got != 1 {
		t.Errorf("shadow match counted %v times", got)
	}
	if got := testutil.ToFloat64(Transactions.WithLabelValues("reject", "rule")); got < 1 {
		t.Errorf("transactions{reject,rule} = %v", got)
	}
	if got := testutil.ToFloat64(Replies.WithLabelValues("5xx")); got < 1 {
		t.Errorf("replies{5xx} = %v", got)
	}
	Record(&verdict.Record{Action: policy.ActionAccept, Reason: policy.ReasonAccepted,
		Checks: []verdict.Check{{Name: "dnsbl", Result: "clean", MS: 3}}})
	if got := testutil.ToFloat64(CheckResults.WithLabelValues("dnsbl", "clean")); got < 1 {
		t.Errorf("check_results{dnsbl,clean} = %v", got)
	}
	SetDNSBLHealth(func() []ZoneHealth { return []ZoneHealth{{Name: "zen", Healthy: true}, {Name: "dead", Healthy: false}} })
	if n := testutil.CollectAndCount(dnsblHealth{}); n != 2 {
		t.Errorf("dnsbl health series = %d", n)
	}
	if n, err := testutil.GatherAndCount(Registry); err != nil || n == 0 {
		t.Errorf("gather: %d %v", n, err)
	}
}
