// Package server is mxgate's SMTP front door: the listener guard (caps,
// idle timeouts, connection tracking), the go-smtp backend and session, and
// the orchestration of a transaction's stages, from connect to the relay of
// the message to the backend (design.md §2).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/metrics"
	"github.com/mxgate/mxgate/internal/refid"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// Server is one running gateway.
type Server struct {
	rt       atomic.Pointer[Runtime]
	smtp     *smtp.Server
	guard    *Guard
	verdicts *verdict.Writer
	log      *slog.Logger
	serveErr chan error
	shutdown atomic.Bool
	stopOnce sync.Once
	stopErr  error
	// ctx is the context of every backend exchange; it is cancelled when
	// the shutdown grace period is over, so no relay outlives it.
	ctx    context.Context
	cancel context.CancelFunc
}

// New builds a server from a validated configuration. Listeners are opened
// by Start.
func New(cfg *config.Config, verdicts *verdict.Writer, log *slog.Logger) (*Server, error) {
	// Loaded before the runtime is built, so a bad certificate leaves
	// nothing running behind it.
	tlsConfig, err := serverTLS(cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	rt, err := NewRuntime(cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Server{verdicts: verdicts, log: log, serveErr: make(chan error, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if rt.Checks != nil {
		// The first list-health probes run in the background: zones
		// count as healthy until a probe says otherwise.
		go rt.Checks.Start(s.ctx)
	}
	metrics.SetDNSBLHealth(func() []metrics.ZoneHealth {
		var out []metrics.ZoneHealth
		if c := s.rt.Load().Checks; c != nil && c.DNSBL != nil {
			for _, z := range c.DNSBL.Health() {
				out = append(out, metrics.ZoneHealth{Name: z.Name, Healthy: z.Healthy})
			}
		}
		return out
	})
	s.rt.Store(rt)
	srv := smtp.NewServer(s)
	l := cfg.Limits
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = int64(l.MaxMessageSize)
	// The recipient cap is enforced by the session, not go-smtp, so the
	// 452 4.5.3 carries a reference id and shows in the verdict record.
	srv.MaxRecipients = 0
	// go-smtp counts a line as it is on the wire, where a line that starts
	// with a dot carries one more (the dot-stuffing of RFC 5321 §4.5.2);
	// the limit is meant for the line as in the message.
	srv.MaxLineLength = l.MaxLineLength + 1
	srv.ReadTimeout = 0 // the conn wrapper owns read deadlines (conn.go)
	srv.WriteTimeout = l.CommandTimeout
	// Advertised so internationalized mail can be taken; when the backend
	// lacks SMTPUTF8 the first RCPT of such a transaction gets 550 5.6.7.
	srv.EnableSMTPUTF8 = true
	// STARTTLS (RFC 3207) when a certificate is configured; the
	// certificate is read again when its files change (tls.go).
	if tlsConfig != nil {
		srv.TLSConfig = tlsConfig
	}
	// REQUIRETLS (RFC 8689), advertised after STARTTLS: the session
	// refuses it over plaintext and the relay refuses to pass it on except
	// over verified TLS to a backend that offers it (relay/txn.go).
	srv.EnableREQUIRETLS = tlsConfig != nil
	srv.ErrorLog = errorLog{log}
	s.smtp = srv
	return s, nil
}

// Start opens every configured listener and serves in the background.
func (s *Server) Start() error {
	cfg := s.rt.Load().Cfg
	var lns []net.Listener
	for _, l := range cfg.Listen {
		ln, err := listen(l)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return fmt.Errorf("listen %s: %w", l.Address, err)
		}
		lns = append(lns, ln)
	}
	s.StartListeners(lns)
	return nil
}

// StartListeners serves on listeners the caller opened (tests, the demo).
func (s *Server) StartListeners(lns []net.Listener) {
	g := newGuard(lns)
	g.limits = func() guardLimits { return s.rt.Load().limits() }
	g.newState = s.newConnState
	g.onReject = s.connRefused
	g.onClose = s.connClosed
	g.onAdmit = s.startConnChecks
	g.connRate = s.connRate
	g.onDropped = s.connDropped
	g.log = s.log
	s.guard = g
	g.start()
	go func() { s.serveErr <- s.smtp.Serve(g) }()
	for _, ln := range lns {
		s.log.Info("listening", "address", ln.Addr().String())
	}
}

// Addrs returns the listening addresses.
func (s *Server) Addrs() []net.Addr {
	var as []net.Addr
	for _, ln := range s.guard.lns {
		as = append(as, ln.Addr())
	}
	return as
}

// Runtime returns the current snapshot.
func (s *Server) Runtime() *Runtime { return s.rt.Load() }

// Reload swaps in a new, already validated configuration. Connections in
// flight keep the snapshot they started with. Settings that go-smtp reads
// from its Server struct on every connection (the limits on message size
// and line length, the command timeout) and the listen addresses cannot change safely while
// serving; a change to them is refused with an error naming them, and the
// running configuration stays.
func (s *Server) Reload(cfg *config.Config) error {
	old := s.rt.Load()
	if fixed := fixedChanges(old.Cfg, cfg); len(fixed) > 0 {
		return fmt.Errorf("reload: %s cannot change without a restart", strings.Join(fixed, ", "))
	}
	rt, err := buildRuntime(cfg, s.log, old)
	if err != nil {
		return err
	}
	oldRelay := old.Relay
	if reflect.DeepEqual(old.Cfg.Backend, cfg.Backend) && old.Cfg.Hostname == cfg.Hostname {
		rt.Relay.Close()
		rt.Relay, oldRelay = old.Relay, nil // keep the warm connection pool
	}
	if reflect.DeepEqual(old.Cfg.DNS, cfg.DNS) {
		rt.Resolver = old.Resolver // keep the warm cache (the checks were built with the new one: same settings)
	}
	if reflect.DeepEqual(old.Cfg.Checks.RateLimit, cfg.Checks.RateLimit) {
		rt.Limiter = old.Limiter // keep the counters; changed limits start afresh
	}
	oldStore := old.greyStore
	if oldStore == rt.greyStore {
		oldStore = nil // kept by the new runtime
	}
	// Sessions on the old snapshot may use its pool and checks for a
	// while; close them once they have had the grace period.
	time.AfterFunc(cfg.ShutdownGrace+cfg.Limits.SessionTimeout, func() {
		if oldRelay != nil {
			oldRelay.Close()
		}
		if old.Checks != nil {
			old.Checks.Close()
		}
		if oldStore != nil {
			oldStore.Close()
		}
	})
	if rt.Checks != nil {
		go rt.Checks.Start(s.ctx)
	}
	s.rt.Store(rt)
	s.log.Info("configuration reloaded", "domains", len(cfg.Domains), "backends", len(cfg.Backend.Servers))
	return nil
}

func fixedChanges(a, b *config.Config) []string {
	var out []string
	if a.Hostname != b.Hostname {
		out = append(out, "hostname") // go-smtp's banner name is fixed at start
	}
	if !reflect.DeepEqual(a.TLS, b.TLS) {
		out = append(out, "tls") // the certificate loader is built at start (it follows file changes itself)
	}
	if !reflect.DeepEqual(a.Listen, b.Listen) {
		out = append(out, "listen")
	}
	if a.Limits.MaxMessageSize != b.Limits.MaxMessageSize {
		out = append(out, "limits.max_message_size")
	}
	if a.Limits.MaxLineLength != b.Limits.MaxLineLength {
		out = append(out, "limits.max_line_length")
	}
	if a.Limits.CommandTimeout != b.Limits.CommandTimeout {
		out = append(out, "limits.command_timeout")
	}
	return out
}

// Shutdown stops accepting, closes idle connections at once, lets
// transactions in flight finish until ctx is done, then closes every
// connection that is left (go-smtp's own Shutdown would wait forever for
// idle clients). Calling it again returns the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	s.shutdown.Store(true)
	s.guard.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.guard.closeMatching(func(c *conn) bool { return !c.st.busy() })
		if s.guard.Open() == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.log.Warn("shutdown grace period over, closing connections", "open", s.guard.Open())
			s.cancel() // relays in flight stop before their final dot: the client gets no 250
			s.guard.closeMatching(func(*conn) bool { return true })
		case <-tick.C:
			continue
		}
		break
	}
	err := s.smtp.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	<-s.serveErr
	s.cancel()
	s.rt.Load().close()
	return err
}

func (s *Server) newConnState(nc net.Conn, ap netip.AddrPort) *connState {
	id := refid.New(time.Now())
	return &connState{
		id: id, ip: ap.Addr(), port: int(ap.Port()), listener: nc.LocalAddr().String(),
		start: time.Now(), rt: s.rt.Load(), srv: s,
		log: s.log.With("conn_id", id),
	}
}

// record writes one verdict record; a failure to write is logged, never
// fatal for the mail (the reply is already decided).
func (s *Server) record(r *verdict.Record) {
	metrics.Record(r)
	if err := s.verdicts.Write(r); err != nil {
		s.log.Error("writing verdict record", "err", err, "ref", r.Ref)
	}
}

// connRefused records a connection the caps refused.
func (s *Server) connRefused(nc net.Conn, ap netip.AddrPort, r *policy.Reply) {
	ref := refid.New(time.Now())
	rp := verdict.ReplyOf(r, ref)
	s.record(&verdict.Record{
		Ref: ref, ConnID: ref, Listener: nc.LocalAddr().String(),
		Client: verdict.Client{IP: ap.Addr().String(), Port: int(ap.Port())},
		Action: policy.ActionTempfail, Reason: r.Reason, Stage: policy.StageConnect, Reply: &rp,
	})
}

// connDropped records a connection a listener check dropped (an early
// talker, a non-SMTP client, early pipelining in "drop" mode).
func (s *Server) connDropped(c *conn, r *policy.Reply, detail string) {
	st := c.st
	ref := c.DropRef() // the id the client was given with the reply
	rp := verdict.ReplyOf(r, ref)
	s.record(&verdict.Record{
		Ref: ref, ConnID: st.id, Listener: st.listener, Client: st.client(),
		Action: policy.ActionDrop, Reason: r.Reason, Stage: policy.StageConnect, Detail: detail, Reply: &rp,
		DurationMS: time.Since(st.start).Milliseconds(),
	})
}

var enhancedRE = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3}) `)

// connClosed writes the record of a connection that ended before any
// transaction: how it ended is read from the last reply it was sent.
func (s *Server) connClosed(c *conn) {
	st := c.st
	st.mu.Lock()
	txns := st.txns
	st.mu.Unlock()
	if txns > 0 {
		return
	}
	code, text := c.LastReply()
	rec := &verdict.Record{
		Ref: refid.New(time.Now()), ConnID: st.id, Listener: st.listener, Client: st.client(),
		Stage: policy.StageConnect, DurationMS: time.Since(st.start).Milliseconds(),
		Action: policy.ActionAbort, Reason: policy.ReasonNoTransaction,
	}
	if rec.Client.Helo != "" {
		rec.Stage = policy.StageHelo
	}
	switch {
	case c.timedOut.Load():
		rec.Action, rec.Reason = policy.ActionDrop, policy.ReasonTimeout
	case s.shutdown.Load() && code != 221:
		rec.Action, rec.Reason = policy.ActionTempfail, policy.ReasonShuttingDown
	case code == 500 || code == 421 && strings.Contains(text, policy.ErrTooManyErrors.Text):
		// too many errors, or a line over the limit
		rec.Action, rec.Reason = policy.ActionDrop, policy.ReasonProtocolError
	}
	if code != 0 {
		rp := verdict.Reply{Code: code, Text: text}
		if m := enhancedRE.FindStringSubmatch(text); m != nil {
			rp.Enhanced, rp.Text = m[1], text[len(m[0]):]
		}
		rec.Reply = &rp
	}
	s.record(rec)
}

// errorLog adapts go-smtp's logger (panics, connection errors) to slog.
type errorLog struct{ log *slog.Logger }

// Panics are errors; connection errors (resets, broken pipes) are a normal
// part of talking to the Internet and go to debug.
func (e errorLog) Printf(format string, v ...any) { e.print(fmt.Sprintf(format, v...)) }

func (e errorLog) Println(v ...any) { e.print(fmt.Sprintln(v...)) }

func (e errorLog) print(msg string) {
	msg = "smtp: " + strings.TrimSpace(msg)
	if strings.Contains(msg, "panic") {
		e.log.Error(msg)
		return
	}
	e.log.Debug(msg)
}
