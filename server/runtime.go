package server

import (
	"log/slog"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/config"
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
	// headerFacts are the header.* facts some rule names: the only header
	// fields a verdict record keeps (whole Received and DKIM-Signature
	// fields of every message have no place there).
	headerFacts map[string]bool
}

// NewRuntime builds a snapshot from a validated configuration. It does no
// network I/O.
func NewRuntime(cfg *config.Config, log *slog.Logger) (*Runtime, error) {
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
	hf := map[string]bool{}
	for _, r := range cfg.Policy.Engine.Rules() {
		for _, f := range r.Facts {
			if strings.HasPrefix(f, "header.") {
				hf[f] = true
			}
		}
	}
	return &Runtime{Cfg: cfg, Domains: doms, Relay: pool, Spool: sp, headerFacts: hf}, nil
}

func (rt *Runtime) limits() guardLimits {
	l := rt.Cfg.Limits
	return guardLimits{
		maxConns: l.MaxConnections, maxPerIP: l.MaxConnectionsPerIP,
		cmdIdle: l.CommandTimeout, dataIdle: l.DataTimeout, session: l.SessionTimeout,
	}
}
