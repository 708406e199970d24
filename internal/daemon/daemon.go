// Package daemon runs `gateway serve`: it loads the configuration, starts
// the server, and handles signals: SIGHUP reloads the configuration (all of
// it validated first, then swapped atomically; on any error the running
// configuration stays and the error is logged) and reopens the verdict log
// for logrotate; SIGTERM and SIGINT stop accepting, let transactions in
// flight finish within shutdown_grace, then close every connection.
//
// With admin.listen set, the admin HTTP listener (/metrics, /healthz,
// /readyz; internal/admin) starts once the SMTP listeners are up and stops
// first on shutdown. A reload does not move it: a changed admin.listen
// takes effect at the next restart (the reload logs a warning).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/checks/dnsbl"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/relay"
	"github.com/mxgate/mxgate/server"
)

// Readiness probes the backend for at most probeTimeout and keeps the
// answer for probeCache, so a burst of /readyz requests costs one backend
// connection.
const (
	probeTimeout = 3 * time.Second
	probeCache   = 5 * time.Second
	// adminCloseTimeout bounds the wait for admin requests in flight at
	// shutdown.
	adminCloseTimeout = 5 * time.Second
)

// NewLogger returns the operational logger: slog JSON at the given level.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Serve runs the gateway until SIGTERM/SIGINT (or ctx is done).
func Serve(ctx context.Context, path string, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	log := NewLogger(stderr, cfg.Log.Level)
	vw, err := verdict.Open(cfg.VerdictLog.Path)
	if err != nil {
		return err
	}
	defer vw.Close()
	srv, err := server.New(cfg, vw, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	var stopping atomic.Bool
	var adm *admin.Server
	if cfg.Admin.Listen != "" {
		adm, err = startAdmin(cfg.Admin, srv, &stopping, log)
		if err != nil {
			stopping.Store(true)
			if serr := stop(srv, nil, log); serr != nil {
				log.Error("stopping after the admin listener failed", "err", serr)
			}
			return err
		}
	}
	for _, w := range dnsbl.PublicResolverWarning(cfg.DNS.Servers) {
		log.Warn(w)
	}
	if err := srv.Runtime().Relay.Probe(ctx); err != nil {
		log.Warn("no backend reachable at start; clients get 451 until one is", "err", err)
	}
	log.Info("mxgate started", "hostname", cfg.Hostname, "domains", cfg.Domains, "backends", cfg.Backend.Servers)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			stopping.Store(true)
			return stop(srv, adm, log)
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("stopping", "signal", sig.String())
				stopping.Store(true)
				return stop(srv, adm, log)
			}
			reload(srv, vw, path, cfg.Admin.Listen, log)
		}
	}
}

// startAdmin starts the admin listener. Its stats and readiness read the
// server's current runtime at each request, so they follow reloads.
func startAdmin(ac config.Admin, srv *server.Server, stopping *atomic.Bool, log *slog.Logger) (*admin.Server, error) {
	r := &readiness{srv: srv, stopping: stopping}
	return admin.Start(admin.Options{
		Listen: ac.Listen,
		Pprof:  ac.Pprof,
		Ready:  r.check,
		DNSStats: func() (queries, hits, misses uint64) {
			if res := srv.Runtime().Resolver; res != nil {
				st := res.Stats()
				return st.Queries, st.CacheHits, st.CacheMisses
			}
			return 0, 0, 0
		},
		RelayStats: func() (open, idle, inUse int) {
			st := srv.Runtime().Relay.Stats()
			return st.Open, st.Idle, st.InUse
		},
		Log: log,
	})
}

// readiness answers /readyz: ready when the configuration is loaded (it is,
// once the admin listener runs), the SMTP listeners are open and not
// shutting down, and a backend server answers EHLO.
type readiness struct {
	srv      *server.Server
	stopping *atomic.Bool

	mu   sync.Mutex // held across a probe: concurrent requests share it
	pool *relay.Pool
	at   time.Time
	err  error
}

func (r *readiness) check(ctx context.Context) error {
	if r.stopping.Load() {
		return errors.New("shutting down")
	}
	if len(r.srv.Addrs()) == 0 {
		return errors.New("not listening")
	}
	return r.backend(ctx, r.srv.Runtime().Relay)
}

// backend probes pool, or returns the last answer when it is younger than
// probeCache and about the same pool (a reload may have built a new one).
func (r *readiness) backend(ctx context.Context, pool *relay.Pool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pool == pool && time.Since(r.at) < probeCache {
		return r.err
	}
	// Not the request's own cancellation: a client that gives up must not
	// leave a failure in the cache for the others.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	err := pool.Probe(pctx)
	cancel()
	if err != nil {
		err = fmt.Errorf("no backend reachable: %w", err)
	}
	r.pool, r.at, r.err = pool, time.Now(), err
	return err
}

func reload(srv *server.Server, vw *verdict.Writer, path, adminListen string, log *slog.Logger) {
	if err := vw.Reopen(); err != nil {
		log.Error("reopening verdict log", "err", err)
	}
	cfg, err := config.Load(path)
	if err == nil && cfg.Admin.Listen != adminListen {
		log.Warn("admin.listen changed; it takes effect at the next restart", "running", adminListen, "configured", cfg.Admin.Listen)
	}
	if err == nil {
		err = srv.Reload(cfg)
	}
	if err != nil {
		log.Error("reload failed, keeping the running configuration", "err", err.Error())
	}
}

// stop closes the admin listener (when there is one), then the SMTP
// server.
func stop(srv *server.Server, adm *admin.Server, log *slog.Logger) error {
	if adm != nil {
		actx, acancel := context.WithTimeout(context.Background(), adminCloseTimeout)
		if err := adm.Close(actx); err != nil {
			log.Warn("closing the admin listener", "err", err)
		}
		acancel()
	}
	grace := srv.Runtime().Cfg.ShutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
