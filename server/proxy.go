package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/mxgate/mxgate/internal/config"
)

// defaultProxyTimeout bounds the wait for a PROXY header when the
// configuration leaves it at 0 (config validation fills in the same).
const defaultProxyTimeout = 5 * time.Second

// listen opens one configured listener. With proxy_protocol.trusted set,
// the listener sits behind a load balancer that speaks PROXY protocol v1
// or v2: a connection from a trusted source must start with a header, and
// the client address is taken from it; a connection from any other source
// is closed inside Accept without a word, since the port is not meant to
// be reached directly (the spec forbids guessing whether a header is there).
// The Guard wraps the result, so the caps, the pre-greeting test and every
// check see the client behind the balancer.
func listen(l config.Listener) (net.Listener, error) {
	ln, err := listenConfig.Listen(context.Background(), "tcp", l.Address)
	if err != nil || len(l.ProxyProtocol.Trusted) == 0 {
		return ln, err
	}
	pol, err := proxyproto.TrustProxyHeaderFromRanges(l.ProxyProtocol.Trusted)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("proxy_protocol.trusted: %w", err)
	}
	timeout := l.ProxyProtocol.Timeout
	if timeout <= 0 {
		timeout = defaultProxyTimeout
	}
	return &proxyproto.Listener{Listener: ln, ConnPolicy: pol, ReadHeaderTimeout: timeout}, nil
}

// listenConfig turns TCP keep-alive off for client connections. Go turns
// it on for every accepted connection, four setsockopt calls each, which
// an SMTP server does not need: every read has a deadline
// (limits.command_timeout) and every session a cap (session_timeout), so
// a vanished client costs a goroutine until then, as it does in Postfix's
// smtpd, which sets no keep-alive either.
var listenConfig = net.ListenConfig{KeepAlive: -1}

// clientAddr returns the client's address. Behind PROXY protocol it first
// reads the header, which go-proxyproto does lazily: this runs in the
// connection's vetting goroutine, so a slow or silent balancer connection
// holds up nothing but itself (bounded by ReadHeaderTimeout), and a missing,
// late or invalid header is an error, after which the connection must be
// closed. While the header is awaited the connection is pending, so Close
// can end the wait.
func (g *Guard) clientAddr(nc net.Conn) (netip.AddrPort, error) {
	pc, ok := nc.(*proxyproto.Conn)
	if !ok {
		return remoteAddr(nc), nil
	}
	if !g.addPending(nc) {
		return netip.AddrPort{}, net.ErrClosed
	}
	defer g.removePending(nc)
	// A zero-length Read processes the header and returns its error, if
	// any, without consuming input; RemoteAddr would hide the error and
	// return the balancer's address.
	if _, err := pc.Read(nil); err != nil {
		return netip.AddrPort{}, err
	}
	return remoteAddr(nc), nil
}

// addPending tracks a connection waiting for its header; false when the
// guard is already closed.
func (g *Guard) addPending(nc net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.pending[nc] = struct{}{}
	return true
}

func (g *Guard) removePending(nc net.Conn) {
	g.mu.Lock()
	delete(g.pending, nc)
	g.mu.Unlock()
}
