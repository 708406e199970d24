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
	if n, err := testutil.GatherAndCount(Registry); err != nil || n == 0 {
		t.Errorf("gather: %d %v", n, err)
	}
}
