// Package iplist is the static IP lists check: named lists of networks
// (checks.iplists, inline or from files reloaded with the configuration),
// and the fact client.iplists with the names of the lists the client is
// in. Allowing and denying are then ordinary rules on that fact (or on
// client.ip directly), so they show in the verdict record like any other
// decision.
package iplist

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/policy"
)

func init() {
	policy.RegisterFact(policy.FactDef{Name: "client.iplists", Kind: policy.KindSet, Stage: policy.StageConnect,
		Doc: "names of the checks.iplists lists that contain the client's address"})
}

// List is one named list.
type List struct {
	Name     string
	Prefixes []netip.Prefix
}

// Check matches the client against every list.
type Check struct{ lists []List }

// New returns the check for lists.
func New(lists []List) *Check { return &Check{lists: lists} }

// Name implements checks.Check.
func (c *Check) Name() string { return "iplist" }

// Stage implements checks.Check.
func (c *Check) Stage() policy.Stage { return policy.StageConnect }

// Run implements checks.Check.
func (c *Check) Run(_ context.Context, in checks.Input) checks.Result {
	ip := in.IP.Unmap()
	var in_ []string
	for _, l := range c.lists {
		if slices.ContainsFunc(l.Prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			in_ = append(in_, l.Name)
		}
	}
	r := checks.Result{Result: "none", Facts: map[string]any{"client.iplists": in_}}
	if len(in_) > 0 {
		r.Result, r.Detail = "listed", "in "+strings.Join(in_, ", ")
	}
	return r
}
