package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/refid"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// Guard is the net.Listener handed to go-smtp. go-smtp has no connection
// limits and no hook before its banner (upstream points to "your own
// net.Listener": go-smtp PR 193, issues 130 and 205), so the guard accepts
// from every configured listener itself and vets each connection in a
// goroutine of its own, so that a slow PROXY peer or a pre-greeting wait
// never holds up other accepts: it enforces the total and per-IP caps
// (answering 421 4.7.0 and closing, rather than leaving senders in the
// kernel backlog as netutil.LimitListener would), wraps admitted
// connections in *conn, runs the pre-greeting test (pregreet.go), and
// tracks them so shutdown can close idle ones (go-smtp's Shutdown leaves
// them open and Close after Shutdown is a no-op).
type Guard struct {
	lns   []net.Listener
	ready chan net.Conn
	done  chan struct{}
	wg    sync.WaitGroup

	// limits returns the current caps, timeouts and check settings (they
	// follow reloads).
	limits func() guardLimits
	// newState makes the per-connection state for an admitted connection.
	newState func(nc net.Conn, ap netip.AddrPort) *connState
	// onReject records a connection refused by the caps.
	onReject func(nc net.Conn, ap netip.AddrPort, r *policy.Reply)
	// onAdmit, when set, is called once per admitted connection, in its
	// vetting goroutine, before the pre-greeting wait: work started there
	// (the connection's DNS checks) overlaps the wait. It must not block.
	onAdmit func(c *conn)
	// connRate, when set, is the per-client connection rate limit: a
	// non-nil reply refuses the connection like the caps do.
	connRate func(ip netip.Addr) *policy.Reply
	// onClose is called once when an admitted connection closes, unless a
	// guard check dropped it (then onDropped is called instead).
	onClose func(c *conn)
	// onDropped is called once, instead of onClose, when an admitted
	// connection closes after a guard check dropped it (an early talker,
	// a non-SMTP client, early pipelining): r is the reply it was sent,
	// with reference id c.DropRef(), and detail says what it did. When
	// nil, onClose is called.
	onDropped func(c *conn, r *policy.Reply, detail string)
	// log receives what only an operator debugging a listener wants to
	// see (PROXY header failures); nil means slog.Default().
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	total   int
	perIP   map[netip.Addr]int
	conns   map[*conn]struct{}
	pending map[net.Conn]struct{} // waiting for their PROXY header
}

type guardLimits struct {
	maxConns, maxPerIP int
	cmdIdle, dataIdle  time.Duration
	session            time.Duration
	// hostname is the name in the pre-greeting teaser; go-smtp's own
	// banner uses its Server.Domain.
	hostname string
	pregreet config.Pregreet
	protocol config.Protocol
	// lineMax is go-smtp's line limit and tls whether STARTTLS is
	// offered (the line gate's, linegate.go); both restart-only.
	lineMax int
	tls     bool
}

func newGuard(lns []net.Listener) *Guard {
	return &Guard{
		lns:     lns,
		ready:   make(chan net.Conn),
		done:    make(chan struct{}),
		perIP:   make(map[netip.Addr]int),
		conns:   make(map[*conn]struct{}),
		pending: make(map[net.Conn]struct{}),
	}
}

// start runs one accept loop per listener.
func (g *Guard) start() {
	for _, ln := range g.lns {
		g.wg.Add(1)
		go g.acceptLoop(ln)
	}
}

// acceptLoop accepts until the listener is closed. Temporary errors (EMFILE,
// ECONNABORTED, ...) are retried with a short backoff instead of stopping:
// go-smtp's own Serve would return on any non-temporary error. It does
// nothing else with a connection, not even RemoteAddr (which reads the PROXY
// header): each is vetted in its own goroutine.
func (g *Guard) acceptLoop(ln net.Listener) {
	defer g.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-g.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		g.wg.Add(1)
		go g.vet(nc)
	}
}

// vet takes one accepted connection to go-smtp, or refuses or drops it:
// the real client address (behind a PROXY header), the caps, the onAdmit
// hook, the pre-greeting test, then the hand-over.
func (g *Guard) vet(nc net.Conn) {
	defer g.wg.Done()
	ap, err := g.clientAddr(nc)
	if err != nil {
		// A balancer's health check or a misconfigured peer, not a
		// client: nothing to record, but worth a look when debugging.
		if !g.isClosed() {
			g.logger().Debug("PROXY protocol header failed, connection closed",
				"peer", nc.RemoteAddr().String(), "listener", nc.LocalAddr().String(), "err", err)
		}
		nc.Close()
		return
	}
	if g.connRate != nil {
		if r := g.connRate(ap.Addr()); r != nil {
			g.refuse(nc, ap, r)
			return
		}
	}
	lim := g.limits()
	c, refuse := g.admit(nc, ap, lim)
	if refuse != nil {
		g.refuse(nc, ap, refuse)
		return
	}
	if g.onAdmit != nil {
		g.onAdmit(c)
	}
	if !g.pregreet(c, lim) {
		return
	}
	g.handOver(c)
}

// admit applies the caps. It returns the wrapped and tracked connection,
// or the reply refusing it.
func (g *Guard) admit(nc net.Conn, ap netip.AddrPort, lim guardLimits) (*conn, *policy.Reply) {
	g.mu.Lock()
	var refuse *policy.Reply
	switch {
	case g.closed:
		refuse = policy.ErrShuttingDown
	case g.total >= lim.maxConns:
		refuse = policy.ErrConnLimit
	case g.perIP[ap.Addr()] >= lim.maxPerIP:
		refuse = policy.ErrConnLimitIP
	default:
		g.total++
		g.perIP[ap.Addr()]++
	}
	g.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	c := &conn{Conn: nc, g: g, cmdIdle: lim.cmdIdle, dataIdle: lim.dataIdle}
	c.gate.limit, c.gate.tls = lim.lineMax, lim.tls
	c.proto.modes = lim.protocol
	c.st = g.newState(nc, ap)
	c.st.conn = c
	// A total cap on the connection: the drain go-smtp does after an early
	// reply to DATA is otherwise unbounded.
	c.capTimer = time.AfterFunc(lim.session, func() { c.timedOut.Store(true); c.Conn.Close() })
	g.mu.Lock()
	g.conns[c] = struct{}{}
	c.vetting = true
	g.mu.Unlock()
	return c, nil
}

// handOver gives a vetted connection to go-smtp, which greets it. The
// vetting mark goes first, under the lock Close takes, so Close never
// sets a read deadline under go-smtp's feet.
func (g *Guard) handOver(c *conn) {
	g.mu.Lock()
	c.vetting = false
	g.mu.Unlock()
	select {
	case g.ready <- c:
	case <-g.done:
		g.shutDown(c)
	}
}

// shutDown closes a connection the guard still holds when it closes: per
// RFC 5321 §3.8 a server going down should say 421 first. The reply has no
// reference id: the connection's own record (onClose) reports it.
func (g *Guard) shutDown(c *conn) {
	line := replyLine(policy.ErrShuttingDown, "")
	c.noteReply([]byte(line))
	c.Conn.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	io.WriteString(c.Conn, line)
	c.Close()
}

// replyWriteTimeout bounds the guard's own replies (refusals, drops): the
// client has not been greeted, so a full send buffer means it is not
// reading at all.
const replyWriteTimeout = 5 * time.Second

// refuse answers 421 and closes, without reading: the client has not been
// greeted, so it has nothing to say yet.
func (g *Guard) refuse(nc net.Conn, ap netip.AddrPort, r *policy.Reply) {
	ref := refid.New(time.Now())
	nc.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	io.WriteString(nc, replyLine(r, ref))
	nc.Close()
	g.onReject(nc, ap, r)
}

// release frees a connection's slot in the caps.
func (g *Guard) release(c *conn) {
	ip := c.st.ip
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.conns[c]; !ok {
		return
	}
	delete(g.conns, c)
	g.total--
	if g.perIP[ip]--; g.perIP[ip] <= 0 {
		delete(g.perIP, ip)
	}
}

// isClosed reports whether Close was called.
func (g *Guard) isClosed() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Accept hands go-smtp the next admitted connection.
func (g *Guard) Accept() (net.Conn, error) {
	select {
	case c := <-g.ready:
		return c, nil
	case <-g.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting: the listeners close and Accept returns
// net.ErrClosed. Connections still being vetted end at once: one waiting
// for its PROXY header is closed, one in the pre-greeting wait gets 421
// (its read deadline is moved to now, under the lock handOver takes). Those
// already handed to go-smtp stay open (see closeMatching).
func (g *Guard) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.done)
	for c := range g.conns {
		if c.vetting {
			c.Conn.SetReadDeadline(time.Now())
		}
	}
	var pending []net.Conn
	for nc := range g.pending {
		pending = append(pending, nc)
	}
	g.mu.Unlock()
	for _, nc := range pending {
		nc.Close()
	}
	for _, ln := range g.lns {
		ln.Close()
	}
	g.wg.Wait()
	return nil
}

// Addr is the first listener's address.
func (g *Guard) Addr() net.Addr { return g.lns[0].Addr() }

// Open returns the number of admitted connections still open.
func (g *Guard) Open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// closeMatching closes the admitted connections match selects; shutdown
// uses it for idle connections, then, after the grace period, for all.
func (g *Guard) closeMatching(match func(*conn) bool) {
	g.mu.Lock()
	var cs []*conn
	for c := range g.conns {
		if match(c) {
			cs = append(cs, c)
		}
	}
	g.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (g *Guard) logger() *slog.Logger {
	if g.log != nil {
		return g.log
	}
	return slog.Default()
}

func replyLine(r *policy.Reply, ref string) string {
	return fmt.Sprintf("%d %s %s\r\n", r.Code, r.EnhancedString(), verdict.WithRef(r.Text, ref))
}
