package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/policy"
)

// connect makes a new greeted connection to s with STARTTLS as configured.
// Everything, redials included, must be done by deadline (the Connect
// timeout: RFC 5321 §4.5.3.2 gives the greeting its own timeout; we take
// one for the whole set-up).
func (p *Pool) connect(ctx context.Context, s *server, deadline time.Time) (*conn, *connectError) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	switch p.cfg.TLS.Mode {
	case modeRequired:
		c, err := p.newConn(ctx, s, deadline, true)
		if err != nil && err.tlsFailure {
			p.log.Warn("backend STARTTLS required but failed", "backend", s.addr, "error", err)
		}
		return c, err
	case modeOpportunistic:
		return p.connectOpportunistic(ctx, s, deadline)
	default:
		return p.newConn(ctx, s, deadline, false)
	}
}

// connectOpportunistic uses STARTTLS when the server advertises it. A
// connection is set up as plaintext or as TLS from the start (greet), so
// the first connection that finds STARTTLS advertised is closed and a new
// one made with TLS; the server is then remembered as a TLS server and
// later dials start with TLS. A failed handshake makes the server
// plaintext for RetryDown: opportunistic TLS must not turn a working
// backend into an unreachable one.
func (p *Pool) connectOpportunistic(ctx context.Context, s *server, deadline time.Time) (*conn, *connectError) {
	if p.wantTLS(s) {
		c, err := p.newConn(ctx, s, deadline, true)
		if err == nil || !err.tlsFailure {
			return c, err
		}
		p.tlsFallback(s, err)
	}
	c, err := p.newConn(ctx, s, deadline, false)
	if err != nil {
		return nil, err
	}
	if !p.learnStartTLS(s, c.extension("STARTTLS")) {
		return c, nil
	}
	c.quit(min(p.quitTimeout, time.Until(deadline)))
	c, err = p.newConn(ctx, s, deadline, true)
	if err == nil || !err.tlsFailure {
		return c, err
	}
	p.tlsFallback(s, err)
	return p.newConn(ctx, s, deadline, false)
}

// wantTLS reports whether s is known to offer STARTTLS and TLS has not
// failed with it lately.
func (p *Pool) wantTLS(s *server) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.startTLS && !time.Now().Before(s.plainUntil)
}

// learnStartTLS records whether s advertised STARTTLS and reports whether
// it should be used now.
func (p *Pool) learnStartTLS(s *server, advertised bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.startTLS = advertised
	return advertised && !time.Now().Before(s.plainUntil)
}

func (p *Pool) tlsFallback(s *server, err error) {
	p.mu.Lock()
	s.plainUntil = time.Now().Add(p.cfg.RetryDown)
	p.mu.Unlock()
	p.log.Warn("backend STARTTLS failed, using plaintext", "backend", s.addr, "for", p.cfg.RetryDown, "error", err)
}

// newConn dials s, reads the greeting and says EHLO, with STARTTLS first
// when useTLS. ctx ending closes the connection under whatever is going on.
func (p *Pool) newConn(ctx context.Context, s *server, deadline time.Time, useTLS bool) (*conn, *connectError) {
	d := net.Dialer{Deadline: deadline}
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, connectFailure(ctx, err)
	}
	p.dials.Add(1)
	if p.wrap != nil {
		raw = p.wrap(raw)
	}
	bc := newBufConn(raw)
	bc.limit = deadline
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	cl, cc, tc, cerr := p.greet(ctx, bc, s, useTLS)
	if !stop() && cerr == nil {
		cerr = connectFailure(ctx, ctx.Err())
		_ = cl.Close()
	}
	if cerr != nil {
		_ = raw.Close()
		return nil, cerr
	}
	bc.limit = time.Time{}
	cl.CommandTimeout = p.cfg.Timeouts.Command
	cl.SubmissionTimeout = p.cfg.Timeouts.Final
	c := &conn{
		id:      p.connID.Add(1),
		srv:     s,
		raw:     raw,
		bc:      bc,
		cc:      cc,
		client:  cl,
		tlsConn: tc,
	}
	if st, ok := c.tlsState(); ok {
		p.log.Debug("backend connected", "backend", s.addr, "conn", c.id,
			"tls", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	} else {
		p.log.Debug("backend connected", "backend", s.addr, "conn", c.id)
	}
	return c, nil
}

// greet runs the greeting, EHLO and, with useTLS, STARTTLS and the second
// EHLO (RFC 3207 §4.2: what the server said before TLS is forgotten). The
// relay does STARTTLS itself rather than with go-smtp's
// NewClientStartTLS, so that the client above TLS talks through a
// cmdConn (see there), and it greets as itself before TLS as well.
func (p *Pool) greet(ctx context.Context, bc *bufConn, s *server, useTLS bool) (*smtp.Client, *cmdConn, *tls.Conn, *connectError) {
	if !useTLS {
		cc := newCmdConn(bc)
		cl := smtp.NewClient(cc)
		if err := cl.Hello(p.helo); err != nil {
			_ = cl.Close()
			return nil, nil, nil, connectFailure(ctx, err)
		}
		return cl, cc, nil, nil
	}
	plain := newCmdConn(bc)
	pre := smtp.NewClient(plain)
	pre.CommandTimeout = p.cfg.Timeouts.Command
	// Greeting and EHLO failures are the server's; STARTTLS missing or
	// refused (RFC 3207 §4: 454), or a handshake that fails, is a TLS
	// failure.
	if err := pre.Hello(p.helo); err != nil {
		_ = pre.Close()
		return nil, nil, nil, connectFailure(ctx, err)
	}
	if ok, _ := pre.Extension("STARTTLS"); !ok {
		_ = pre.Close()
		ce := connectFailure(ctx, errors.New("backend does not advertise STARTTLS"))
		ce.tlsFailure = true
		return nil, nil, nil, ce
	}
	if _, _, err := plain.cmd(p.cfg.Timeouts.Command, "STARTTLS"); err != nil {
		_ = pre.Close()
		ce := connectFailure(ctx, err)
		var se *smtp.SMTPError
		ce.tlsFailure = errors.As(err, &se) && se.Code != 421 && se.Code != 554
		return nil, nil, nil, ce
	}
	// pre is done with: the stream continues in TLS under a new client.
	tc := tls.Client(plain, s.tlsConfig)
	hsDeadline := time.Now().Add(p.cfg.Timeouts.Command)
	if err := tc.SetDeadline(hsDeadline); err != nil {
		_ = tc.Close()
		return nil, nil, nil, connectFailure(ctx, err)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = tc.Close()
		ce := connectFailure(ctx, err)
		ce.tlsFailure = ce.reply != policy.ErrBackendTimout
		return nil, nil, nil, ce
	}
	_ = tc.SetDeadline(time.Time{})
	cc := newCmdConn(tc)
	cc.replayGreeting()
	cl := smtp.NewClient(cc)
	if err := cl.Hello(p.helo); err != nil {
		_ = cl.Close()
		return nil, nil, nil, connectFailure(ctx, err)
	}
	return cl, cc, tc, nil
}
