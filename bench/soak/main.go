// Command soak is the driver of bench/soak.sh: it sends messages to a
// running gateway over many concurrent connections, samples the gateway's
// resident memory (/proc/PID/status VmRSS) and, when given its admin
// address, go_goroutines from /metrics, prints a table, and fails when
// the RSS grew too much between a quarter of the run and its end.
//
//	soak -addr 127.0.0.1:2525 -pid 1234 [-metrics http://127.0.0.1:9090/metrics] -n 100000
//	soak -ports 2    # print two free loopback ports, one per line
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	var (
		addr     = flag.String("addr", "", "the gateway's SMTP address")
		pid      = flag.Int("pid", 0, "the gateway's process id (for VmRSS)")
		metrics  = flag.String("metrics", "", "the gateway's /metrics URL, if any (for go_goroutines)")
		n        = flag.Int("n", 100000, "messages to send")
		conc     = flag.Int("c", 20, "concurrent connections")
		perConn  = flag.Int("per-conn", 10, "messages per connection before QUIT and a new connection")
		size     = flag.Int("size", 2048, "approximate message size in bytes")
		every    = flag.Duration("every", 5*time.Second, "sampling interval")
		growth   = flag.Float64("max-growth", 25, "the most RSS may grow, in percent, from 25% of the run to its end")
		rcpt     = flag.String("rcpt", "user@dest.test", "recipient")
		from     = flag.String("from", "sender@example.test", "sender")
		ports    = flag.Int("ports", 0, "print this many free loopback TCP ports and exit")
		maxFails = flag.Float64("max-fail", 1, "the most messages (percent) that may fail to get 250 before the run counts as failed")
	)
	flag.Parse()
	if *ports > 0 {
		os.Exit(freePorts(*ports))
	}
	if *addr == "" || *pid == 0 {
		fmt.Fprintln(os.Stderr, "soak: -addr and -pid are required")
		os.Exit(2)
	}
	d := &driver{addr: *addr, n: int64(*n), perConn: *perConn, rcpt: *rcpt, from: *from, body: message(*size)}
	os.Exit(run(d, *conc, *pid, *metrics, *every, *growth, *maxFails))
}

// freePorts prints free loopback ports (closed again at once: a small race
// with other programs, fine for a benchmark).
func freePorts(k int) int {
	var lns []net.Listener
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	return 0
}

// driver sends the messages; its counters are read by the sampler.
type driver struct {
	addr       string
	n          int64
	perConn    int
	rcpt, from string
	body       []byte

	next    atomic.Int64 // messages handed out
	done    atomic.Int64 // messages finished, whatever the outcome
	ok      atomic.Int64 // 250 to the final dot
	temp    atomic.Int64 // 4xx anywhere
	perm    atomic.Int64 // 5xx anywhere
	errs    atomic.Int64 // connection errors
	conns   atomic.Int64 // connections made
	errMu   sync.Mutex
	lastErr string
}

func message(size int) []byte {
	var b strings.Builder
	b.WriteString("From: <sender@example.test>\r\nTo: <user@dest.test>\r\nSubject: soak\r\n")
	b.WriteString("Date: " + time.Now().Format(time.RFC1123Z) + "\r\n")
	b.WriteString("Message-ID: <soak-MSGID@example.test>\r\n\r\n")
	for b.Len() < size {
		b.WriteString("The quick brown fox jumps over the lazy dog.\r\n")
	}
	return []byte(b.String())
}

// take hands out the next message number, or false when all are out.
func (d *driver) take() (int64, bool) {
	i := d.next.Add(1)
	return i, i <= d.n
}

func (d *driver) fail(err error) {
	var te *textproto.Error
	switch {
	case err == nil:
		d.ok.Add(1)
		return
	case asTextproto(err, &te) && te.Code/100 == 4:
		d.temp.Add(1)
	case asTextproto(err, &te) && te.Code/100 == 5:
		d.perm.Add(1)
	default:
		d.errs.Add(1)
	}
	d.errMu.Lock()
	d.lastErr = err.Error()
	d.errMu.Unlock()
}

func asTextproto(err error, te **textproto.Error) bool {
	e, ok := err.(*textproto.Error)
	if ok {
		*te = e
	}
	return ok
}

// worker opens connections and sends up to perConn messages on each.
func (d *driver) worker() {
	for {
		i, ok := d.take()
		if !ok {
			return
		}
		c, err := dial(d.addr)
		d.conns.Add(1)
		if err != nil {
			d.fail(err)
			d.done.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for k := 0; ; k++ {
			err := d.send(c, i)
			d.fail(err)
			d.done.Add(1)
			if te, isReply := err.(*textproto.Error); err != nil && (!isReply || te.Code == 421) {
				break // the connection is gone
			}
			if k+1 >= d.perConn {
				break
			}
			if i, ok = d.take(); !ok {
				break
			}
		}
		c.cmd(221, "QUIT")
		c.Close()
	}
}

// client is a minimal SMTP client. net/smtp would do, but it adds
// SMTPUTF8 to every MAIL when offered, and the gateway refuses that
// (550 5.6.7) when the backend (smtp-sink) lacks it.
type client struct {
	*textproto.Conn
	nc net.Conn
}

func dial(addr string) (*client, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &client{Conn: textproto.NewConn(nc), nc: nc}
	if _, _, err := c.ReadResponse(220); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.cmd(250, "EHLO soak.example.test"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// cmd sends a command and reads its reply, under a deadline.
func (c *client) cmd(code int, format string, args ...any) error {
	c.nc.SetDeadline(time.Now().Add(time.Minute))
	id, err := c.Cmd(format, args...)
	if err != nil {
		return err
	}
	c.StartResponse(id)
	defer c.EndResponse(id)
	_, _, err = c.ReadResponse(code)
	return err
}

func (d *driver) send(c *client, i int64) error {
	if err := c.cmd(250, "MAIL FROM:<%s>", d.from); err != nil {
		c.cmd(250, "RSET")
		return err
	}
	if err := c.cmd(250, "RCPT TO:<%s>", d.rcpt); err != nil {
		c.cmd(250, "RSET")
		return err
	}
	if err := c.cmd(354, "DATA"); err != nil {
		c.cmd(250, "RSET")
		return err
	}
	w := c.DotWriter()
	body := strings.Replace(string(d.body), "MSGID", strconv.FormatInt(i, 10), 1)
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	_, _, err := c.ReadResponse(250)
	return err
}

// sample is one row of the table.
type sample struct {
	at         time.Duration
	done       int64
	rssKB      int64
	goroutines int64 // -1: unknown
	mark       string
}

func run(d *driver, conc, pid int, metrics string, every time.Duration, maxGrowth, maxFails float64) int {
	start := time.Now()
	take := func(mark string) sample {
		return sample{at: time.Since(start), done: d.done.Load(), rssKB: rss(pid), goroutines: goroutines(metrics), mark: mark}
	}
	first := take("start")
	printHeader(d, conc)
	d.printRow(first)

	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() { defer wg.Done(); d.worker() }()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	var quarter *sample
	tick := time.NewTicker(every)
	defer tick.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
loop:
	for {
		select {
		case <-finished:
			break loop
		case <-tick.C:
			s := take("")
			if s.rssKB < 0 {
				fmt.Fprintf(os.Stderr, "soak: the gateway (pid %d) is gone\n", pid)
				return 1
			}
			d.printRow(s)
		case <-poll.C:
			if quarter == nil && d.done.Load() >= d.n/4 {
				s := take("25%")
				quarter = &s
				d.printRow(s)
			}
		}
	}
	// Let the gateway's last connections close before the last sample.
	time.Sleep(time.Second)
	last := take("100%")
	d.printRow(last)
	if quarter == nil {
		quarter = &first
	}

	el := time.Since(start)
	fmt.Printf("\n%d messages in %v (%.0f/s) over %d connections: %d accepted (250), %d tempfail (4xx), %d rejected (5xx), %d connection errors\n",
		d.done.Load(), el.Round(time.Millisecond), float64(d.done.Load())/el.Seconds(), d.conns.Load(),
		d.ok.Load(), d.temp.Load(), d.perm.Load(), d.errs.Load())
	if d.lastErr != "" {
		fmt.Printf("last failure: %s\n", d.lastErr)
	}
	code := 0
	growth := 100 * float64(last.rssKB-quarter.rssKB) / float64(quarter.rssKB)
	fmt.Printf("RSS: %d KiB at the start, %d KiB at 25%%, %d KiB at the end: %+.1f%% from 25%% to the end (limit %.0f%%)\n",
		first.rssKB, quarter.rssKB, last.rssKB, growth, maxGrowth)
	if growth > maxGrowth {
		fmt.Println("FAIL: RSS grew too much")
		code = 1
	}
	if quarter.goroutines >= 0 && last.goroutines >= 0 {
		fmt.Printf("goroutines: %d at 25%%, %d at the end\n", quarter.goroutines, last.goroutines)
	}
	if failed := d.n - d.ok.Load(); float64(failed) > float64(d.n)*maxFails/100 {
		fmt.Printf("FAIL: %d of %d messages did not get 250 (limit %.1f%%)\n", failed, d.n, maxFails)
		code = 1
	}
	return code
}

func printHeader(d *driver, conc int) {
	fmt.Printf("sending %d messages of %d bytes to %s over %d connections (%d messages each)\n\n",
		d.n, len(d.body), d.addr, conc, d.perConn)
	fmt.Printf("%8s %9s %6s %10s %10s  %s\n", "elapsed", "messages", "done", "rss_kib", "goroutines", "")
}

func (d *driver) printRow(s sample) {
	g := "-"
	if s.goroutines >= 0 {
		g = strconv.FormatInt(s.goroutines, 10)
	}
	fmt.Printf("%7.1fs %9d %5.0f%% %10d %10s  %s\n", s.at.Seconds(), s.done, 100*float64(s.done)/float64(d.n), s.rssKB, g, s.mark)
}

// rss returns VmRSS in KiB, or -1 when the process is gone.
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return -1
}

var metricsClient = &http.Client{Timeout: 2 * time.Second}

// goroutines reads go_goroutines from the /metrics URL; -1 when there is
// none or it fails.
func goroutines(url string) int64 {
	if url == "" {
		return -1
	}
	resp, err := metricsClient.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return -1
}
