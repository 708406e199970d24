package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/policy"
)

// The per-list result cache. A spam run reconnects from the same address
// many times a minute; the resolver caches too, but this saves the fan-out
// and keeps a list's own TTL from mattering for a burst.
const (
	cacheTTL  = 60 * time.Second
	cacheSize = 16384 // (list, address or name) pairs; ~2 MB at most
)

// status is what one list said about one name.
type status uint8

const (
	stPending   status = iota // still being looked up
	stNotListed               // NXDOMAIN, or only answers outside the answer set
	stListed
	stBadAnswer // 127.255.255.0/24 or outside 127/8: an error, never a listing
	stError     // SERVFAIL, REFUSED, timeout
	stSkipped   // the list is unhealthy, or the name does not fit
)

// outcome is one list's answer about one name. Its strings are safe to
// show: none holds the zone.
type outcome struct {
	st      status
	answers []netip.Addr // what the list answered, sorted
	weight  float64      // of a listing
	text    string       // the deciding Answer's Text
	decider netip.Addr   // the answer that decided weight and text
	why     string       // for stError and stSkipped
}

// job is one query of a check: a list and what to look up in it.
type job struct {
	z     *zone
	label string // reversed address or domain, without the zone
	role  string // "helo", "mail_from", both, or "" (shown in Detail)
	mail  bool   // the label is the MAIL FROM domain
}

// lookupAll queries every job in parallel and returns when all are done or
// ctx expires; the stragglers then end on their own, as the resolver
// honours ctx, and their buffered sends never block.
func (d *DNSBL) lookupAll(ctx context.Context, jobs []job) []outcome {
	type done struct {
		i int
		o outcome
	}
	outs := make([]outcome, len(jobs))
	ch := make(chan done, len(jobs))
	pending := 0
	now := d.now()
	for i, j := range jobs {
		if h := j.z.health.Load(); !h.healthy {
			outs[i] = outcome{st: stSkipped, why: "unhealthy: " + h.reason}
			continue
		}
		if len(j.label)+1+len(j.z.query) > maxName {
			outs[i] = outcome{st: stSkipped, why: "name too long for the zone"}
			continue
		}
		key := cacheKey{j.z.idx, j.label}
		if o, ok := d.cache.get(key, now); ok {
			outs[i] = o
			continue
		}
		pending++
		go func() {
			o := d.query(ctx, j.z, j.label)
			if o.st != stError { // a failure is retried by the next client
				d.cache.put(key, o, d.now())
			}
			ch <- done{i, o}
		}()
	}
	for ; pending > 0; pending-- {
		select {
		case r := <-ch:
			outs[r.i] = r.o
		case <-ctx.Done():
			why := "timeout"
			if errors.Is(ctx.Err(), context.Canceled) {
				why = "canceled"
			}
			for i := range outs {
				if outs[i].st == stPending {
					outs[i] = outcome{st: stError, why: why}
				}
			}
			return outs
		}
	}
	return outs
}

// query looks label up in z (A records only: RFC 5782 §2.3) and
// classifies the answer.
func (d *DNSBL) query(ctx context.Context, z *zone, label string) outcome {
	ips, err := d.r.LookupIP(ctx, "ip4", label+"."+z.query+".")
	if err != nil {
		o := classifyErr(ctx, err)
		if o.st == stError {
			z.errors.Add(1)
		}
		return o
	}
	o := z.classify(ips)
	if o.st == stBadAnswer {
		z.badAnswers.Add(1)
		d.warnBadAnswer(z, o)
	}
	return o
}

// rcodeNames are the resolver error texts that may be shown: the
// resolver's other errors quote the query name, and with it the zone.
var rcodeNames = []string{"SERVFAIL", "REFUSED", "FORMERR", "NOTIMP", "server misbehaving"}

// classifyErr turns a lookup error into an outcome with a fixed text.
func classifyErr(ctx context.Context, err error) outcome {
	var de *net.DNSError
	isDNS := errors.As(err, &de)
	switch {
	case isDNS && de.IsNotFound:
		return outcome{st: stNotListed}
	case isDNS && de.IsTimeout, errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded):
		return outcome{st: stError, why: "timeout"}
	case ctx.Err() != nil:
		return outcome{st: stError, why: "canceled"}
	case isDNS && slices.Contains(rcodeNames, de.Err):
		return outcome{st: stError, why: de.Err}
	case isDNS && de.IsTemporary:
		return outcome{st: stError, why: "temporary failure"}
	}
	return outcome{st: stError, why: "lookup failed"}
}

// classify decides what the addresses a list answered mean. One error
// answer spoils the lot: a resolver that mixes them is not to be trusted.
func (z *zone) classify(ips []net.IP) outcome {
	o := outcome{st: stNotListed}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			o.answers = append(o.answers, a.Unmap())
		}
	}
	slices.SortFunc(o.answers, netip.Addr.Compare)
	o.answers = slices.Compact(o.answers)
	for _, a := range o.answers {
		if !a.Is4() || !loopback8.Contains(a) || refused24.Contains(a) {
			return outcome{st: stBadAnswer, answers: o.answers, decider: a}
		}
	}
	for _, a := range o.answers {
		w, text, ok := z.match(a)
		// Several answers (ZEN: SBL and XBL) count once, with the weight
		// that says most, block or allow.
		if ok && (o.st != stListed || math.Abs(w) > math.Abs(o.weight)) {
			o.st, o.weight, o.text, o.decider = stListed, w, text, a
		}
	}
	return o
}

// match returns the weight and text of the most specific configured
// answer containing a, which classify has checked is in 127/8.
func (z *zone) match(a netip.Addr) (float64, string, bool) {
	if len(z.answers) == 0 {
		return z.weight, "", true
	}
	for _, ans := range z.answers {
		if ans.Net.Contains(a) {
			if ans.Weight != nil {
				return *ans.Weight, ans.Text, true
			}
			return z.weight, ans.Text, true
		}
	}
	return 0, "", false
}

// badAnswerEvery limits the warning for error answers: behind a public
// resolver every connection gets one.
const badAnswerEvery = time.Minute

func (d *DNSBL) warnBadAnswer(z *zone, o outcome) {
	now := d.now().UnixNano()
	last := z.lastWarn.Load()
	if last != 0 && now-last < int64(badAnswerEvery) || !z.lastWarn.CompareAndSwap(last, now) {
		return
	}
	d.log.Warn("dnsbl: list answered with an error code, not a listing: it refuses the resolver (public or over quota) or the resolver rewrites answers; failing open",
		"list", z.name, "answer", o.decider.String(), "bad_answers", z.badAnswers.Load())
}

// summary is what a check's outcomes add up to.
type summary struct {
	score  float64
	listed []string // display names, in configuration order, never nil
	failed bool
	detail []string
	reason string // of the highest-weight block listing
	best   float64
}

func summarize(jobs []job, outs []outcome) summary {
	s := summary{listed: []string{}}
	for i, o := range outs {
		z := jobs[i].z
		label := z.name
		if jobs[i].role != "" {
			label = jobs[i].role + " " + z.name
		}
		switch o.st {
		case stListed:
			s.score += o.weight
			if !slices.Contains(s.listed, z.name) {
				s.listed = append(s.listed, z.name)
			}
			s.detail = append(s.detail, label+": "+joinAddrs(o.answers))
			if o.weight > 0 && (s.reason == "" || o.weight > s.best) {
				s.best, s.reason = o.weight, o.text
				if s.reason == "" {
					s.reason = fmt.Sprintf("listed by %s (%s)", z.name, o.decider)
				}
			}
		case stNotListed:
			if len(o.answers) > 0 {
				s.detail = append(s.detail, label+": not listed ("+joinAddrs(o.answers)+" not counted)")
			} else {
				s.detail = append(s.detail, label+": not listed")
			}
		case stBadAnswer:
			s.failed = true
			what := "bad answer"
			if refused24.Contains(o.decider) {
				what = "refused"
			}
			s.detail = append(s.detail, fmt.Sprintf("%s: %s (%s)", label, what, joinAddrs(o.answers)))
		case stError:
			s.failed = true
			s.detail = append(s.detail, label+": "+o.why)
		case stSkipped:
			s.detail = append(s.detail, label+": skipped ("+o.why+")")
		}
	}
	return s
}

// result names the outcome: a zero score with listings is still "listed"
// (a list weighted 0 is there for rules to name it).
func (s summary) result() string {
	switch {
	case s.score > 0:
		return "listed"
	case s.score < 0:
		return "allowlisted"
	case len(s.listed) > 0:
		return "listed"
	case s.failed:
		return "temperror"
	}
	return "clean"
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// IP returns the check of the client's address against the IP-based
// lists (Name "dnsbl", Stage connect). It does nothing, setting no facts,
// when there are none, and is safe to call on a nil DNSBL.
func (d *DNSBL) IP() checks.Check {
	if d == nil || len(d.ip) == 0 {
		return noop{"dnsbl", policy.StageConnect}
	}
	return ipCheck{d}
}

// Helo returns the check of the HELO name against the domain lists On
// "helo" (Name "rhsbl_helo", Stage helo). It does nothing, setting no
// facts, when there are none, and is safe to call on a nil DNSBL.
func (d *DNSBL) Helo() checks.Check {
	if d == nil || len(d.helo) == 0 {
		return noop{"rhsbl_helo", policy.StageHelo}
	}
	return heloCheck{d}
}

// MailFrom returns the check of the envelope sender's domain against the
// domain lists On "mail_from" (Name "rhsbl_mail_from", Stage mail). It
// also looks the HELO name up again (from the cache, normally) because
// rhsbl.score, a mail-stage fact, adds both up. It does nothing, setting
// no facts, when there are no domain lists, and is safe to call on a nil
// DNSBL.
func (d *DNSBL) MailFrom() checks.Check {
	if d == nil || len(d.helo)+len(d.mail) == 0 {
		return noop{"rhsbl_mail_from", policy.StageMail}
	}
	return mailCheck{d}
}

// noop stands in for a check with nothing to query, so the registry need
// not special-case an unconfigured one.
type noop struct {
	name  string
	stage policy.Stage
}

func (c noop) Name() string        { return c.name }
func (c noop) Stage() policy.Stage { return c.stage }
func (c noop) Run(context.Context, checks.Input) checks.Result {
	return checks.Result{Name: c.name, Result: "none", Detail: "no lists configured"}
}

type ipCheck struct{ d *DNSBL }

func (c ipCheck) Name() string        { return "dnsbl" }
func (c ipCheck) Stage() policy.Stage { return policy.StageConnect }
func (c ipCheck) Run(ctx context.Context, in checks.Input) checks.Result {
	ip := in.IP.Unmap().WithZone("")
	if !ip.IsValid() {
		return checks.Result{Name: c.Name(), Result: "none", Detail: "no client address",
			Facts: map[string]any{"dnsbl.score": 0.0, "dnsbl.listed": []string{}, "dnsbl.reason": ""}}
	}
	label := reverseIP(ip)
	jobs := make([]job, len(c.d.ip))
	for i, z := range c.d.ip {
		jobs[i] = job{z: z, label: label}
	}
	s := summarize(jobs, c.d.lookupAll(ctx, jobs))
	return checks.Result{Name: c.Name(), Result: s.result(), Detail: strings.Join(s.detail, "; "), Score: s.score,
		Facts: map[string]any{"dnsbl.score": s.score, "dnsbl.listed": s.listed, "dnsbl.reason": s.reason}}
}

type heloCheck struct{ d *DNSBL }

func (c heloCheck) Name() string        { return "rhsbl_helo" }
func (c heloCheck) Stage() policy.Stage { return policy.StageHelo }
func (c heloCheck) Run(ctx context.Context, in checks.Input) checks.Result {
	name, ok := queryDomain(in.Helo)
	if !ok {
		return checks.Result{Name: c.Name(), Result: "none", Detail: "HELO name is not a domain name: not looked up",
			Facts: map[string]any{"rhsbl.helo.listed": []string{}}}
	}
	jobs := make([]job, len(c.d.helo))
	for i, z := range c.d.helo {
		jobs[i] = job{z: z, label: name}
	}
	s := summarize(jobs, c.d.lookupAll(ctx, jobs))
	return checks.Result{Name: c.Name(), Result: s.result(), Detail: strings.Join(s.detail, "; "), Score: s.score,
		Facts: map[string]any{"rhsbl.helo.listed": s.listed}}
}

type mailCheck struct{ d *DNSBL }

func (c mailCheck) Name() string        { return "rhsbl_mail_from" }
func (c mailCheck) Stage() policy.Stage { return policy.StageMail }
func (c mailCheck) Run(ctx context.Context, in checks.Input) checks.Result {
	var jobs []job
	var notes []string
	if name, ok := queryDomain(in.MailDomain); ok {
		for _, z := range c.d.mail {
			jobs = append(jobs, job{z: z, label: name, role: "mail_from", mail: true})
		}
	} else if len(c.d.mail) > 0 {
		notes = append(notes, "mail_from: no domain to look up")
	}
	if name, ok := queryDomain(in.Helo); ok {
	helo:
		for _, z := range c.d.helo {
			// The same name in the same list is one piece of evidence.
			for i := range jobs {
				if jobs[i].z == z && jobs[i].label == name {
					jobs[i].role = "helo+mail_from"
					continue helo
				}
			}
			jobs = append(jobs, job{z: z, label: name, role: "helo"})
		}
	}
	outs := c.d.lookupAll(ctx, jobs)
	s := summarize(jobs, outs)
	mailListed := []string{}
	for i, j := range jobs {
		if j.mail && outs[i].st == stListed && !slices.Contains(mailListed, j.z.name) {
			mailListed = append(mailListed, j.z.name)
		}
	}
	res := s.result()
	if len(jobs) == 0 {
		res = "none"
	}
	return checks.Result{Name: c.Name(), Result: res, Detail: strings.Join(append(notes, s.detail...), "; "), Score: s.score,
		Facts: map[string]any{"rhsbl.mail_from.listed": mailListed, "rhsbl.score": s.score}}
}

// cacheKey is a list (by position) and the label looked up in it.
type cacheKey struct {
	zone  int
	label string
}

type cacheEntry struct {
	o       outcome
	expires time.Time
}

// cache is a bounded map with a fixed TTL. When full it drops expired
// entries, then arbitrary ones: losing an entry costs one query.
type cache struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[cacheKey]cacheEntry
}

func newCache(max int, ttl time.Duration) *cache {
	return &cache{max: max, ttl: ttl, m: map[cacheKey]cacheEntry{}}
}

func (c *cache) get(k cacheKey, now time.Time) (outcome, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.expires) {
		return outcome{}, false
	}
	return e.o, true
}

func (c *cache) put(k cacheKey, o outcome, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		// Free an eighth at once, so a flood of new clients does not
		// sweep the whole map on every insert.
		for k := range c.m {
			if len(c.m) < c.max-c.max/8 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = cacheEntry{o, now.Add(c.ttl)}
}
