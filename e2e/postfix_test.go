package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"
)

// postfixMaster is where Debian's postfix package puts the master daemon.
const postfixMaster = "/usr/lib/postfix/sbin/master"

// TestPostfixClientIdentity relays through the gateway to a real Postfix
// and checks that Postfix learnt the gateway's client, not the gateway, as
// the message's client: from XFORWARD on one smtpd, from XCLIENT on
// another that offers only XCLIENT. The client is swaks on 127.0.0.5,
// whose PTR mail.example.test is forward-confirmed in the test zones, so
// every attribute differs from the gateway's own (127.0.0.1, mx.e2e.test).
//
// XFORWARD changes what Postfix logs and forwards, not its Received header
// (that names the connection's real client, the gateway), so the XFORWARD
// case checks Postfix's log ("orig_client=") and the XFORWARD Postfix
// itself sends to the next hop (smtp_send_xforward_command), which carries
// the attributes it stored with the message. XCLIENT makes the client
// Postfix's client outright, so its Received header names it.
func TestPostfixClientIdentity(t *testing.T) {
	t.Parallel()
	swaks := testutil.Need(t, "swaks", "swaks")
	hop := startNextHop(t)
	pf := startPostfix(t, hop.addr)

	for _, tc := range []struct {
		name, backend, rcpt string
		check               func(t *testing.T, m hopMsg)
	}{
		{"XFORWARD", pf.xforward, "xforward@dest.test", func(t *testing.T, m hopMsg) {
			pf.waitLog(t, "orig_client=mail.example.test[127.0.0.5]")
			xf := strings.Join(m.xforward, " ")
			for _, want := range []string{"NAME=mail.example.test", "ADDR=127.0.0.5", "HELO=client.e2e.test", "PROTO=ESMTP", "SOURCE=REMOTE"} {
				if !strings.Contains(" "+xf+" ", " "+want+" ") {
					t.Errorf("Postfix forwarded XFORWARD %q, want %s in it", m.xforward, want)
				}
			}
		}},
		{"XCLIENT", pf.xclient, "xclient@dest.test", func(t *testing.T, m hopMsg) {
			want := "Received: from client.e2e.test (mail.example.test [127.0.0.5])\r\n\tby pf.e2e.test (Postfix)"
			if !strings.Contains(m.data, want) {
				t.Errorf("Postfix's Received header does not name the client; want %q in\n%s", want, m.data)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, tc.backend)
			_, port, _ := net.SplitHostPort(g.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, swaks,
				"--server", "127.0.0.1", "--port", port, "--local-interface", "127.0.0.5",
				"--helo", "client.e2e.test", "--from", "sender@example.test", "--to", tc.rcpt,
				"--header", "Subject: client identity "+tc.name, "--silent", "2")
			cmd.Env = swaksEnv()
			cmd.WaitDelay = 5 * time.Second
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("swaks through the gateway to Postfix: %v\n%s", err, out)
			}
			m := hop.wait(t, "<"+tc.rcpt+">")
			tc.check(t, m)
		})
	}
}

// TestPostfixBDAT relays a message of 200 KiB whose lines start with dots
// through the gateway to a real Postfix, which offers CHUNKING: the
// gateway sends it as one BDAT chunk, without dot-stuffing (Postfix logs
// "bdat=1" for the connection when the gateway closes it), and the next
// hop gets it whole, dot-stuffed by Postfix's own DATA.
func TestPostfixBDAT(t *testing.T) {
	t.Parallel()
	swaks := testutil.Need(t, "swaks", "swaks")
	hop := startNextHop(t)
	pf := startPostfix(t, hop.addr)
	g := startGateway(t, pf.xforward)

	var body strings.Builder
	for i := range 2600 {
		fmt.Fprintf(&body, ".line %04d, starting with a dot, padded to 80 octets...................\r\n", i)
	}
	body.WriteString("..\r\n.\r\nlast line\r\n")
	file := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(file, []byte(body.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(g.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks,
		"--server", "127.0.0.1", "--port", port, "--local-interface", "127.0.0.5",
		"--helo", "client.e2e.test", "--from", "sender@example.test", "--to", "bdat@dest.test",
		"--header", "Subject: BDAT", "--body", file, "--silent", "2")
	cmd.Env = swaksEnv()
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swaks through the gateway to Postfix: %v\n%s", err, out)
	}
	m := hop.wait(t, "<bdat@dest.test>")
	// The hop keeps the data as it came, dot-stuffed by Postfix (swaks
	// adds a blank line after the body).
	stuffed := strings.ReplaceAll("\r\n"+body.String(), "\r\n.", "\r\n..")
	if !strings.Contains(m.data, stuffed) {
		t.Errorf("the next hop got %d octets, without the body (%d octets, dot-stuffed); they end in %q", len(m.data), len(stuffed), m.data[max(0, len(m.data)-300):])
	}
	g.stop(t) // the pool says QUIT, and Postfix logs the session's commands
	pf.waitLog(t, " bdat=1")
}

// postfixInstance is a private Postfix: its own configuration, queue and
// log in a temporary directory, its own master process; the system's
// instance is never touched.
type postfixInstance struct {
	dir      string
	maillog  string
	xforward string // smtpd that offers XFORWARD to loopback
	xclient  string // smtpd that offers XCLIENT (only) to loopback
}

// startPostfix starts a private Postfix relaying dest.test to nextHop with
// two smtpd listeners (see postfixInstance). It needs root, as Postfix's
// master does.
func startPostfix(t *testing.T, nextHop string) *postfixInstance {
	t.Helper()
	postfixCmd := testutil.Need(t, "postfix", "postfix")
	if _, err := os.Stat(postfixMaster); err != nil {
		need(t, fmt.Sprintf("%s: %v; install the Debian package \"postfix\"", postfixMaster, err))
	}
	if os.Geteuid() != 0 {
		need(t, "a private Postfix instance needs root (its master runs as root and drops to mail_owner)")
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		need(t, fmt.Sprintf("no postfix user: %v; install the Debian package \"postfix\"", err))
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)

	// Directly under the system temp directory and world-readable: the
	// Postfix daemons run as the postfix user and must reach their files.
	dir, err := os.MkdirTemp("", "mxgate-e2e-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pf := &postfixInstance{
		dir:      dir,
		maillog:  filepath.Join(dir, "maillog"),
		xforward: loopback(testutil.FreePort(t)),
		xclient:  loopback(testutil.FreePort(t)),
	}
	etc, queue, data := filepath.Join(dir, "etc"), filepath.Join(dir, "queue"), filepath.Join(dir, "data")
	for _, d := range []string{dir, etc, queue, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The master's lock file lives in data_directory, made as mail_owner.
	if err := os.Chown(data, uid, gid); err != nil {
		t.Fatal(err)
	}
	mainCF := fmt.Sprintf(`# written by the e2e tests: a private instance
compatibility_level = 3.6
config_directory = %[1]s
queue_directory = %[2]s
data_directory = %[3]s
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mxgate-e2e
maillog_file = %[4]s
maillog_file_prefixes = %[5]s
myhostname = pf.e2e.test
mydomain = e2e.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery disabled
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = dest.test
transport_maps = inline:{ dest.test=relay:[127.0.0.1]:%[6]s }
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtpd_authorized_xforward_hosts = 127.0.0.0/8
smtp_send_xforward_command = yes
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
`, etc, queue, data, pf.maillog, dir, portOf(t, nextHop))
	masterCF := fmt.Sprintf(`# written by the e2e tests; no chroot anywhere
%s inet n - n - - smtpd
%s inet n - n - - smtpd -o smtpd_authorized_xforward_hosts= -o smtpd_authorized_xclient_hosts=127.0.0.0/8
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
relay     unix - - n - - smtp
smtp      unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`, pf.xforward, pf.xclient)
	for name, content := range map[string]string{"main.cf": mainCF, "master.cf": masterCF} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// "postfix check" creates the queue directories with their owners.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, postfixCmd, "-c", etc, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix -c %s check: %v\n%s", etc, err, out)
	}
	// Without -w the master stays in the foreground: its PID is ours to
	// signal, and SIGTERM stops it with all its children.
	master := startProc(t, "postfix master", postfixMaster, "-c", etc)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Postfix's log:\n%s", tail(pf.log(), 60))
		}
	})
	master.waitListening(t, pf.xforward)
	master.waitListening(t, pf.xclient)
	return pf
}

// need fails the test in CI and skips it elsewhere, as testutil.Need does
// for a missing program.
func need(t *testing.T, msg string) {
	t.Helper()
	if testutil.InCI() {
		t.Fatalf("%s [CI is set, so this is a failure, not a skip]", msg)
	}
	t.Skip(msg)
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func (pf *postfixInstance) log() string {
	b, _ := os.ReadFile(pf.maillog)
	return string(b)
}

// waitLog waits up to 10 s for s to appear in Postfix's log (postlogd
// writes it a moment after the fact).
func (pf *postfixInstance) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(pf.log(), s) {
		if time.Now().After(deadline) {
			t.Errorf("Postfix's log has no %q", s)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nextHop is the SMTP server Postfix relays dest.test to. Unlike
// smtp-sink, it keeps the XFORWARD commands it gets (it advertises
// XFORWARD, so Postfix sends what it knows of the message's client).
type nextHop struct {
	addr string

	mu   sync.Mutex
	msgs []hopMsg
	got  chan struct{} // closed and replaced on every message
}

// hopMsg is one message the next hop took.
type hopMsg struct {
	xforward []string // the XFORWARD lines of its transaction
	rcpts    []string // RCPT TO arguments
	data     string   // as received, CRLF, dot-stuffed
}

func startNextHop(t *testing.T) *nextHop {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &nextHop{addr: ln.Addr().String(), got: make(chan struct{})}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { h.serve(c) })
		}
	})
	return h
}

func (h *nextHop) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) { _, _ = c.Write([]byte(s + "\r\n")) }
	var cur hopMsg
	say("220 hop.e2e.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-hop.e2e.test\r\n250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n250 8BITMIME")
		case "XFORWARD":
			cur.xforward = append(cur.xforward, arg)
			say("250 2.0.0 Ok")
		case "RCPT":
			cur.rcpts = append(cur.rcpts, strings.TrimPrefix(strings.TrimPrefix(arg, "TO:"), "to:"))
			say("250 2.1.5 Ok")
		case "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			cur.data = b.String()
			h.mu.Lock()
			h.msgs = append(h.msgs, cur)
			close(h.got)
			h.got = make(chan struct{})
			h.mu.Unlock()
			cur = hopMsg{}
			say("250 2.0.0 Ok: queued")
		case "RSET":
			cur = hopMsg{}
			say("250 2.0.0 Ok")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("250 Ok")
		}
	}
}

// wait returns the first message for rcpt (as in RCPT TO, with its angle
// brackets and possibly parameters), waiting up to 15 s for it.
func (h *nextHop) wait(t *testing.T, rcpt string) hopMsg {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		h.mu.Lock()
		for _, m := range h.msgs {
			for _, r := range m.rcpts {
				if r == rcpt || strings.HasPrefix(r, rcpt+" ") {
					h.mu.Unlock()
					return m
				}
			}
		}
		got := h.got
		h.mu.Unlock()
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("Postfix did not relay the message for %s to the next hop in 15 s", rcpt)
		}
	}
}
