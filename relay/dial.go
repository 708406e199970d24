package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
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

// connectOpportunistic uses STARTTLS when the server advertises it. go-smtp
// can only do STARTTLS straight after connecting (NewClientStartTLS), not on
// a connection greeted as us, so the first connection that finds STARTTLS
// advertised is closed and a new one made with TLS; the server is then
// remembered as a TLS server and later dials start with TLS. A failed
// handshake makes the server plaintext for RetryDown: opportunistic TLS
// must not turn a working backend into an unreachable one.
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
	cl, cerr := p.greet(ctx, bc, s, useTLS)
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
		id:     p.connID.Add(1),
		srv:    s,
		raw:    raw,
		bc:     bc,
		client: cl,
		tls:    useTLS,
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
// first EHLO of NewClientStartTLS says "localhost"; go-smtp does not let us
// name ourselves there, only after TLS.
func (p *Pool) greet(ctx context.Context, bc *bufConn, s *server, useTLS bool) (*smtp.Client, *connectError) {
	if !useTLS {
		cl := smtp.NewClient(bc)
		if err := cl.Hello(p.helo); err != nil {
			_ = cl.Close()
			return nil, connectFailure(ctx, err)
		}
		return cl, nil
	}
	cl, err := smtp.NewClientStartTLS(bc, s.tlsConfig)
	if err != nil {
		// It closed the connection. Greeting and EHLO failures are the
		// server's; STARTTLS missing or refused (RFC 3207 §4: 454) is a
		// TLS failure.
		ce := connectFailure(ctx, err)
		var se *smtp.SMTPError
		isReply := errors.As(err, &se)
		ce.tlsFailure = ce.reply != policy.ErrBackendTimout && !isTransport(err) &&
			!(isReply && (se.Code == 421 || se.Code == 554))
		return nil, ce
	}
	// The handshake happens on first use, so a certificate that does not
	// verify shows up here.
	if err := cl.Hello(p.helo); err != nil {
		st, _ := cl.TLSConnectionState()
		_ = cl.Close()
		ce := connectFailure(ctx, err)
		ce.tlsFailure = !st.HandshakeComplete && ce.reply != policy.ErrBackendTimout
		return nil, ce
	}
	return cl, nil
}

// isTransport reports whether err is the network failing rather than the
// server answering.
func isTransport(err error) bool {
	var ne net.Error
	var errno syscall.Errno
	return errors.As(err, &ne) || errors.As(err, &errno) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
