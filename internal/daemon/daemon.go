// Package daemon runs `gateway serve`: it loads the configuration, starts
// the server, and handles signals: SIGHUP reloads the configuration (all of
// it validated first, then swapped atomically; on any error the running
// configuration stays and the error is logged) and reopens the verdict log
// for logrotate; SIGTERM and SIGINT stop accepting, let transactions in
// flight finish within shutdown_grace, then close every connection.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mxgate/mxgate/checks/dnsbl"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/server"
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
			return stop(srv, log)
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("stopping", "signal", sig.String())
				return stop(srv, log)
			}
			reload(srv, vw, path, log)
		}
	}
}

func reload(srv *server.Server, vw *verdict.Writer, path string, log *slog.Logger) {
	if err := vw.Reopen(); err != nil {
		log.Error("reopening verdict log", "err", err)
	}
	cfg, err := config.Load(path)
	if err == nil {
		err = srv.Reload(cfg)
	}
	if err != nil {
		log.Error("reload failed, keeping the running configuration", "err", err.Error())
	}
}

func stop(srv *server.Server, log *slog.Logger) error {
	grace := srv.Runtime().Cfg.ShutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
