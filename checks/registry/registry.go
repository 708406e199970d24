// Package registry builds the checks the configuration asks for, in the
// one order they run in. The order is written here and nowhere else
// (style.md §3): within a stage the checks run in parallel, but their
// results are recorded, and their facts set, in this order.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/checks/dkim"
	"github.com/mxgate/mxgate/checks/dmarc"
	"github.com/mxgate/mxgate/checks/dnsbl"
	"github.com/mxgate/mxgate/checks/fcrdns"
	"github.com/mxgate/mxgate/checks/helo"
	"github.com/mxgate/mxgate/checks/iplist"
	"github.com/mxgate/mxgate/checks/spf"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/policy"
)

// Set is the checks of one configuration, by stage.
type Set struct {
	Connect, Helo, Mail []checks.Check
	// Rcpt checks start at MAIL in the background and are joined at the
	// first RCPT (SPF: its DNS overlaps the RCPT round trip).
	Rcpt []checks.Check
	// Data checks run in this order, each seeing the results before it:
	// DMARC is decided from SPF and DKIM, not by a lookup race of its own.
	Data  []checks.Check
	DNSBL *dnsbl.DNSBL // nil without DNSBL zones; for list health
}

// Len is the number of checks in the set, all stages together.
func (s *Set) Len() int {
	return len(s.Connect) + len(s.Helo) + len(s.Mail) + len(s.Rcpt) + len(s.Data)
}

// Build makes the checks of cfg. localIPs are the gateway's own addresses
// (for the HELO check).
func Build(cfg *config.Config, r resolver.Resolver, localIPs []netip.Addr, log *slog.Logger) (*Set, error) {
	s := &Set{}
	c := cfg.Checks
	if len(c.IPLists) > 0 {
		var lists []iplist.List
		for _, l := range c.IPLists {
			var ps []netip.Prefix
			for _, cidr := range l.CIDRs {
				p, err := netip.ParsePrefix(cidr)
				if err != nil {
					return nil, fmt.Errorf("checks.iplists %s: %w", l.Name, err)
				}
				ps = append(ps, p)
			}
			lists = append(lists, iplist.List{Name: l.Name, Prefixes: ps})
		}
		s.Connect = append(s.Connect, iplist.New(lists))
	}
	if len(c.DNSBL.Zones) > 0 || len(c.DNSBL.Domains) > 0 {
		d, err := dnsbl.New(r, dnsblOptions(c.DNSBL, log))
		if err != nil {
			return nil, err
		}
		s.DNSBL = d
		if len(c.DNSBL.Zones) > 0 {
			s.Connect = append(s.Connect, d.IP())
		}
		if domainsOn(c.DNSBL.Domains, "helo") {
			s.Helo = append(s.Helo, d.Helo())
		}
		if domainsOn(c.DNSBL.Domains, "mail_from") {
			s.Mail = append(s.Mail, d.MailFrom())
		}
	}
	if c.FCrDNS.Enabled {
		s.Connect = append(s.Connect, fcrdns.New(r))
	}
	if c.Helo.Enabled {
		s.Helo = append(s.Helo, helo.New(helo.Options{Hostname: cfg.Hostname, LocalIPs: localIPs}))
	}
	if c.SPF.Enabled {
		s.Rcpt = append(s.Rcpt, spf.New(r, spf.Options{Log: log}))
	}
	if c.DKIM.Enabled {
		s.Data = append(s.Data, dkim.New(r, dkim.Options{MaxSignatures: c.DKIM.MaxSignatures, Log: log}))
	}
	if c.DMARC.Enabled {
		s.Data = append(s.Data, dmarc.New(r, dmarc.Options{Log: log}))
	}
	return s, nil
}

// domainsOn reports whether any domain list is queried for name.
func domainsOn(zs []config.RHSBLZone, name string) bool {
	for _, z := range zs {
		if slices.Contains(z.On, name) {
			return true
		}
	}
	return false
}

// Start starts what runs in the background (DNSBL list health).
func (s *Set) Start(ctx context.Context) {
	if s.DNSBL != nil {
		s.DNSBL.Start(ctx)
	}
}

// Close stops it.
func (s *Set) Close() {
	if s.DNSBL != nil {
		s.DNSBL.Close()
	}
}

// ForStage returns the checks of a stage.
func (s *Set) ForStage(st policy.Stage) []checks.Check {
	switch st {
	case policy.StageConnect:
		return s.Connect
	case policy.StageHelo:
		return s.Helo
	case policy.StageMail:
		return s.Mail
	}
	return nil
}

func dnsblOptions(c config.DNSBL, log *slog.Logger) dnsbl.Options {
	conv := func(as []config.DNSBLAnswer) []dnsbl.Answer {
		var out []dnsbl.Answer
		for _, a := range as {
			p, err := dnsbl.ParseAnswer(a.Match)
			if err != nil {
				continue // validated by the configuration loader
			}
			ans := dnsbl.Answer{Net: p, Text: a.Text}
			if a.Weight.Set {
				w := a.Weight.Value
				ans.Weight = &w
			}
			out = append(out, ans)
		}
		return out
	}
	o := dnsbl.Options{HealthInterval: c.HealthInterval, Log: log}
	for _, z := range c.Zones {
		o.Zones = append(o.Zones, dnsbl.Zone{Zone: z.Zone, Name: z.Name, Weight: z.Weight, Answers: conv(z.Answers)})
	}
	for _, z := range c.Domains {
		o.Domains = append(o.Domains, dnsbl.DomainZone{Zone: dnsbl.Zone{Zone: z.Zone, Name: z.Name, Weight: z.Weight, Answers: conv(z.Answers)}, On: z.On})
	}
	return o
}
