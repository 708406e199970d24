package server

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/testutil"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

func TestListen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		l       config.Listener
		proxied bool
		err     bool
	}{
		{"plain", config.Listener{Address: "127.0.0.1:0"}, false, false},
		{"proxy", config.Listener{Address: "127.0.0.1:0", ProxyProtocol: config.ProxyProtocol{Trusted: []string{"10.0.0.0/8", "127.0.0.1"}}}, true, false},
		{"bad trusted", config.Listener{Address: "127.0.0.1:0", ProxyProtocol: config.ProxyProtocol{Trusted: []string{"10.0.0.0/33"}}}, false, true},
		{"bad address", config.Listener{Address: "127.0.0.1:99999"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := listen(tc.l)
			if tc.err {
				if err == nil {
					ln.Close()
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			pl, ok := ln.(*proxyproto.Listener)
			if ok != tc.proxied {
				t.Fatalf("listener %T", ln)
			}
			if ok && pl.ReadHeaderTimeout != defaultProxyTimeout {
				t.Fatalf("header timeout %v", pl.ReadHeaderTimeout)
			}
		})
	}
}

// proxyHarness serves behind PROXY protocol, trusting trusted.
func proxyHarness(t *testing.T, trusted string, timeout time.Duration, mutate func(*config.Config)) (*harness, *guardWatch) {
	t.Helper()
	ln, err := listen(config.Listener{Address: "127.0.0.1:0", ProxyProtocol: config.ProxyProtocol{Trusted: []string{trusted}, Timeout: timeout}})
	if err != nil {
		t.Fatal(err)
	}
	return newWatchedHarness(t, mutate, ln)
}

func proxyV1(src string) string { return "PROXY TCP4 " + src + " 127.0.0.1 40000 25\r\n" }

func proxyV2(t *testing.T, src string) string {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2,
		&net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 25})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recordFrom waits for a record of a connection from ip.
func recordFrom(t *testing.T, h *harness, ip string) verdict.Record {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		h.recs.mu.Lock()
		list := append([]verdict.Record(nil), h.recs.list...)
		h.recs.mu.Unlock()
		for _, r := range list {
			if r.Client.IP == ip {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record from %s in %+v", ip, list)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProxyProtocolClientAddress(t *testing.T) {
	h, w := proxyHarness(t, "127.0.0.0/8", time.Second, nil)
	for _, tc := range []struct{ name, ip, header string }{
		{"v1", "198.51.100.7", proxyV1("198.51.100.7")},
		{"v2", "198.51.100.8", proxyV2(t, "198.51.100.8")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := h.dial()
			cl.write(tc.header)
			cl.expect("220 ")
			c := w.next(t)
			if got := c.st.ip.String(); got != tc.ip {
				t.Fatalf("client address %s, want %s", got, tc.ip)
			}
			if got := c.Pregreet(); got != "skipped" {
				t.Fatalf("Pregreet() = %q", got)
			}
			cl.send("EHLO client.example.test")
			cl.expect("250 ")
			cl.send("QUIT")
			cl.expect("221 ")
			recordFrom(t, h, tc.ip)
		})
	}
}

// TestProxyProtocolCapsSeeClient: the per-IP cap counts the clients behind
// the balancer, not the balancer.
func TestProxyProtocolCapsSeeClient(t *testing.T) {
	h, _ := proxyHarness(t, "127.0.0.0/8", time.Second, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 1 })
	a := h.dial()
	a.write(proxyV1("198.51.100.7"))
	a.expect("220 ")
	b := h.dial()
	b.write(proxyV1("198.51.100.7"))
	b.expect("421 4.7.0 ")
	c := h.dial()
	c.write(proxyV1("198.51.100.8"))
	c.expect("220 ")
	if rec := recordFrom(t, h, "198.51.100.7"); rec.Reason != policy.ReasonConnLimitIP {
		t.Fatalf("record %+v", rec)
	}
}

// TestProxyProtocolPregreet: the header is not early talk; what follows it
// at once is.
func TestProxyProtocolPregreet(t *testing.T) {
	h, w := proxyHarness(t, "127.0.0.0/8", time.Second, pregreetConfig(300*time.Millisecond, "enforce", false))
	cl := h.dial()
	cl.write(proxyV1("198.51.100.7"))
	cl.expect("220 ")
	if got := w.next(t).Pregreet(); got != "pass" {
		t.Fatalf("header only: Pregreet() = %q, want pass", got)
	}
	cl = h.dial()
	cl.write(proxyV1("198.51.100.7") + "EHLO early.example.test\r\n")
	cl.expect("220 ")
	cl.expect("250 ")
	if got := w.next(t).Pregreet(); got != "early" {
		t.Fatalf("header and EHLO: Pregreet() = %q, want early", got)
	}
}

// expectClosedSilently checks that the server closes without a word.
func expectClosedSilently(t *testing.T, cl *client, within time.Duration) {
	t.Helper()
	start := time.Now()
	cl.c.SetReadDeadline(time.Now().Add(within))
	b, err := cl.r.ReadByte()
	if err == nil {
		t.Fatalf("server sent %q", b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("still open after %v", time.Since(start))
	}
}

func TestProxyProtocolMissingHeader(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h, _ := proxyHarness(t, "127.0.0.0/8", timeout, nil)

	// Silent: closed when the header timeout expires.
	start := time.Now()
	silent := h.dial()
	// Meanwhile other connections are served: the header is read in
	// the connection's own goroutine, not the accept loop.
	ok := h.dial()
	ok.write(proxyV1("198.51.100.7"))
	ok.expect("220 ")
	if d := time.Since(start); d > timeout {
		t.Fatalf("the second connection waited %v for the first one's header", d)
	}
	expectClosedSilently(t, silent, 2*time.Second)
	if d := time.Since(start); d < timeout {
		t.Fatalf("closed after %v, before the header timeout", d)
	}

	// SMTP without a header: closed at once.
	bare := h.dial()
	bare.send("EHLO client.example.test")
	expectClosedSilently(t, bare, 2*time.Second)
	if n := h.srv.guard.Open(); n != 1 {
		t.Fatalf("%d connections admitted, want only the proxied one", n)
	}
}

func TestProxyProtocolUntrustedSource(t *testing.T) {
	h, _ := proxyHarness(t, "127.0.0.2/32", time.Second, nil)
	cl := h.dial() // from 127.0.0.1
	cl.write(proxyV1("198.51.100.7"))
	expectClosedSilently(t, cl, 2*time.Second)
}

// TestProxyProtocolShutdown: shutdown does not wait for a header.
func TestProxyProtocolShutdown(t *testing.T) {
	h, _ := proxyHarness(t, "127.0.0.0/8", 5*time.Second, nil)
	cl := h.dial()
	time.Sleep(50 * time.Millisecond) // accepted, waiting for the header
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	expectClosedSilently(t, cl, time.Second)
}

// TestProxyProtocolSwaks: a real client's PROXY v1 and v2 headers.
func TestProxyProtocolSwaks(t *testing.T) {
	swaks := testutil.Need(t, "swaks", "swaks")
	h, _ := proxyHarness(t, "127.0.0.0/8", time.Second, nil)
	host, port, _ := net.SplitHostPort(h.addr)
	for i, tc := range []struct{ version, family string }{{"1", "TCP4"}, {"2", "AF_INET"}} {
		src := "198.51.100." + strconv.Itoa(9+i)
		t.Run("v"+tc.version, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, swaks, "--server", host, "--port", port,
				"--proxy-version", tc.version, "--proxy-family", tc.family,
				"--proxy-source", src, "--proxy-source-port", "4000",
				"--proxy-dest", "127.0.0.1", "--proxy-dest-port", "25",
				"--quit-after", "RCPT", "--from", "a@example.test", "--to", "b@ours.test",
				"--helo", "client.test").CombinedOutput()
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "<-  250 ") {
				t.Fatalf("swaks transcript:\n%s", out)
			}
			recordFrom(t, h, src)
		})
	}
}
