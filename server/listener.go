package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/refid"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// Guard is the net.Listener handed to go-smtp. go-smtp has no connection
// limits and no hook before its banner (upstream points to "your own
// net.Listener": go-smtp PR 193, issues 130 and 205), so the guard accepts
// from every configured listener itself, enforces the total and per-IP caps
// (answering 421 4.7.0 and closing, rather than leaving senders in the
// kernel backlog as netutil.LimitListener would), wraps admitted connections
// in *conn, and tracks them so shutdown can close idle ones (go-smtp's
// Shutdown leaves them open and Close after Shutdown is a no-op).
type Guard struct {
	lns   []net.Listener
	ready chan net.Conn
	done  chan struct{}
	wg    sync.WaitGroup

	// limits returns the current caps and timeouts (they follow reloads).
	limits func() guardLimits
	// newState makes the per-connection state for an admitted connection.
	newState func(nc net.Conn, ap netip.AddrPort) *connState
	// onReject records a connection refused by the caps.
	onReject func(nc net.Conn, ap netip.AddrPort, r *policy.Reply)
	// onClose is called once when an admitted connection closes.
	onClose func(c *conn)

	mu     sync.Mutex
	closed bool
	total  int
	perIP  map[netip.Addr]int
	conns  map[*conn]struct{}
}

type guardLimits struct {
	maxConns, maxPerIP int
	cmdIdle, dataIdle  time.Duration
	session            time.Duration
}

func newGuard(lns []net.Listener) *Guard {
	return &Guard{
		lns:   lns,
		ready: make(chan net.Conn),
		done:  make(chan struct{}),
		perIP: make(map[netip.Addr]int),
		conns: make(map[*conn]struct{}),
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
// go-smtp's own Serve would return on any non-temporary error.
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
		if c := g.admit(nc); c != nil {
			select {
			case g.ready <- c:
			case <-g.done:
				c.Close()
				return
			}
		}
	}
}

// admit applies the caps. It returns the wrapped connection, or nil after
// handing a refused connection to a goroutine that answers 421.
func (g *Guard) admit(nc net.Conn) *conn {
	ap := remoteAddr(nc)
	lim := g.limits()
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
		g.wg.Add(1)
		go g.refuse(nc, ap, refuse)
		return nil
	}
	c := &conn{Conn: nc, g: g, cmdIdle: lim.cmdIdle, dataIdle: lim.dataIdle}
	c.st = g.newState(nc, ap)
	c.st.conn = c
	// A total cap on the connection: the drain go-smtp does after an early
	// reply to DATA is otherwise unbounded.
	c.capTimer = time.AfterFunc(lim.session, func() { c.timedOut.Store(true); c.Conn.Close() })
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.mu.Unlock()
	return c
}

// refuse answers 421 and closes, without reading: the client has not been
// greeted, so it has nothing to say yet.
func (g *Guard) refuse(nc net.Conn, ap netip.AddrPort, r *policy.Reply) {
	defer g.wg.Done()
	ref := refid.New(time.Now())
	nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
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
// net.ErrClosed. Admitted connections stay open (see CloseAll).
func (g *Guard) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	close(g.done)
	g.mu.Unlock()
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

func replyLine(r *policy.Reply, ref string) string {
	return fmt.Sprintf("%d %s %s\r\n", r.Code, r.EnhancedString(), verdict.WithRef(r.Text, ref))
}
