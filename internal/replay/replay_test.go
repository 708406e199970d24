package replay

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/demo"
	"github.com/mxgate/mxgate/policy"
)

// recorded runs the demo's tour through the real gateway and returns its
// verdict records and the engine they were decided under.
func recorded(t *testing.T) ([]byte, *policy.Engine) {
	t.Helper()
	dir := t.TempDir()
	var out, errs bytes.Buffer
	if err := demo.Run(context.Background(), demo.Options{Listen: "127.0.0.1:0", Tour: true, Exit: true, Out: &out, Err: &errs, Dir: dir}); err != nil {
		t.Fatalf("%v\n%s", err, errs.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "verdicts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := demo.Config("127.0.0.1:2525", "127.0.0.1:1", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	return data, cfg.Policy.Engine
}

func TestSamePolicyChangesNothing(t *testing.T) {
	data, eng := recorded(t)
	rep, err := Run(eng, bytes.NewReader(data), "verdicts.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed < 9 || rep.Changed != 0 {
		var b bytes.Buffer
		rep.Print(&b)
		t.Fatalf("replayed %d, changed %d:\n%s", rep.Replayed, rep.Changed, b.String())
	}
}

// TestChangedPolicyFlips: a lower reject threshold turns the tour's tagged
// message (score 5) into a reject; without the rule that rejects
// spammer.test, that transaction passes. Nothing else changes.
func TestChangedPolicyFlips(t *testing.T) {
	data, eng := recorded(t)
	var rules []*policy.Rule
	for _, r := range eng.Rules() {
		if r.Name != "demo-no-spammer-test" {
			rules = append(rules, r)
		}
	}
	tag, reject := 3.0, 4.0
	changed, errs := policy.NewEngine(rules, policy.Options{Thresholds: policy.Thresholds{Tag: &tag, Reject: &reject}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rep, err := Run(changed, bytes.NewReader(data), "verdicts.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range rep.Groups {
		got = append(got, g.Rule+": "+string(g.Old)+" -> "+string(g.New)+" x"+string(rune('0'+g.Count)))
	}
	want := []string{"demo-no-spammer-test: reject -> pass x1", "threshold:reject: tag -> reject x1"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("groups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var b bytes.Buffer
	rep.Print(&b)
	if !strings.Contains(b.String(), "2 decisions would change") {
		t.Errorf("report:\n%s", b.String())
	}
}

func TestBadInput(t *testing.T) {
	eng, _ := policy.NewEngine(nil, policy.Options{})
	for _, in := range []string{"not json\n", `{"schema":99,"ref":"x"}` + "\n"} {
		if _, err := Run(eng, strings.NewReader(in), "v.jsonl"); err == nil || !strings.HasPrefix(err.Error(), "v.jsonl:1: ") {
			t.Errorf("%q: err %v", in, err)
		}
	}
}
