package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
)

// raceEnabled is set by race_test.go when the race detector is on.
var raceEnabled bool

// dialFromAddr connects from a chosen loopback address without touching t
// (it runs in goroutines).
func dialFromAddr(addr, ip string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.Dial("tcp", addr)
}

// trickler is a slowloris client: after the banner it sends an endless
// EHLO line, one byte at a time, until told to stop; a reader notes when
// the server closes the connection and what it said before.
type trickler struct {
	c      net.Conn
	dialed time.Time     // the dial began
	opened time.Time     // the banner was read
	closed chan struct{} // closed when a read fails (EOF, reset)
	// After closed: when, and the reply lines read after the banner.
	closedAt time.Time
	lines    []string
}

// tricklers is a set of tricklers sharing one stop signal.
type tricklers struct {
	t     *testing.T
	addr  string
	every time.Duration
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	all   []*trickler
}

// newTricklers makes the set. Its cleanup, registered after the harness's
// so it runs first, stops every trickler and waits for their goroutines,
// before the harness counts goroutines.
func newTricklers(t *testing.T, h *harness, every time.Duration) *tricklers {
	ts := &tricklers{t: t, addr: h.addr, every: every, stop: make(chan struct{})}
	t.Cleanup(func() {
		ts.stopTrickling()
		for _, tr := range ts.list() {
			tr.c.Close()
		}
		ts.wg.Wait()
	})
	return ts
}

func (ts *tricklers) stopTrickling() {
	select {
	case <-ts.stop:
	default:
		close(ts.stop)
	}
}

func (ts *tricklers) list() []*trickler {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*trickler(nil), ts.all...)
}

// open starts n tricklers from ip, in parallel; each has read its banner
// when open returns.
func (ts *tricklers) open(ip string, n int) []*trickler {
	ts.t.Helper()
	out := make([]*trickler, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tr, err := ts.start(ip)
			if err != nil {
				errs <- err
				return
			}
			out[i] = tr
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		ts.t.Fatalf("trickler from %s: %v", ip, err)
	}
	return out
}

func (ts *tricklers) start(ip string) (*trickler, error) {
	dialed := time.Now()
	c, err := dialFromAddr(ts.addr, ip)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(c, 256)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	banner, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(banner, "220 ") {
		c.Close()
		return nil, fmt.Errorf("banner %q: %v", banner, err)
	}
	c.SetReadDeadline(time.Time{})
	tr := &trickler{c: c, dialed: dialed, opened: time.Now(), closed: make(chan struct{})}
	ts.mu.Lock()
	ts.all = append(ts.all, tr)
	ts.mu.Unlock()
	ts.wg.Add(2)
	go func() { // the reader
		defer ts.wg.Done()
		defer close(tr.closed)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				tr.closedAt = time.Now()
				return
			}
			tr.lines = append(tr.lines, strings.TrimRight(l, "\r\n"))
		}
	}()
	go func() { // the writer: "EHLO xxxxx...", never a line end
		defer ts.wg.Done()
		line := "EHLO "
		tick := time.NewTicker(ts.every)
		defer tick.Stop()
		for i := 0; ; i++ {
			b := byte('x')
			if i < len(line) {
				b = line[i]
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-ts.stop:
				return
			case <-tr.closed:
				return
			case <-tick.C:
			}
		}
	}()
	return tr, nil
}

// isClosed reports whether the server closed the connection.
func (tr *trickler) isClosed() bool {
	select {
	case <-tr.closed:
		return true
	default:
		return false
	}
}

// waitClosed waits until every trickler's connection is closed or the
// deadline passes; it returns those still open.
func waitClosed(trs []*trickler, deadline time.Time) []*trickler {
	var open []*trickler
	for _, tr := range trs {
		select {
		case <-tr.closed:
		case <-time.After(time.Until(deadline)):
			open = append(open, tr)
		}
	}
	return open
}

// waitOpen waits for the guard to count want open connections.
func waitOpen(t *testing.T, h *harness, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for h.srv.guard.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("guard counts %d open connections after %v, want %d", h.srv.guard.Open(), within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func slowlorisLimits(session time.Duration) func(*config.Config) {
	return func(c *config.Config) {
		c.Limits.MaxConnections = 300
		c.Limits.MaxConnectionsPerIP = 200
		c.Limits.CommandTimeout = time.Second
		c.Limits.SessionTimeout = session
	}
}

// TestSlowloris: clients that trickle an endless command line hold a
// connection each, but only within the caps, and not for ever.
//
// A byte every 300 ms never trips the command timeout (1 s): it is an idle
// timeout, per read, so a slow but steady DATA is not cut off. What ends
// such a client is the session timeout; what ends one that stops sending
// is the idle timeout.
func TestSlowloris(t *testing.T) {
	const every = 300 * time.Millisecond

	t.Run("session timeout ends a steady trickle", func(t *testing.T) {
		const session = 3 * time.Second
		h := newHarness(t, standardSink(), slowlorisLimits(session))
		ts := newTricklers(t, h, every)

		// 200 tricklers fill the per-IP cap of 127.0.0.1: the next is
		// refused.
		start := time.Now()
		trs := ts.open("127.0.0.1", 200)
		refOf(t, h.dialFrom("127.0.0.1").expect("421 4.7.0 Too many connections from your address, try again later"))
		// A client that means business, then 99 more tricklers from
		// elsewhere: 300 in all fill the total cap, the next is refused.
		cl := h.dialFrom("127.0.0.2")
		cl.expect("220 ")
		trs = append(trs, ts.open("127.0.0.3", 50)...)
		trs = append(trs, ts.open("127.0.0.4", 49)...)
		refOf(t, h.dialFrom("127.0.0.5").expect("421 4.7.0 Too many connections, try again later"))
		if n := h.srv.guard.Open(); n != 300 {
			t.Fatalf("guard counts %d open connections, want 300", n)
		}
		t.Logf("299 tricklers and a client connected in %v", time.Since(start).Round(time.Millisecond))

		// The client is served: a whole transaction, within its own 3 s.
		t0 := time.Now()
		cl.send("EHLO client.example.test")
		cl.expect("250 ")
		cl.startData("bob@ours.test")
		cl.write("Subject: served\r\n\r\nhello\r\n.\r\n")
		cl.expect("250 ")
		cl.send("QUIT")
		cl.expect("221 ")
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("a transaction took %v beside 299 tricklers", d)
		}
		if n := len(h.sink.Accepted()); n != 1 {
			t.Fatalf("backend accepted %d messages, want 1", n)
		}

		// Past the command timeout every trickler is still there.
		last := trs[len(trs)-1].opened
		for _, tr := range trs {
			if tr.opened.After(last) {
				last = tr.opened
			}
		}
		time.Sleep(time.Until(last.Add(1200 * time.Millisecond)))
		for i, tr := range trs {
			if tr.isClosed() {
				t.Fatalf("trickler %d closed after %v, before the session timeout (lines %q)", i, tr.closedAt.Sub(tr.opened), tr.lines)
			}
		}

		// The session timeout closes them all, although they still trickle.
		if open := waitClosed(trs, time.Now().Add(session+2*time.Second)); len(open) > 0 {
			t.Fatalf("%d of %d tricklers still open %v after they connected", len(open), len(trs), time.Since(start))
		}
		for i, tr := range trs {
			// The session timer starts when the server admits the
			// connection: after the dial began, before the banner came.
			if d := tr.closedAt.Sub(tr.dialed); d < session {
				t.Errorf("trickler %d closed %v after it dialled, before the session timeout (%v)", i, d, session)
			}
			if d := tr.closedAt.Sub(tr.opened); d > session+1500*time.Millisecond {
				t.Errorf("trickler %d closed %v after its banner, want about %v", i, d, session)
			}
			// The session timeout closes the socket without a word.
			if len(tr.lines) > 0 {
				t.Errorf("trickler %d was sent %q", i, tr.lines)
			}
		}
		waitOpen(t, h, 0, 2*time.Second)
	})

	t.Run("idle timeout ends a stalled trickle", func(t *testing.T) {
		h := newHarness(t, standardSink(), slowlorisLimits(time.Minute))
		ts := newTricklers(t, h, every)
		trs := ts.open("127.0.0.1", 200)
		trs = append(trs, ts.open("127.0.0.3", 50)...)

		// Trickling for twice the command timeout keeps them all.
		time.Sleep(2 * time.Second)
		for i, tr := range trs {
			if tr.isClosed() {
				t.Fatalf("trickler %d closed after %v while trickling (lines %q)", i, tr.closedAt.Sub(tr.opened), tr.lines)
			}
		}
		if n := h.srv.guard.Open(); n != 250 {
			t.Fatalf("guard counts %d open connections, want 250", n)
		}

		// Once they stop, the idle timeout closes them.
		ts.stopTrickling()
		stopped := time.Now()
		if open := waitClosed(trs, stopped.Add(2500*time.Millisecond)); len(open) > 0 {
			t.Fatalf("%d of %d tricklers still open 2.5 s after they stopped sending (command timeout 1 s)", len(open), len(trs))
		}
		for i, tr := range trs {
			checkIdleClose(t, i, tr.lines)
		}
		waitOpen(t, h, 0, 2*time.Second)
	})
}

// checkIdleClose checks what a trickler stopped by the idle timeout was
// sent: one 421 4.4.2, or nothing if the close won the race. Never a
// reply to the unfinished line it was trickling (linegate.go).
func checkIdleClose(t *testing.T, i int, lines []string) {
	t.Helper()
	if len(lines) > 1 || len(lines) == 1 && !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Errorf("trickler %d was sent %q, want one 421 4.4.2 or nothing", i, lines)
	}
}

// raiseFDLimit raises RLIMIT_NOFILE to want if allowed, and skips the
// test when fewer than need descriptors are available. The old limit comes
// back when the test ends.
func raiseFDLimit(t *testing.T, want, need uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if old.Cur >= want {
		return
	}
	lim := syscall.Rlimit{Cur: want, Max: max(old.Max, want)}
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	if err != nil && old.Max > old.Cur {
		// Not allowed above the hard limit: up to it, then.
		lim = syscall.Rlimit{Cur: old.Max, Max: old.Max}
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if err == nil {
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	} else {
		lim = old
	}
	if lim.Cur < need {
		t.Skipf("RLIMIT_NOFILE is %d (max %d) and cannot be raised to %d: %v", lim.Cur, lim.Max, need, err)
	}
}

// heapAndStacks is the memory the Go runtime has in use, after a GC.
func heapAndStacks() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// sessionClientsEnv, when set ("addr n sources"), makes the test binary a
// helper process holding client connections (see TestMain).
const sessionClientsEnv = "MXGATE_TEST_SESSION_CLIENTS"

// sessionClients is the helper process of TestTenThousandSessions: it opens
// n connections to addr from 127.0.0.1 to 127.0.0.<sources>, reads each
// banner, says "ready" on stdout, and holds them until stdin closes. The
// clients live in a process of their own so that the test's memory figures
// are the server's alone, and so that each process needs n descriptors,
// not 2n.
func sessionClients(spec string) int {
	var addr string
	var n, sources int
	if _, err := fmt.Sscan(spec, &addr, &n, &sources); err != nil {
		fmt.Printf("error: %s=%q: %v\n", sessionClientsEnv, spec, err)
		return 2
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(n+64) {
		lim.Cur = min(uint64(n+64), lim.Max)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := range next {
				c, err := dialFromAddr(addr, fmt.Sprintf("127.0.0.%d", 1+i%sources))
				if err == nil {
					conns[i] = c
					err = readBanner(c, buf)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		fmt.Printf("error: %v\n", firstErr)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// readBanner reads up to the end of the 220 line.
func readBanner(c net.Conn, buf []byte) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	for {
		n, err := c.Read(buf[got:])
		got += n
		if strings.IndexByte(string(buf[:got]), '\n') >= 0 {
			if !strings.HasPrefix(string(buf[:got]), "220 ") {
				return fmt.Errorf("banner %q", buf[:got])
			}
			return nil
		}
		if err != nil {
			return err
		}
		if got == len(buf) {
			return errors.New("banner too long")
		}
	}
}

// TestTenThousandSessions holds 10,000 greeted sessions open at once and
// measures what each costs the server: the heap and stacks in use (after a
// GC) with them open, less before, divided by the sessions. The target is
// 40 KiB; the test fails above 64 KiB. The clients are a helper process
// (this test binary again, see sessionClients), so the figure is the
// server's alone. It is skipped under the race detector, which allows at
// most 8128 live goroutines: CI runs it without -race
// (go test -count=1 -run TestTenThousandSessions ./server).
func TestTenThousandSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections: not with -short")
	}
	if raceEnabled {
		t.Skip("the race detector allows at most 8128 live goroutines; run without -race: go test -count=1 -run TestTenThousandSessions ./server")
	}
	const (
		n       = 10000
		sources = 40 // 127.0.0.1 to 127.0.0.40
	)
	// The server's end of each connection, and room to spare (the
	// helper process has its own limit).
	raiseFDLimit(t, 30000, n+1024)
	begin := time.Now()
	h := newHarness(t, standardSink(), func(c *config.Config) {
		c.Limits.MaxConnections = 20000
		c.Limits.MaxConnectionsPerIP = 20000
		c.Limits.CommandTimeout = time.Minute
		c.Limits.SessionTimeout = 10 * time.Minute
	})
	baseGoroutines := runtime.NumGoroutine()
	before := heapAndStacks()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", sessionClientsEnv, h.addr, n, sources))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		ready <- strings.TrimSpace(line)
		io.Copy(io.Discard, br)
		exited <- cmd.Wait()
	}()
	// Registered after the harness's cleanup, so it runs first: the
	// helper is gone before the server shuts down.
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("client helper: %q", line)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("client helper not ready after 60 s")
	}
	opened := time.Since(begin)
	if got := h.srv.guard.Open(); got != n {
		t.Fatalf("guard counts %d open connections, want %d", got, n)
	}

	during := heapAndStacks()
	per := (int64(during) - int64(before)) / n
	t.Logf("%d sessions open after %v: %d bytes (%.1f KiB) of heap and stacks each; %d goroutines",
		n, opened.Round(time.Millisecond), per, float64(per)/1024, runtime.NumGoroutine())
	if per > 64<<10 {
		t.Errorf("%d bytes per session, over 64 KiB (the target is 40 KiB)", per)
	}

	stdin.Close() // the helper closes every connection and exits
	waitOpen(t, h, 0, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines+2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 10 s after the clients closed, %d before", runtime.NumGoroutine(), baseGoroutines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("all closed after %v", time.Since(begin).Round(time.Millisecond))
}
