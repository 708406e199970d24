package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/checks/greylist"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/internal/testutil"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

func greylistAlways(c *config.Config) {
	c.Checks.Greylist.When = "always"
	c.Checks.Greylist.Delay = 300 * time.Millisecond
}

// send tries one transaction up to RCPT and returns the RCPT reply.
func rcptReply(h *harness, from, to string) string {
	cl := h.greet()
	cl.send("MAIL FROM:<" + from + ">")
	cl.expect("250 ")
	cl.send("RCPT TO:<" + to + ">")
	r := cl.reply()
	cl.send("QUIT")
	return r[len(r)-1]
}

// TestGreylistRetryPasses: a new triplet gets 451 4.7.1 with a retry hint;
// a retry before the delay too; after it, the retry passes; the record
// shows the triplet.
func TestGreylistRetryPasses(t *testing.T) {
	h := newHarness(t, sink.Config{}, greylistAlways)
	first := rcptReply(h, "news@example.test", "bob@ours.test")
	if !strings.HasPrefix(first, "451 4.7.1 Greylisted, please try again in ") {
		t.Fatalf("first attempt: %q", first)
	}
	ref := refOf(t, first)
	if got := rcptReply(h, "news@example.test", "bob@ours.test"); !strings.HasPrefix(got, "451 4.7.1 ") {
		t.Fatalf("early retry: %q", got)
	}
	time.Sleep(400 * time.Millisecond)
	if got := rcptReply(h, "news@example.test", "bob@ours.test"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("retry after the delay: %q", got)
	}
	// Each session's record is written when it ends, and the client does
	// not wait for QUIT's reply, so records may arrive out of order: find
	// them by greylist state.
	byState := map[string]*verdict.Record{}
	for i, recs := 0, h.recs.wait(t, 3); i < len(recs); i++ {
		r := &recs[i]
		if r.Greylist == nil {
			t.Fatalf("record without greylist: %+v", r)
		}
		byState[r.Greylist.State] = r
	}
	r := byState["new"]
	if r == nil || r.Action != policy.ActionGreylist || r.Reason != policy.ReasonGreylisted ||
		r.Greylist.Key == "" || r.Greylist.Ref != ref || r.Greylist.PassAt.IsZero() {
		t.Fatalf("first record %+v", r)
	}
	if byState["early"] == nil || byState["passed"] == nil {
		t.Fatalf("records by greylist state: %+v", byState)
	}
}

// failingStore breaks every operation, like a Redis that went away.
type failingStore struct{}

var errStoreDown = errors.New("store down")

func (failingStore) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, errStoreDown
}
func (failingStore) Update(context.Context, string, func([]byte) ([]byte, time.Duration, error)) error {
	return errStoreDown
}
func (failingStore) Delete(context.Context, string) error { return errStoreDown }
func (failingStore) Scan(context.Context, string, func(string, []byte) bool) error {
	return errStoreDown
}
func (failingStore) Close() error { return nil }

// TestGreylistStoreDownFailsOpen: mail is never deferred because the store
// is down.
func TestGreylistStoreDownFailsOpen(t *testing.T) {
	h := newHarness(t, sink.Config{}, greylistAlways)
	h.srv.Runtime().Greylist = greylist.New(failingStore{}, greylist.Options{Delay: time.Minute})
	if got := rcptReply(h, "news@example.test", "bob@ours.test"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("store down: %q, want 250 (fail open)", got)
	}
	if rec := h.recs.wait(t, 1)[0]; rec.Greylist == nil || rec.Greylist.State != "error" {
		t.Fatalf("record greylist %+v", rec.Greylist)
	}
}

// TestGreylistExemptions: an accept rule, and skip_greylist, exempt; rate
// limits are not consumed by greylisted attempts.
func TestGreylistExemptions(t *testing.T) {
	rules := `
- name: partner
  if: { mail_from.domain: partner.test }
  action: accept
- name: trusted
  if: { mail_from.domain: trusted.test }
  action: skip_greylist
`
	h := newHarness(t, sink.Config{}, withRules(t, rules, policy.Options{}, func(c *config.Config) {
		greylistAlways(c)
		c.Checks.RateLimit.Messages = config.Rate{Limit: 1, Per: time.Hour}
	}))
	if got := rcptReply(h, "a@partner.test", "bob@ours.test"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("accepted sender: %q", got)
	}
	h2 := newHarness(t, sink.Config{}, withRules(t, rules, policy.Options{}, func(c *config.Config) {
		greylistAlways(c)
		c.Checks.RateLimit.Messages = config.Rate{Limit: 1, Per: time.Hour}
	}))
	if got := rcptReply(h2, "a@trusted.test", "bob@ours.test"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("skip_greylist sender: %q", got)
	}
	// A greylisted first attempt costs nothing: with a limit of one
	// message, the retry is still allowed.
	h3 := newHarness(t, sink.Config{}, func(c *config.Config) {
		greylistAlways(c)
		c.Checks.RateLimit.Messages = config.Rate{Limit: 1, Per: time.Hour}
	})
	if got := rcptReply(h3, "n@example.test", "bob@ours.test"); !strings.HasPrefix(got, "451 4.7.1 Greylisted") {
		t.Fatalf("first: %q", got)
	}
	time.Sleep(400 * time.Millisecond)
	if got := rcptReply(h3, "n@example.test", "bob@ours.test"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("retry was refused: %q", got)
	}
}

// TestGreylistTwoGatewaysRedis: two gateways behind the same MX records
// share a real Redis: the first attempt at gateway A is deferred, the retry
// at gateway B passes.
func TestGreylistTwoGatewaysRedis(t *testing.T) {
	rs := testutil.StartRedis(t)
	shared := func(c *config.Config) {
		greylistAlways(c)
		c.Checks.Greylist.Store = rs.URL("", 0)
	}
	a := newHarness(t, sink.Config{}, shared)
	b := newHarness(t, sink.Config{}, shared)
	if got := rcptReply(a, "news@example.test", "bob@ours.test"); !strings.HasPrefix(got, "451 4.7.1 Greylisted") {
		t.Fatalf("first attempt at A: %q", got)
	}
	if got := rcptReply(b, "news@example.test", "bob@ours.test"); !strings.HasPrefix(got, "451 4.7.1 ") {
		t.Fatalf("early retry at B: %q", got)
	}
	time.Sleep(400 * time.Millisecond)
	if got := rcptReply(b, "news@example.test", "bob@ours.test"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("retry at B after the delay: %q", got)
	}
}

// TestShadowModeDefersAndDropsNothing: in policy.mode shadow, greylisting
// (even when: always) defers nothing, and an early talker is not refused;
// the record says what enforcing would have done.
func TestShadowModeDefersAndDropsNothing(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, "- name: x\n  if: { helo: never.test }\n  score: 1\n", policy.Options{Shadow: true}, func(c *config.Config) {
		greylistAlways(c)
		c.Policy.Mode = "shadow"
		c.Checks.Pregreet = config.Pregreet{Wait: 300 * time.Millisecond, Action: "drop"}
	}))
	cl := h.dial()
	cl.send("EHLO eager.example.test") // before the banner: an early talker
	cl.expect("220 ")
	cl.expect("250 ")
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("250 ")
	cl.send("QUIT")
	rec := h.recs.wait(t, 1)[0]
	if rec.Shadow == nil || rec.Shadow.Rule != "pregreet" || rec.Greylist != nil {
		t.Fatalf("record %+v shadow %+v greylist %+v", rec, rec.Shadow, rec.Greylist)
	}
}
