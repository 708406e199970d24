package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/checks/greylist"
	"github.com/mxgate/mxgate/checks/registry"
	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/ratelimit"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/spool"
	"github.com/mxgate/mxgate/policy"
	"github.com/mxgate/mxgate/relay"
)

// Runtime is one immutable snapshot of everything a session decides with:
// the configuration and what was built from it. A reload builds a new
// Runtime and swaps it atomically; a connection keeps the snapshot it was
// accepted with until it closes (style.md §11).
type Runtime struct {
	Cfg     *config.Config
	Domains *address.Domains
	Relay   *relay.Pool
	Spool   spool.Options
	// Resolver is the caching DNS resolver every check uses.
	Resolver *resolver.Client
	// Checks are the configured checks, by stage.
	Checks *registry.Set
	// Limiter enforces checks.ratelimit; nil when no limit is set.
	Limiter *ratelimit.Limiter
	// Greylist is greylisting over its store; nil when disabled.
	Greylist  *greylist.Greylist
	greyStore greystore.Store
	// headerFacts are the header.* facts some rule names, in its condition
	// or its reply: the only header facts set at DATA, so the only ones a
	// verdict record keeps (whole Received and DKIM-Signature fields of
	// every message have no place there, and setting a fact for every
	// field of every message cost allocations nothing read).
	headerFacts map[string]bool
}

// NewRuntime builds a snapshot from a validated configuration. It does no
// network I/O.
func NewRuntime(cfg *config.Config, log *slog.Logger) (*Runtime, error) {
	return buildRuntime(cfg, log, nil)
}

// buildRuntime builds a snapshot; on a reload prev is the running one,
// whose greylist store is kept when its settings did not change (a bbolt
// file cannot be opened twice).
func buildRuntime(cfg *config.Config, log *slog.Logger, prev *Runtime) (*Runtime, error) {
	doms, err := address.NewDomains(cfg.Domains)
	if err != nil {
		return nil, err
	}
	if cfg.Policy.Engine == nil {
		// A configuration built in code rather than loaded: no rules.
		eng, errs := policy.NewEngine(nil, policy.Options{})
		if len(errs) > 0 {
			return nil, errs
		}
		cfg.Policy.Engine = eng
	}
	pool, err := relay.New(cfg.Hostname, cfg.Backend, log)
	if err != nil {
		return nil, err
	}
	sp := spool.Options{
		MemLimit: int64(cfg.Message.MemoryBuffer),
		MaxSize:  int64(cfg.Limits.MaxMessageSize),
		TempDir:  cfg.Message.TempDir,
	}
	if cfg.Message.BareNewline == "normalize" {
		sp.BareNewline = spool.NormalizeBareNewline
	}
	if cfg.Message.NUL == "strip" {
		sp.NUL = spool.StripNUL
	}
	res, err := resolver.New(resolver.Config{
		Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout, Attempts: cfg.DNS.Attempts,
		CacheSize: cfg.DNS.Cache.Size, MinTTL: cfg.DNS.Cache.MinTTL, MaxTTL: cfg.DNS.Cache.MaxTTL, Log: log,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	set, err := registry.Build(cfg, res, localAddrs(cfg), log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	hf := map[string]bool{}
	for _, r := range cfg.Policy.Engine.Rules() {
		for _, f := range slices.Concat(r.Facts, r.Reply.Facts()) {
			if strings.HasPrefix(f, "header.") {
				hf[f] = true
			}
		}
	}
	rt := &Runtime{Cfg: cfg, Domains: doms, Relay: pool, Spool: sp, Resolver: res, Checks: set, headerFacts: hf}
	if g := cfg.Checks.Greylist; g.Enabled {
		if prev != nil && prev.greyStore != nil && prev.Cfg.Checks.Greylist.Store == g.Store && prev.Cfg.DataDir == cfg.DataDir {
			rt.greyStore = prev.greyStore
		} else {
			st, err := greystore.Open(g.Store, cfg.DataDir)
			if err != nil {
				pool.Close()
				return nil, fmt.Errorf("checks.greylist.store: %w", err)
			}
			rt.greyStore = st
		}
		rt.Greylist = greylist.New(rt.greyStore, greylistOptions(g))
	}
	rl := cfg.Checks.RateLimit
	rates := map[ratelimit.Kind]ratelimit.Rate{
		ratelimit.Connections: {Limit: rl.Connections.Limit, Per: rl.Connections.Per},
		ratelimit.Messages:    {Limit: rl.Messages.Limit, Per: rl.Messages.Per},
		ratelimit.Recipients:  {Limit: rl.Recipients.Limit, Per: rl.Recipients.Per},
	}
	if rl.Connections.Limit > 0 || rl.Messages.Limit > 0 || rl.Recipients.Limit > 0 {
		rt.Limiter = ratelimit.New(ratelimit.NewMemory(100_000), rates)
	}
	return rt, nil
}

// localAddrs are the gateway's own addresses, for the HELO check ("a
// stranger claims to be us"): the listeners' and the interfaces'.
func localAddrs(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, l := range cfg.Listen {
		if host, _, err := net.SplitHostPort(l.Address); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
				out = append(out, a.Unmap())
			}
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// greylistOptions converts the configuration.
func greylistOptions(g config.Greylist) greylist.Options {
	return greylist.Options{Delay: g.Delay, RetryWindow: g.RetryWindow, AllowFor: g.AllowFor, PrefixV4: g.PrefixV4, PrefixV6: g.PrefixV6}
}

// close releases what the runtime runs in the background.
func (rt *Runtime) close() {
	if rt.greyStore != nil {
		rt.greyStore.Close()
	}
	rt.Relay.Close()
	if rt.Checks != nil {
		rt.Checks.Close()
	}
}

func (rt *Runtime) limits() guardLimits {
	l := rt.Cfg.Limits
	pg, pr := rt.Cfg.Checks.Pregreet, rt.Cfg.Checks.Protocol
	if rt.Cfg.Policy.Mode == "shadow" {
		// An observer drops nobody: the listener only flags what it saw,
		// and the session records what enforcing would have done.
		pg.Action = shadowed(pg.Action)
		pr.NonSMTP = shadowed(pr.NonSMTP)
		pr.EarlyPipelining = shadowed(pr.EarlyPipelining)
	}
	return guardLimits{
		maxConns: l.MaxConnections, maxPerIP: l.MaxConnectionsPerIP,
		cmdIdle: l.CommandTimeout, dataIdle: l.DataTimeout, session: l.SessionTimeout,
		hostname: rt.Cfg.Hostname,
		pregreet: pg, protocol: pr,
		lineMax: l.MaxLineLength + 2, tls: rt.Cfg.TLS.Cert != "",
	}
}

// shadowed turns a dropping protocol action into one that only flags.
func shadowed(action string) string {
	if action == "drop" {
		return "enforce"
	}
	return action
}
