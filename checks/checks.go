// Package checks defines what every check is: a named piece of evidence
// gathering that needs a stage of the SMTP dialogue, runs under a deadline,
// and returns a typed result with the facts it learned. Checks never
// decide; package policy does, from their facts and the operator's rules.
//
// One package per check lives below this one (dnsbl, fcrdns, helo, ...).
// Each registers its facts with policy.RegisterFact in an init function.
// The order in which they run is written in one place: checks/registry.
package checks

import (
	"io"

	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxgate/mxgate/policy"
)

// Input is what a check may know about the transaction. Fields of a later
// stage are empty when the check runs earlier.
type Input struct {
	IP       netip.Addr // the client (from PROXY protocol when configured)
	Helo     string     // HELO/EHLO argument, from the helo stage on
	MailFrom string     // envelope sender, from the mail stage on ("" = null sender)
	// MailDomain is the sender's domain, lower-case A-label.
	MailDomain string
	// Message is the message as received (canonical CRLF, before the
	// gateway's own header fields), for DATA-stage checks; nil before.
	Message Message
	// Prior are the results of the checks that ran before this one in
	// the transaction (connection checks, SPF, DKIM, ...), so a check that
	// builds on others (DMARC) reads their results instead of repeating
	// their lookups.
	Prior []Result
}

// Message is a buffered message a check may read.
type Message interface {
	// Header is the header section, up to and including the blank line.
	Header() []byte
	// Open returns a fresh reader of the whole message.
	Open() io.Reader
}

// Fact returns the value of a fact set by one of the prior results.
func (in Input) Fact(name string) (any, bool) {
	for i := len(in.Prior) - 1; i >= 0; i-- {
		if v, ok := in.Prior[i].Facts[name]; ok {
			return v, true
		}
	}
	return nil, false
}

// Result is one check's result, as the verdict record shows it and with
// the facts it sets.
type Result struct {
	// Name is the check's name (bounded: a metric label).
	Name string
	// Result is the check's outcome, named after its RFC where it has
	// one ("pass", "fail", "temperror", "listed", ...); bounded too.
	Result string
	// Detail says more for people (never sent to the client).
	Detail string
	// Score is the check's own contribution where it has one (the DNSBL
	// weights); rules decide what it means.
	Score float64
	// Facts are set on the transaction's policy.Values.
	Facts map[string]any
	// Elapsed is how long the check took.
	Elapsed time.Duration
	// Auth is what the check contributes to the Authentication-Results
	// header field of RFC 8601 (spf, dkim per signature, dmarc).
	Auth []authres.Result
}

// Check is one check.
type Check interface {
	// Name is a short, stable identifier: "dnsbl", "fcrdns", ...
	Name() string
	// Stage is the stage whose facts the check needs; it runs as soon as
	// they are known, in parallel with the other checks of the stage.
	Stage() policy.Stage
	// Run does the work. It must honour ctx; an infrastructure failure
	// is a result ("temperror"), never a panic or a listing.
	Run(ctx context.Context, in Input) Result
}

// Pending is a set of checks running in the background: connect-stage
// checks start when the connection is accepted and are joined when a rule
// first needs their facts, so their DNS latency overlaps the greeting.
type Pending struct {
	done    chan struct{}
	results []Result
}

// Start runs every check of the list in parallel, each under the overall
// deadline, and returns at once.
func Start(ctx context.Context, list []Check, in Input, timeout time.Duration) *Pending {
	p := &Pending{done: make(chan struct{}), results: make([]Result, len(list))}
	if len(list) == 0 {
		close(p.done)
		return p
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.results[i] = runOne(ctx, c, in)
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(p.done)
	}()
	return p
}

// runOne runs a check, turning a panic into a temperror result so one bad
// check cannot take the gateway down (style.md §12); Panics counts them.
func runOne(ctx context.Context, c Check, in Input) (r Result) {
	start := time.Now()
	defer func() {
		if v := recover(); v != nil {
			Panics.Add(1)
			r = Result{Name: c.Name(), Result: "temperror", Detail: fmt.Sprintf("internal error: %v", v)}
		}
		r.Name = c.Name()
		r.Elapsed = time.Since(start)
	}()
	return c.Run(ctx, in)
}

// Wait returns the results, in the order of the list, once every check has
// finished (each is bounded by the deadline given to Start).
func (p *Pending) Wait() []Result {
	<-p.done
	return p.results
}

// Done is closed when every check has finished.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Panics counts checks that panicked; tests fail when it is not zero.
var Panics panicCounter

type panicCounter struct {
	mu sync.Mutex
	n  int
}

// Add counts n panics.
func (c *panicCounter) Add(n int) { c.mu.Lock(); c.n += n; c.mu.Unlock() }

// Load returns the count.
func (c *panicCounter) Load() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// RunInOrder runs the checks one after another, each under its own
// deadline, each seeing the results of those before it in in.Prior: for
// checks that build on others (DMARC on SPF and DKIM).
func RunInOrder(ctx context.Context, list []Check, in Input, timeout time.Duration) []Result {
	var out []Result
	for _, c := range list {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		r := runOne(cctx, c, in)
		cancel()
		out = append(out, r)
		in.Prior = append(in.Prior, r)
	}
	return out
}
