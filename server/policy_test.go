package server

import (
	"net"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/metrics"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

// withRules compiles YAML rules into the test configuration, as Load would.
func withRules(t *testing.T, rulesYAML string, opts policy.Options, more func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(rulesYAML), &doc); err != nil {
			t.Fatal(err)
		}
		rules, errs := policy.ParseRules("test.yaml", "rules", doc.Content[0])
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		eng, errs := policy.NewEngine(rules, opts)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		c.Policy.Engine = eng
		if more != nil {
			more(c)
		}
	}
}

const testRules = `
- name: block-spammer
  if: { mail_from: "*@spammer.test" }
  action: reject
  reply: 550 5.7.1 Not from spammer.test
- name: drop-evil
  if: { mail_from.domain: evil.test }
  action: drop
- name: closed-mailbox
  if: { rcpt: closed@ours.test }
  action: reject
  reply: 550 5.2.1 Mailbox closed
- name: no-viagra
  if: { subject: "/(?i)viagra/" }
  action: reject
  reply: 550 5.7.1 Content not wanted
- name: watch-lottery
  if: { subject: "/(?i)lottery/" }
  action: reject
  mode: shadow
- name: partner
  if: { mail_from.domain: partner.test }
  action: accept
- name: partner-would-be-blocked
  if: { mail_from.domain: partner.test }
  action: reject
- name: localhost-helo
  if: { helo: localhost }
  score: 6
`

func TestPolicyRejectDelayedToRcpt(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<bulk@spammer.test>")
	cl.expect("250 ") // delay_reject: the envelope gets recorded
	cl.send("RCPT TO:<bob@ours.test>")
	refOf(t, cl.expect("550 5.7.1 Not from spammer.test (ref "))
	cl.send("RCPT TO:<carol@ours.test>")
	cl.expect("550 5.7.1 Not from spammer.test (ref ")
	cl.send("QUIT")
	rec := h.recs.wait(t, 1)[0]
	if rec.Action != policy.ActionReject || rec.Reason != policy.ReasonRule || rec.Stage != policy.StageMail ||
		len(rec.Rcpts) != 2 || len(rec.Rules) != 1 || rec.Rules[0].Name != "block-spammer" ||
		rec.Facts["mail_from.domain"] != "spammer.test" || rec.Facts["client.ip"] != "127.0.0.1" {
		t.Fatalf("record %+v", rec)
	}
	if n := h.sink.Stats().Conns; n != 0 {
		t.Fatalf("the backend was contacted (%d connections) for a rejected sender", n)
	}
}

func TestPolicyRejectAtMail(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, func(c *config.Config) { c.Policy.DelayReject = false }))
	cl := h.greet()
	cl.send("MAIL FROM:<bulk@spammer.test>")
	cl.expect("550 5.7.1 Not from spammer.test (ref ")
}

func TestPolicyDropClosesAtOnce(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<x@evil.test>")
	cl.expect("554 5.7.1 ")
	if l, err := cl.r.ReadString('\n'); err == nil {
		t.Fatalf("connection still open after a drop: %q", l)
	}
	if rec := h.recs.wait(t, 1)[0]; rec.Action != policy.ActionDrop {
		t.Fatalf("record %+v", rec)
	}
}

func TestPolicyRcptAndDataRules(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<alice@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<closed@ours.test>")
	cl.expect("550 5.2.1 Mailbox closed (ref ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("250 ")
	cl.send("DATA")
	cl.expect("354 ")
	cl.write("Subject: cheap VIAGRA\r\n\r\nbuy\r\n.\r\n")
	cl.expect("550 5.7.1 Content not wanted (ref ")
	if n := len(h.sink.Messages()); n != 0 {
		t.Fatalf("backend got %d messages", n)
	}
	rec := h.recs.wait(t, 1)[0]
	if rec.Action != policy.ActionReject || rec.Stage != policy.StageData || rec.Facts["subject"] != "cheap VIAGRA" {
		t.Fatalf("record %+v", rec)
	}
}

// A shadow rule changes nothing but is recorded.
func TestPolicyShadowRule(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, nil))
	if got := transaction(h, "bob@ours.test", "Subject: you won the lottery\r\n\r\nx\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("got %q", got)
	}
	rec := h.recs.wait(t, 1)[0]
	if rec.Action != policy.ActionAccept || len(rec.Rules) != 1 || !rec.Rules[0].Shadow || rec.Rules[0].Name != "watch-lottery" {
		t.Fatalf("record %+v", rec)
	}
	if n := promtest.ToFloat64(metrics.RuleMatches.WithLabelValues("watch-lottery", "true")); n < 1 {
		t.Errorf("the shadow match was not counted (%v)", n)
	}
}

// Global shadow mode: everything is relayed; the record says what would
// have happened.
func TestPolicyGlobalShadow(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{Shadow: true}, nil))
	cl := h.greet()
	cl.startData("bob@ours.test")
	cl.write("Subject: viagra\r\n\r\nx\r\n.\r\n")
	cl.expect("250 ")
	rec := h.recs.wait(t, 1)[0]
	if rec.Action != policy.ActionAccept || rec.Shadow == nil || rec.Shadow.Rule != "no-viagra" || rec.Shadow.Action != policy.ActionReject {
		t.Fatalf("record %+v shadow %+v", rec, rec.Shadow)
	}
}

// accept stops checking: a later rule that would reject never runs.
func TestPolicyAccept(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<a@partner.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("250 ")
}

// Tagging: the backend gets X-Spam-Flag and X-Spam-Status; a sender's own
// X-Spam-* fields never reach it; the subject tag is applied.
func TestPolicyTag(t *testing.T) {
	tag := 5.0
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{Thresholds: policy.Thresholds{Tag: &tag}},
		func(c *config.Config) { c.Policy.SubjectTag = "[SPAM]" }))
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{t: t, c: c, r: newReader(c)}
	defer c.Close()
	cl.expect("220 ")
	cl.send("EHLO localhost")
	cl.expect("250 ")
	cl.startData("bob@ours.test")
	cl.write("X-Spam-Flag: NO\r\nX-Spam-Status: No, forged\r\n\tcontinued\r\nSubject: hi\r\n\r\nbody\r\n.\r\n")
	cl.expect("250 ")
	msgs := h.sink.Accepted()
	if len(msgs) != 1 {
		t.Fatalf("backend has %d messages", len(msgs))
	}
	data := string(msgs[0].Data)
	if !strings.Contains(data, "\r\nX-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=6.0, rules=localhost-helo\r\n") ||
		strings.Contains(data, "forged") || strings.Contains(data, "continued") || strings.Contains(data, "X-Spam-Flag: NO") ||
		!strings.Contains(data, "\r\nSubject: [SPAM] hi\r\n") || !strings.HasSuffix(data, "\r\n\r\nbody\r\n") {
		t.Fatalf("backend got %q", data)
	}
	if rec := h.recs.wait(t, 1)[0]; rec.Action != policy.ActionTag || rec.Score != 6 {
		t.Fatalf("record %+v", rec)
	}
}

// TestRecordKeepsOnlyNamedHeaders: the record's facts hold the header
// fields some rule names, not every header of every message.
func TestRecordKeepsOnlyNamedHeaders(t *testing.T) {
	rules := `
- name: mailer
  if: { header.x-mailer: "/bulk/" }
  score: 1
`
	h := newHarness(t, sink.Config{}, withRules(t, rules, policy.Options{}, nil))
	transaction(h, "bob@ours.test", "X-Mailer: BulkMailer 3\r\nDKIM-Signature: v=1; a=rsa-sha256; b=secretish\r\nSubject: s\r\n\r\nx\r\n")
	rec := h.recs.wait(t, 1)[0]
	if rec.Facts["header.x-mailer"] != "BulkMailer 3" || rec.Facts["subject"] != "s" {
		t.Fatalf("facts %v", rec.Facts)
	}
	if _, ok := rec.Facts["header.dkim-signature"]; ok {
		t.Fatalf("the record keeps headers no rule names: %v", rec.Facts)
	}
}

// TestReplyNamesHeaderFact: a header fact that only a rule's reply names
// (no condition does) is still set, so the placeholder expands, and the
// record keeps it.
func TestReplyNamesHeaderFact(t *testing.T) {
	rules := `
- name: big
  if: { size: ">= 1" }
  action: reject
  reply: "550 5.7.1 Not from {header.x-mailer}"
`
	h := newHarness(t, sink.Config{}, withRules(t, rules, policy.Options{}, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("250 ")
	cl.send("DATA")
	cl.expect("354 ")
	cl.send("X-Mailer: BulkMailer 3\r\nSubject: s\r\n\r\nx\r\n.")
	cl.expect("550 5.7.1 Not from BulkMailer 3 (ref ")
	cl.send("QUIT")
	rec := h.recs.wait(t, 1)[0]
	if rec.Facts["header.x-mailer"] != "BulkMailer 3" {
		t.Fatalf("facts %v", rec.Facts)
	}
	if _, ok := rec.Facts["header.subject"]; ok {
		t.Fatalf("the record keeps headers no rule names: %v", rec.Facts)
	}
}

// A transaction refused by a rule delayed to RCPT is recorded as the rule's,
// even when its last recipient was also outside our domains.
func TestPolicyDelayedRejectIsTheReason(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, testRules, policy.Options{}, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<bulk@spammer.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("550 5.7.1 Not from spammer.test")
	cl.send("RCPT TO:<eve@elsewhere.test>")
	cl.expect("550 5.7.1 Relay access denied")
	cl.send("QUIT")
	if rec := h.recs.wait(t, 1)[0]; rec.Reason != policy.ReasonRule || rec.Stage != policy.StageMail || rec.Reply.Text != "Not from spammer.test (ref "+rec.Ref+")" {
		t.Fatalf("record %+v reply %+v", rec, rec.Reply)
	}
}
