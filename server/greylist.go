package server

import (
	"fmt"
	"time"

	"github.com/mxgate/mxgate/checks/greylist"
	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/metrics"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// wantsGreylist reports whether this recipient is to be greylisted: the
// policy said so (a rule or the greylist threshold, with when:
// suspicious), or when: always; never for clients an accept or
// skip_greylist rule covers, allow-listed clients (a negative DNSBL score),
// or, when configured, SPF-authenticated senders.
func (s *session) wantsGreylist(tx *txn) bool {
	g := s.rt.Cfg.Checks.Greylist
	if s.rt.Greylist == nil || !g.Enabled || s.rt.Cfg.Policy.Mode == "shadow" {
		return false // an observer defers nothing
	}
	if !tx.policyGreylist && g.When != "always" {
		return false
	}
	ev := tx.eval
	if ev != nil && (ev.Accepted || ev.SkipGreylist || ev.RcptAccepted || ev.RcptSkipGreylist) {
		return false
	}
	if v, ok := tx.vals.Get("dnsbl.score"); ok {
		if score, _ := v.(float64); score < 0 {
			return false
		}
	}
	if g.SkipSPFPass {
		if v, ok := tx.vals.Get("spf"); ok && v == "pass" {
			return false
		}
	}
	return true
}

// greylistRcpt greylists one recipient when wanted. It returns the 451 for
// a triplet that is new or retried too early, nil when it passes. A store
// failure lets the mail through (fail open), logged and counted: mail is
// never deferred because the store is down.
func (s *session) greylistRcpt(tx *txn, rcpt address.Addr) *policy.Reply {
	if !s.wantsGreylist(tx) {
		tx.vals.Set("greylist", string(greylist.StateSkipped))
		return nil
	}
	c := greylist.Client{IP: s.st.ip, MailDomain: tx.from.Domain}
	if v, ok := tx.vals.Get("spf"); ok && v == "pass" {
		c.SPFPass = true
	}
	if v, ok := tx.vals.Get("client.fcrdns"); ok && v == "pass" {
		c.PTR, _ = stringFact(tx, "client.ptr")
	}
	d, err := s.rt.Greylist.Check(s.ctx(), c, tx.from.String(), rcpt.String(), tx.ref)
	tx.vals.Set("greylist", string(d.State))
	tx.rec.Greylist = &verdict.Greylist{State: string(d.State), Key: d.Key, Ref: d.Ref, FirstSeen: d.FirstSeen, PassAt: d.PassAt}
	if err != nil || d.State == greylist.StateError {
		metrics.GreylistErrors.Inc()
		s.log().Warn("greylist store failed; accepting without greylisting", "err", err)
		return nil
	}
	if d.State != greylist.StateNew && d.State != greylist.StateEarly {
		return nil
	}
	wait := time.Until(d.PassAt).Round(time.Second)
	if wait < time.Second {
		wait = time.Second
	}
	return policy.ErrGreylisted.WithText("Greylisted, please try again in %s", humanDuration(wait))
}

func stringFact(tx *txn, name string) (string, bool) {
	v, ok := tx.vals.Get(name)
	s, _ := v.(string)
	return s, ok && s != ""
}

// humanDuration says "5 minutes", "40 seconds", "1 minute".
func humanDuration(d time.Duration) string {
	unit, n := "second", int(d/time.Second)
	if d >= 2*time.Minute {
		unit, n = "minute", int((d+30*time.Second)/time.Minute)
	}
	if n == 1 {
		return fmt.Sprintf("1 %s", unit)
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
