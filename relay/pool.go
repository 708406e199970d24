package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/policy"
)

// TLS modes of config.BackendTLS.Mode.
const (
	modeNone          = "none"
	modeOpportunistic = "opportunistic"
	modeRequired      = "required"
)

// maxQuitWait bounds how long a connection closed on purpose waits for the
// reply to its QUIT: politeness must not hold up shutdown.
const maxQuitWait = 2 * time.Second

var errPoolClosed = errors.New("relay: pool closed")

// Pool hands out backend transactions over pooled SMTP connections. It is
// safe for concurrent use.
type Pool struct {
	cfg         config.Backend
	helo        string
	log         *slog.Logger
	servers     []*server
	quitTimeout time.Duration

	// wrap, when set (by tests), wraps every dialled TCP connection.
	wrap func(net.Conn) net.Conn

	dials  atomic.Uint64
	reused atomic.Uint64
	connID atomic.Uint64

	mu     sync.Mutex
	closed bool
	open   int // slots taken: idle, in use and being dialled
	idle   int
	inUse  int
	// changed is closed (and replaced) whenever a slot or an idle
	// connection frees up, waking every Begin that waits for one.
	changed chan struct{}

	stop chan struct{} // closed by Close; stops the janitor
	wg   sync.WaitGroup
}

// server is one backend address and what the pool knows about it. The
// mutable fields are guarded by Pool.mu.
type server struct {
	addr      string
	tlsConfig *tls.Config // nil with mode "none"

	idle      []*conn   // LIFO: the most recently used is taken first
	downUntil time.Time // refused a connection; skipped until then
	// startTLS: advertised STARTTLS when last seen, so opportunistic dials
	// go straight to STARTTLS.
	startTLS bool
	// plainUntil: opportunistic TLS failed; plaintext until then.
	plainUntil time.Time
	// identityWarned: when a refusal of XFORWARD or XCLIENT was last
	// logged as a warning.
	identityWarned time.Time
}

// Stats is a snapshot of the pool's counters.
type Stats struct {
	Open   int    // connections idle, in use or being dialled
	Idle   int    // connections waiting in the pool
	InUse  int    // connections held by a transaction (or being dialled for one)
	Dials  uint64 // TCP connections made, Probe's included
	Reused uint64 // transactions that started on an idle connection
}

// New returns a pool for the servers in cfg, greeting them as cfg.Helo (or
// hostname when that is empty). It loads the CA file but does no network
// I/O. Zero timeouts and a zero MaxOpen take the values of
// config.Default(); MaxMessages <= 0 means no limit; RetryDown <= 0 never
// marks a server down.
func New(hostname string, cfg config.Backend, log *slog.Logger) (*Pool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = withDefaults(cfg)
	if len(cfg.Servers) == 0 {
		return nil, errors.New("relay: no backend servers configured")
	}
	helo := cfg.Helo
	if helo == "" {
		helo = hostname
	}
	if helo == "" {
		return nil, errors.New("relay: no name for EHLO: set hostname or backend helo")
	}
	switch cfg.TLS.Mode {
	case modeNone, modeOpportunistic, modeRequired:
	default:
		return nil, fmt.Errorf("relay: unknown backend TLS mode %q", cfg.TLS.Mode)
	}
	switch cfg.ClientIdentity {
	case identityAuto, identityOff:
	default:
		return nil, fmt.Errorf("relay: unknown backend client_identity %q", cfg.ClientIdentity)
	}
	switch cfg.Chunking {
	case chunkingAuto, chunkingOff:
	default:
		return nil, fmt.Errorf("relay: unknown backend chunking %q", cfg.Chunking)
	}
	base, err := baseTLSConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:         cfg,
		helo:        helo,
		log:         log.With("component", "relay"),
		quitTimeout: min(cfg.Timeouts.Command, maxQuitWait),
		changed:     make(chan struct{}),
		stop:        make(chan struct{}),
	}
	for _, addr := range cfg.Servers {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("relay: backend server %q: %w", addr, err)
		}
		s := &server{addr: addr}
		if cfg.TLS.Mode != modeNone {
			s.tlsConfig = base.Clone()
			s.tlsConfig.ServerName = cfg.TLS.ServerName
			if s.tlsConfig.ServerName == "" {
				s.tlsConfig.ServerName = host
			}
		}
		p.servers = append(p.servers, s)
	}
	p.wg.Go(func() { p.janitor(min(max(cfg.Pool.IdleTimeout/2, 10*time.Millisecond), time.Minute)) })
	return p, nil
}

func withDefaults(cfg config.Backend) config.Backend {
	def := config.Default().Backend
	t := &cfg.Timeouts
	for _, d := range []struct{ v, def *time.Duration }{
		{&t.Connect, &def.Timeouts.Connect}, {&t.Command, &def.Timeouts.Command},
		{&t.Data, &def.Timeouts.Data}, {&t.Final, &def.Timeouts.Final},
		{&cfg.Pool.IdleTimeout, &def.Pool.IdleTimeout},
	} {
		if *d.v <= 0 {
			*d.v = *d.def
		}
	}
	if cfg.Pool.MaxOpen <= 0 {
		cfg.Pool.MaxOpen = def.Pool.MaxOpen
	}
	cfg.Pool.MaxIdle = max(cfg.Pool.MaxIdle, 0)
	if cfg.TLS.Mode == "" {
		cfg.TLS.Mode = modeNone
	}
	if cfg.ClientIdentity == "" {
		cfg.ClientIdentity = def.ClientIdentity
	}
	if cfg.Chunking == "" {
		cfg.Chunking = def.Chunking
	}
	return cfg
}

func baseTLSConfig(c config.BackendTLS) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Backends often have a certificate for another name or none that
		// verifies; checking is the operator's explicit choice.
		InsecureSkipVerify: !c.Verify, //nolint:gosec // configurable on purpose
		// Resumption saves a round trip and the key exchange on each dial.
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("relay: backend CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("relay: backend CA file %s: no PEM certificates", c.CAFile)
		}
		cfg.RootCAs = roots
	}
	return cfg, nil
}

// Close closes the idle connections (saying QUIT) and stops the janitor.
// Connections in use close when their transaction ends. Close waits for
// the QUITs and is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var idle []*conn
	for _, s := range p.servers {
		idle = append(idle, s.idle...)
		s.idle = nil
	}
	p.open -= len(idle)
	p.idle = 0
	p.notify()
	p.mu.Unlock()

	close(p.stop)
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() { c.quit(p.quitTimeout) })
	}
	wg.Wait()
	p.wg.Wait()
	return nil
}

// Stats returns the current counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Open:   p.open,
		Idle:   p.idle,
		InUse:  p.inUse,
		Dials:  p.dials.Load(),
		Reused: p.reused.Load(),
	}
}

// Probe connects to each server in order (with STARTTLS as configured) and
// greets it, until one works; nil means one is reachable. It is meant for
// readiness checks and the startup log; the connection is closed, not
// pooled, and the servers' down marks are updated.
func (p *Pool) Probe(ctx context.Context) error {
	var errs []error
	for _, s := range p.servers {
		c, err := p.connect(ctx, s, time.Now().Add(p.cfg.Timeouts.Connect))
		if err == nil {
			p.markUp(s)
			c.quit(p.quitTimeout)
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.addr, err))
		if ctxDone(ctx) {
			break
		}
		p.markDown(s, err)
	}
	return fmt.Errorf("relay: no backend server reachable: %w", errors.Join(errs...))
}

// acquire returns a greeted connection with no transaction open: from the
// first server in order that works, idle if one is (unless fresh), else
// newly dialled. A server that cannot be connected to is marked down and
// the next one tried.
func (p *Pool) acquire(ctx context.Context, fresh bool) (*conn, *policy.Reply) {
	order := p.order(time.Now())
	var last *connectError
	for i, s := range order {
		c, err := p.connTo(ctx, s, fresh)
		if err == nil {
			p.markUp(s)
			return c, nil
		}
		if errors.Is(err, errPoolClosed) {
			return nil, err.reply
		}
		if err.noSlot {
			p.log.Warn("backend connection pool exhausted", "max_open", p.cfg.Pool.MaxOpen, "error", err)
			return nil, err.reply
		}
		if ctxDone(ctx) {
			// Our caller gave up; the server did nothing wrong.
			return nil, err.reply
		}
		p.markDown(s, err)
		if i+1 < len(order) {
			p.log.Warn("backend server unreachable, failing over", "backend", s.addr, "next", order[i+1].addr, "error", err)
		}
		last = err
	}
	return nil, last.reply
}

// order lists the servers to try: those not marked down in configuration
// order, then the ones marked down, as a last resort rather than none.
func (p *Pool) order(now time.Time) []*server {
	p.mu.Lock()
	defer p.mu.Unlock()
	up := make([]*server, 0, len(p.servers))
	var down []*server
	for _, s := range p.servers {
		if now.Before(s.downUntil) {
			down = append(down, s)
		} else {
			up = append(up, s)
		}
	}
	return append(up, down...)
}

func (p *Pool) markDown(s *server, err error) {
	if p.cfg.RetryDown <= 0 {
		return
	}
	p.mu.Lock()
	s.downUntil = time.Now().Add(p.cfg.RetryDown)
	p.mu.Unlock()
	p.log.Warn("backend server marked down", "backend", s.addr, "for", p.cfg.RetryDown, "error", err)
}

func (p *Pool) markUp(s *server) {
	p.mu.Lock()
	was := !s.downUntil.IsZero()
	s.downUntil = time.Time{}
	p.mu.Unlock()
	if was {
		p.log.Info("backend server reachable again", "backend", s.addr)
	}
}

// connTo returns an idle connection to s that is still alive, or dials one
// when a slot is free, waiting for one up to the Connect timeout.
func (p *Pool) connTo(ctx context.Context, s *server, fresh bool) (*conn, *connectError) {
	deadline := time.Now().Add(p.cfg.Timeouts.Connect)
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, &connectError{reply: policy.ErrBackendDown, cause: errPoolClosed, noSlot: true}
		}
		if c := p.popIdle(s, fresh); c != nil {
			p.mu.Unlock()
			if c.alive() {
				c.reused = true
				p.reused.Add(1)
				return c, nil
			}
			p.log.Debug("backend idle connection closed by server", "backend", s.addr, "conn", c.id)
			p.discard(c)
			p.mu.Lock()
			continue
		}
		if p.open < p.cfg.Pool.MaxOpen || p.evictIdle() {
			p.open++
			p.inUse++
			p.mu.Unlock()
			c, err := p.connect(ctx, s, deadline)
			if err != nil {
				p.mu.Lock()
				p.open--
				p.inUse--
				p.notify()
				p.mu.Unlock()
			}
			return c, err
		}
		ch := p.changed
		p.mu.Unlock()
		if err := wait(ctx, ch, deadline); err != nil {
			return nil, &connectError{reply: policy.ErrBackendDown, cause: err, noSlot: true}
		}
		p.mu.Lock()
	}
}

// wait blocks until ch is closed (something freed up: look again), the
// deadline passes or ctx ends.
func wait(ctx context.Context, ch <-chan struct{}, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return errors.New("relay: no free backend connection slot in time")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// popIdle takes the most recently used idle connection of s, closing the
// ones past IdleTimeout on the way. With fresh it takes none. Called with
// p.mu held; the connection returned counts as in use.
func (p *Pool) popIdle(s *server, fresh bool) *conn {
	if fresh {
		return nil
	}
	for len(s.idle) > 0 {
		c := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		p.idle--
		if time.Since(c.lastUsed) > p.cfg.Pool.IdleTimeout {
			p.open--
			p.quitLocked(c)
			continue
		}
		p.inUse++
		return c
	}
	return nil
}

// evictIdle closes the longest idle connection of any server to free its
// slot, so a full pool of connections to one server does not lock out the
// server in use now. Called with p.mu held.
func (p *Pool) evictIdle() bool {
	var victim *server
	for _, s := range p.servers {
		if len(s.idle) > 0 && (victim == nil || s.idle[0].lastUsed.Before(victim.idle[0].lastUsed)) {
			victim = s
		}
	}
	if victim == nil {
		return false
	}
	c := victim.idle[0]
	victim.idle = victim.idle[1:]
	p.idle--
	p.open--
	p.quitLocked(c)
	return true
}

// put returns a healthy connection with no transaction open to the pool,
// or closes it when the pool is closed, its server has MaxIdle idle ones,
// it carried MaxMessages messages or it sent XCLIENT (see identify).
func (p *Pool) put(c *conn) {
	p.mu.Lock()
	p.inUse--
	p.notify()
	retire := p.closed || c.xclient || len(c.srv.idle) >= p.cfg.Pool.MaxIdle ||
		(p.cfg.Pool.MaxMessages > 0 && c.msgs >= p.cfg.Pool.MaxMessages)
	if !retire {
		c.lastUsed = time.Now()
		c.srv.idle = append(c.srv.idle, c)
		p.idle++
		p.mu.Unlock()
		return
	}
	p.open--
	if p.closed {
		// Close no longer waits for background work: say QUIT here, in
		// the goroutine of the transaction that ended after Close.
		p.mu.Unlock()
		c.quit(p.quitTimeout)
		return
	}
	p.quitLocked(c)
	p.mu.Unlock()
}

// discard closes a connection that is broken or in doubt, without QUIT.
func (p *Pool) discard(c *conn) {
	c.close()
	p.mu.Lock()
	p.open--
	p.inUse--
	p.notify()
	p.mu.Unlock()
}

// quitLocked closes c with QUIT in the background, so nobody waits for the
// reply. Called with p.mu held while the pool is open (Close waits for
// these), c already out of the counts.
func (p *Pool) quitLocked(c *conn) {
	p.wg.Go(func() { c.quit(p.quitTimeout) })
}

// notify wakes every Begin waiting for a slot. Called with p.mu held.
func (p *Pool) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// janitor closes connections idle for longer than IdleTimeout, so the
// backend does not time them out first (its 421 would then meet our next
// MAIL) and idle sockets do not pile up after a burst.
func (p *Pool) janitor(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.expire()
		}
	}
}

func (p *Pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.servers {
		// The list is ordered by lastUsed: oldest first.
		n := 0
		for n < len(s.idle) && time.Since(s.idle[n].lastUsed) > p.cfg.Pool.IdleTimeout {
			p.quitLocked(s.idle[n])
			n++
		}
		if n > 0 {
			s.idle = append(s.idle[:0], s.idle[n:]...)
			p.idle -= n
			p.open -= n
			p.notify()
		}
	}
}
