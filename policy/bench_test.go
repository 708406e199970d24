package policy_test

import (
	"net/netip"
	"testing"

	"go.yaml.in/yaml/v3"

	_ "github.com/mxgate/mxgate/checks/all" // the facts the shipped rules name
	"github.com/mxgate/mxgate/policy"
	"github.com/mxgate/mxgate/rules"
)

// benchOperatorRules are a handful of rules an operator puts in front of
// the shipped set, none of which matches benchFacts.
const benchOperatorRules = `
- name: partners
  if: { client.ip: [192.0.2.0/24, "2001:db8::/32"] }
  action: accept
- name: no-bounces-to-lists
  if: { mail_from: "", rcpt: lists@example.com }
  action: reject
  reply: 550 5.7.1 This list does not take bounces
- name: block-spammer
  if: { mail_from.domain: [spammer.test, "*.spammer.test"] }
  action: reject
- name: trusted-senders
  if: { mail_from.domain: [bank.test, payroll.test], spf: pass }
  action: skip_greylist
- name: suspicious-mailer
  if: { header.x-mailer: "/(?i)mass ?mailer/" }
  score: 4
- name: big-and-unauthenticated
  if: { size: "> 1000000", not: { dmarc: pass } }
  score: 2
- name: newsletter-tag
  if: { any: [ { header.list-unsubscribe: "/./" }, { subject: "/^\\[newsletter\\]/" } ] }
  action: tag
  mode: shadow
`

// benchThresholds are config.example.yaml's.
func benchThresholds() policy.Thresholds {
	tag, grey, reject := 5.0, 8.0, 15.0
	return policy.Thresholds{Tag: &tag, Greylist: &grey, Reject: &reject}
}

// loadBenchRules parses the operator rules and the shipped default.yaml
// from their bytes and builds the engine, as a configuration load does.
func loadBenchRules(tb testing.TB, defaults []byte) *policy.Engine {
	var op, def yaml.Node
	if err := yaml.Unmarshal([]byte(benchOperatorRules), &op); err != nil {
		tb.Fatal(err)
	}
	if err := yaml.Unmarshal(defaults, &def); err != nil {
		tb.Fatal(err)
	}
	all, errs := policy.ParseRules("config.yaml", "policy.rules", op.Content[0])
	if len(errs) > 0 {
		tb.Fatal(errs)
	}
	m := def.Content[0] // default.yaml is a mapping with one key, rules
	if len(m.Content) != 2 || m.Content[0].Value != "rules" {
		tb.Fatalf("%s: want a mapping with only rules:", rules.Default)
	}
	defRules, errs := policy.ParseRules(rules.Default, "rules", m.Content[1])
	if len(errs) > 0 {
		tb.Fatal(errs)
	}
	eng, errs := policy.NewEngine(append(all, defRules...), policy.Options{Thresholds: benchThresholds()})
	if len(errs) > 0 {
		tb.Fatal(errs)
	}
	return eng
}

func defaultRules(tb testing.TB) []byte {
	data, err := rules.FS.ReadFile(rules.Default)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// benchFacts are the facts of a clean transaction, by stage: a client
// with confirmed reverse DNS on no list, a proper EHLO over TLS, SPF,
// DKIM and DMARC passing, one recipient, a 4 KiB message.
var benchFacts = []struct {
	stage policy.Stage
	facts map[string]any
}{
	{policy.StageConnect, map[string]any{
		"client.ip": netip.MustParseAddr("198.51.100.7"), "client.port": 41234, "pregreet": "pass",
		"client.fcrdns": "pass", "client.ptr": "mail.example.org", "client.iplists": []string{},
		"dnsbl.score": 0, "dnsbl.listed": []string{}, "dnsbl.reason": "",
	}},
	{policy.StageHelo, map[string]any{
		"helo": "mail.example.org", "helo.valid": true, "tls": true,
		"helo.bare_ip": false, "helo.literal_mismatch": false, "helo.ours": false,
	}},
	{policy.StageMail, map[string]any{"mail_from": "alice@example.org", "mail_from.domain": "example.org"}},
	{policy.StageRcpt, map[string]any{
		"spf": "pass", "spf.helo": "pass", "spf.domain": "example.org",
		"rcpt": "bob@example.com", "rcpt.domain": "example.com", "greylist": "skipped",
	}},
	{policy.StageData, map[string]any{
		"size": 4312, "subject": "Minutes of Tuesday's meeting", "message_id": "<minutes-1@example.org>",
		"header.from": "Alice <alice@example.org>", "header.to": "Bob <bob@example.com>",
		"header.subject": "Minutes of Tuesday's meeting", "header.date": "Mon, 2 Mar 2026 10:00:00 +0000",
		"header.message-id": "<minutes-1@example.org>", "header.mime-version": "1.0",
		"header.content-type": "text/plain; charset=utf-8", "header_from.valid": true,
		"header_from.domain": "example.org", "dkim": "pass", "dkim.domains": []string{"example.org"},
		"dmarc": "pass", "dmarc.policy": "none", "dmarc.domain": "example.org",
	}},
}

// setFacts adds the facts of one stage to v.
func setFacts(tb testing.TB, v *policy.Values, facts map[string]any) {
	for name, val := range facts {
		if err := v.Set(name, val); err != nil {
			tb.Fatal(err)
		}
	}
}

// evalClean runs a transaction through every stage, facts already set,
// and fails if anything decided it.
func evalClean(tb testing.TB, eng *policy.Engine, v *policy.Values) *policy.Eval {
	ev := eng.NewEval()
	for _, st := range benchFacts {
		if out := ev.Stage(st.stage, v); out != nil {
			tb.Fatalf("stage %s: decided %+v", st.stage, out)
		}
	}
	return ev
}

// BenchmarkEvalClean measures evaluating the shipped rules and a handful
// of operator rules, with thresholds, against a clean transaction through
// all five stages (one recipient), the facts already known: the policy's
// share of every accepted message.
func BenchmarkEvalClean(b *testing.B) {
	eng := loadBenchRules(b, defaultRules(b))
	v := policy.NewValues()
	for _, st := range benchFacts {
		setFacts(b, v, st.facts)
	}
	if ev := evalClean(b, eng, v); ev.Score != 0 || ev.Tag || len(ev.Matches) != 0 {
		b.Fatalf("clean transaction: score %v, tag %v, matches %+v", ev.Score, ev.Tag, ev.Matches)
	}
	b.ReportAllocs()
	for b.Loop() {
		evalClean(b, eng, v)
	}
}

// BenchmarkEvalCleanWithFacts is BenchmarkEvalClean with the facts set
// stage by stage as the session sets them: what a transaction pays for
// its Values as well as for the rules.
func BenchmarkEvalCleanWithFacts(b *testing.B) {
	eng := loadBenchRules(b, defaultRules(b))
	b.ReportAllocs()
	for b.Loop() {
		v := policy.NewValues()
		ev := eng.NewEval()
		for _, st := range benchFacts {
			setFacts(b, v, st.facts)
			if out := ev.Stage(st.stage, v); out != nil {
				b.Fatalf("stage %s: decided %+v", st.stage, out)
			}
		}
	}
}

// BenchmarkLoadRules measures turning the rule files' bytes into an
// engine (YAML decoding, parsing, pattern compilation, NewEngine): work
// done once per configuration load or reload, never per message.
func BenchmarkLoadRules(b *testing.B) {
	data := defaultRules(b)
	b.ReportAllocs()
	for b.Loop() {
		loadBenchRules(b, data)
	}
}
