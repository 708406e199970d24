package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// identityBackend is a scripted backend that records the command lines of
// every connection. It answers EHLO with ehlo, STARTTLS with 220 and a
// handshake (when tlsCfg is set), DATA with 354 and, after the final dot,
// 250; any other command with reply(line), or 250 when that is "".
type identityBackend struct {
	addr string

	mu    sync.Mutex
	conns [][]string
}

func newIdentityBackend(t *testing.T, ehlo string, tlsCfg *tls.Config, reply func(string) string) *identityBackend {
	b := &identityBackend{}
	b.addr = listen(t, func(c net.Conn) {
		b.mu.Lock()
		n := len(b.conns)
		b.conns = append(b.conns, nil)
		b.mu.Unlock()
		rec := func(line string) {
			b.mu.Lock()
			b.conns[n] = append(b.conns[n], line)
			b.mu.Unlock()
		}
		var conn net.Conn = c
		r := bufio.NewReader(conn)
		say := func(s string) { _, _ = conn.Write([]byte(s + "\r\n")) }
		say("220 identity.test")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			rec(line)
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			switch {
			case verb == "EHLO":
				say(ehlo)
			case verb == "STARTTLS" && tlsCfg != nil:
				say("220 go ahead")
				tc := tls.Server(conn, tlsCfg)
				if tc.Handshake() != nil {
					return
				}
				conn, r = tc, bufio.NewReader(tc)
			case verb == "DATA":
				say("354 go on")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
				}
				say("250 2.0.0 Ok: queued as ABC123")
			case verb == "QUIT":
				say("221 bye")
				return
			default:
				if s := reply(line); s != "" {
					say(s)
				} else {
					say("250 ok")
				}
			}
		}
	})
	return b
}

// lines returns the command lines of every connection so far.
func (b *identityBackend) lines() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]string, len(b.conns))
	for i, c := range b.conns {
		out[i] = slices.Clone(c)
	}
	return out
}

// commands returns the lines of connection i that start with one of verbs.
func (b *identityBackend) commands(i int, verbs ...string) []string {
	var out []string
	all := b.lines()
	if i >= len(all) {
		return nil
	}
	for _, l := range all[i] {
		for _, v := range verbs {
			if strings.HasPrefix(strings.ToUpper(l), v) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

const ehloXforward = "250-identity.test\r\n250-PIPELINING\r\n250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n250 8BITMIME"
const ehloXclient = "250-identity.test\r\n250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN\r\n250 8BITMIME"

func noReply(string) string { return "" }

// oddClient has a HELO with characters xtext must encode.
var oddClient = &ClientIdentity{
	Addr:  netip.MustParseAddr("192.0.2.7"),
	Port:  4711,
	Name:  "mail.example.org",
	Helo:  "odd+helo=x",
	Proto: "ESMTPS",
}

const oddXforward = "XFORWARD NAME=mail.example.org ADDR=192.0.2.7 PORT=4711 PROTO=ESMTPS HELO=odd+2Bhelo+3Dx SOURCE=REMOTE"

func sendAs(t *testing.T, p *Pool, id *ClientIdentity) (*Result, error) {
	t.Helper()
	return send(t, p, MailParams{From: "a@client.test", Client: id}, []string{"b@example.org"}, "x\r\n")
}

func TestXFORWARD(t *testing.T) {
	e := newEnv(t) // first: its goroutine check runs after the backend stopped
	b := newIdentityBackend(t, ehloXforward, nil, noReply)
	p := e.pool(testConfig(b.addr))
	for range 2 {
		if _, err := sendAs(t, p, oddClient); err != nil {
			t.Fatal(err)
		}
	}
	// Per transaction, right before MAIL, on one pooled connection.
	want := []string{"EHLO gw.test", oddXforward, "MAIL FROM:<a@client.test> BODY=8BITMIME",
		"RCPT TO:<b@example.org>", "DATA", oddXforward, "MAIL FROM:<a@client.test> BODY=8BITMIME",
		"RCPT TO:<b@example.org>", "DATA"}
	if got := b.commands(0, "EHLO", "XFORWARD", "MAIL", "RCPT", "DATA"); !slices.Equal(got, want) {
		t.Errorf("commands:\n%q\nwant\n%q", got, want)
	}
	if st := p.Stats(); st.Dials != 1 || st.Idle != 1 {
		t.Errorf("stats %+v, want one pooled connection", st)
	}
}

func TestXFORWARDAttributes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ehlo  string
		id    *ClientIdentity
		want  string
		tlsOn bool
	}{
		{"advertised subset", "250-identity.test\r\n250 XFORWARD NAME ADDR", oddClient,
			"XFORWARD NAME=mail.example.org ADDR=192.0.2.7", false},
		{"unknowns and IPv6", ehloXforward, &ClientIdentity{Addr: netip.MustParseAddr("2001:db8::1"), Proto: "ESMTP"},
			"XFORWARD NAME=[UNAVAILABLE] ADDR=IPv6:2001:db8::1 PORT=[UNAVAILABLE] PROTO=ESMTP HELO=[UNAVAILABLE] SOURCE=REMOTE", false},
		{"IPv4-mapped", ehloXforward, &ClientIdentity{Addr: netip.MustParseAddr("::ffff:192.0.2.9"), Port: 25, Name: "[UNAVAILABLE]", Helo: "h", Proto: "ESMTP"},
			"XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.9 PORT=25 PROTO=ESMTP HELO=h SOURCE=REMOTE", false},
		{"non-ASCII and space", ehloXforward, &ClientIdentity{Addr: netip.MustParseAddr("192.0.2.7"), Port: 1, Name: "x.test", Helo: "hé lo", Proto: "ESMTP"},
			"XFORWARD NAME=x.test ADDR=192.0.2.7 PORT=1 PROTO=ESMTP HELO=h+C3+A9+20lo SOURCE=REMOTE", false},
		{"over STARTTLS", "250-identity.test\r\n250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n250-8BITMIME\r\n250 STARTTLS",
			oddClient, oddXforward, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srvTLS *tls.Config
			cfg := testConfig("")
			if tc.tlsOn {
				cert, _ := testCert(t)
				srvTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				cfg.TLS.Mode = modeRequired
			}
			e := newEnv(t)
			b := newIdentityBackend(t, tc.ehlo, srvTLS, noReply)
			cfg.Servers = []string{b.addr}
			p := e.pool(cfg)
			txn, err := p.Begin(context.Background(), MailParams{From: "a@client.test", Client: tc.id})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := txn.TLS(); ok != tc.tlsOn {
				t.Errorf("TLS %v, want %v", ok, tc.tlsOn)
			}
			txn.Abort()
			if got := b.commands(0, "XFORWARD"); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("XFORWARD lines %q, want %q", got, tc.want)
			}
			if tc.tlsOn {
				want := []string{"EHLO gw.test", "STARTTLS", "EHLO gw.test", tc.want, "MAIL FROM:<a@client.test> BODY=8BITMIME", "RSET", "EHLO gw.test"}
				if got := b.commands(0, "EHLO", "STARTTLS", "XFORWARD", "MAIL", "RSET"); !slices.Equal(got, want) {
					t.Errorf("commands:\n%q\nwant\n%q", got, want)
				}
			}
		})
	}
}

func TestIdentityNotSent(t *testing.T) {
	for _, tc := range []struct {
		name string
		ehlo string
		mode string
		id   *ClientIdentity
	}{
		{"not advertised", "250-identity.test\r\n250 8BITMIME", "auto", oddClient},
		{"off", ehloXforward, "off", oddClient},
		{"off with XCLIENT", ehloXclient, "off", oddClient},
		{"no client", ehloXforward, "auto", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			b := newIdentityBackend(t, tc.ehlo, nil, noReply)
			cfg := testConfig(b.addr)
			cfg.ClientIdentity = tc.mode
			p := e.pool(cfg)
			if _, err := sendAs(t, p, tc.id); err != nil {
				t.Fatal(err)
			}
			if got := b.commands(0, "XFORWARD", "XCLIENT"); len(got) > 0 {
				t.Errorf("sent %q", got)
			}
		})
	}
}

func TestXFORWARDRefused(t *testing.T) {
	e := newEnv(t)
	b := newIdentityBackend(t, ehloXforward, nil, func(l string) string {
		if strings.HasPrefix(l, "XFORWARD") {
			return "501 5.5.4 Bad ADDR syntax"
		}
		return ""
	})
	p := e.pool(testConfig(b.addr))
	for range 2 {
		if _, err := sendAs(t, p, oddClient); err != nil {
			t.Fatalf("a refused XFORWARD failed the mail: %v", err)
		}
	}
	if got := b.commands(0, "XFORWARD", "MAIL"); len(got) != 4 {
		t.Errorf("commands %q, want XFORWARD and MAIL twice", got)
	}
	if st := p.Stats(); st.Dials != 1 {
		t.Errorf("stats %+v: a refusal must not cost the connection", st)
	}
}

func TestXFORWARD421(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			e := newEnv(t)
			ehlo := ehloXforward
			if !pipelining {
				ehlo = strings.Replace(ehlo, "250-PIPELINING\r\n", "", 1)
			}
			b := newIdentityBackend(t, ehlo, nil, func(l string) string {
				if strings.HasPrefix(l, "XFORWARD") {
					return "421 4.3.2 Shutting down"
				}
				return ""
			})
			p := e.pool(testConfig(b.addr))
			_, err := sendAs(t, p, oddClient)
			if r := asReply(t, err); r.Code != 451 || r.Reason != policy.ReasonBackendMail {
				t.Errorf("reply %v (%s), want the 421 as 451 for MAIL", r, r.Reason)
			}
			// Pipelined, MAIL left with XFORWARD, before the 421 came;
			// either way nothing more is sent.
			if got := b.commands(0, "MAIL", "RCPT", "DATA"); len(got) > 0 && !pipelining || len(got) > 1 {
				t.Errorf("sent after 421: %q", got)
			}
			eventually(t, "connection closed", func() bool { return p.Stats().Open == 0 })
		})
	}
}

// pipelineBackend answers EHLO with PIPELINING and XFORWARD, takes the
// next commands with a single read, which must hold all of them (they were
// sent in one write), and answers them with replies, in order; then it
// takes DATA. What that read held is sent on got.
func pipelineBackend(t *testing.T, replies []string, got chan<- string) string {
	return listen(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		say := func(s string) { _, _ = c.Write([]byte(s + "\r\n")) }
		say("220 pipe.test")
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		say(ehloXforward)
		buf := make([]byte, 64<<10)
		n, err := r.Read(buf)
		if err != nil {
			return
		}
		got <- string(buf[:n])
		for _, s := range replies {
			say(s)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.TrimSpace(line)) {
			case "DATA":
				say("354 go on")
				for {
					l, err := r.ReadString('\n')
					if err != nil || l == ".\r\n" {
						break
					}
				}
				say("250 2.0.0 Ok: queued as PIPE1")
			case "QUIT":
				say("221 bye")
				return
			default:
				say("250 ok")
			}
		}
	})
}

// TestPipelinedMail: with PIPELINING, XFORWARD, MAIL and the first RCPT
// leave in one write (RFC 2920), and each reply lands where it belongs.
func TestPipelinedMail(t *testing.T) {
	wantWrite := oddXforward + "\r\nMAIL FROM:<a@client.test> BODY=8BITMIME\r\nRCPT TO:<b@example.org>\r\n"
	for _, tc := range []struct {
		name     string
		replies  []string // to XFORWARD, MAIL, RCPT
		rcpt     string   // what Rcpt is called with
		beginErr string   // Begin's reply, "" for none
		rcptErr  string   // Rcpt's reply, "" for none
	}{
		{name: "all accepted", replies: []string{"250 ok", "250 2.1.0 ok", "250 2.1.5 ok"}, rcpt: "b@example.org"},
		{name: "recipient refused", replies: []string{"250 ok", "250 ok", "550 5.1.1 no such user"}, rcpt: "b@example.org", rcptErr: "550 5.1.1"},
		{name: "sender refused", replies: []string{"250 ok", "553 5.7.1 sender refused", "503 5.5.1 need MAIL"}, beginErr: "553 5.7.1"},
		{name: "XFORWARD refused", replies: []string{"550 5.7.0 not authorized", "250 ok", "250 ok"}, rcpt: "b@example.org"},
		{name: "Rcpt for another address", replies: []string{"250 ok", "250 ok", "250 ok"}, rcpt: "c@example.org", rcptErr: "451 4.3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			got := make(chan string, 1)
			p := e.pool(testConfig(pipelineBackend(t, tc.replies, got)))
			ctx := context.Background()
			txn, err := p.Begin(ctx, MailParams{From: "a@client.test", Size: 42, Client: oddClient, FirstRcpt: "b@example.org"})
			if w := <-got; w != wantWrite {
				t.Errorf("one read held %q, want %q", w, wantWrite)
			}
			if tc.beginErr != "" {
				if err == nil || !strings.HasPrefix(asReply(t, err).Error(), tc.beginErr) {
					t.Fatalf("Begin: %v, want %s", err, tc.beginErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Begin: %v", err)
			}
			err = txn.Rcpt(ctx, tc.rcpt)
			if tc.rcptErr != "" {
				if err == nil || !strings.HasPrefix(asReply(t, err).Error(), tc.rcptErr) {
					t.Fatalf("Rcpt: %v, want %s", err, tc.rcptErr)
				}
				txn.Abort()
				return
			}
			if err != nil {
				t.Fatalf("Rcpt: %v", err)
			}
			res, err := txn.Data(ctx, []byte("Subject: x\r\n\r\n"), strings.NewReader("hello\r\n"), int64(len("hello\r\n")))
			if err != nil || res.QueueID != "PIPE1" {
				t.Fatalf("Data: %+v, %v", res, err)
			}
		})
	}
}

func TestXCLIENT(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := "plaintext"
		if tlsOn {
			name = "STARTTLS"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("")
			ehlo := ehloXclient
			var srvTLS *tls.Config
			if tlsOn {
				cert, _ := testCert(t)
				srvTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				cfg.TLS.Mode = modeRequired
				ehlo = strings.Replace(ehlo, "250 8BITMIME", "250-8BITMIME\r\n250 STARTTLS", 1)
			}
			e := newEnv(t)
			b := newIdentityBackend(t, ehlo, srvTLS, func(l string) string {
				if strings.HasPrefix(l, "XCLIENT") {
					return "220 identity.test ESMTP"
				}
				return ""
			})
			cfg.Servers = []string{b.addr}
			p := e.pool(cfg)
			for range 2 {
				if _, err := sendAs(t, p, oddClient); err != nil {
					t.Fatal(err)
				}
			}
			// PROTO ESMTPS is sent as ESMTP (Postfix: "501 Bad PROTO
			// syntax: ESMTPS"), SOURCE and the attributes we do not know
			// are left out; EHLO again after the 220, as the client.
			x := "XCLIENT NAME=mail.example.org ADDR=192.0.2.7 PORT=4711 PROTO=ESMTP HELO=odd+2Bhelo+3Dx"
			want := []string{"EHLO gw.test", x, "EHLO odd+helo=x", "MAIL FROM:<a@client.test> BODY=8BITMIME", "QUIT"}
			if tlsOn {
				want = append([]string{"EHLO gw.test", "STARTTLS"}, want...)
			}
			// A connection that sent XCLIENT carries one transaction.
			eventually(t, "both connections closed", func() bool {
				return len(b.commands(0, "QUIT")) == 1 && len(b.commands(1, "QUIT")) == 1
			})
			for i := range 2 {
				if got := b.commands(i, "EHLO", "STARTTLS", "XCLIENT", "MAIL", "QUIT"); !slices.Equal(got, want) {
					t.Errorf("connection %d:\n%q\nwant\n%q", i, got, want)
				}
			}
			if st := p.Stats(); st.Dials != 2 {
				t.Errorf("stats %+v, want a new connection per XCLIENT transaction", st)
			}
		})
	}
}

func TestXCLIENTRefused(t *testing.T) {
	e := newEnv(t)
	b := newIdentityBackend(t, ehloXclient, nil, func(l string) string {
		if strings.HasPrefix(l, "XCLIENT") {
			return "550 5.7.0 Error: insufficient authorization"
		}
		return ""
	})
	p := e.pool(testConfig(b.addr))
	if _, err := sendAs(t, p, oddClient); err != nil {
		t.Fatalf("a refused XCLIENT failed the mail: %v", err)
	}
	want := []string{"EHLO gw.test", "XCLIENT NAME=mail.example.org ADDR=192.0.2.7 PORT=4711 PROTO=ESMTP HELO=odd+2Bhelo+3Dx",
		"MAIL FROM:<a@client.test> BODY=8BITMIME"}
	if got := b.commands(0, "EHLO", "XCLIENT", "MAIL"); !slices.Equal(got, want) {
		t.Errorf("commands:\n%q\nwant\n%q", got, want)
	}
}

func TestXtext(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"mx.example.org":  "mx.example.org",
		"a+b=c":           "a+2Bb+3Dc",
		"[UNAVAILABLE]":   "[UNAVAILABLE]",
		"sp ace\ttab\x7f": "sp+20ace+09tab+7F",
		"é":               "+C3+A9",
		"!~":              "!~",
	} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLongAttributes(t *testing.T) {
	long := strings.Repeat("h", 250) + ".test"
	id := &ClientIdentity{Addr: netip.MustParseAddr("192.0.2.7"), Port: 25, Name: strings.Repeat("n", 250), Helo: long[5:], Proto: "ESMTP"}
	names := "NAME ADDR PROTO HELO SOURCE PORT"

	lines := commandLines("XFORWARD", id.attrs(false, names))
	if len(lines) != 2 {
		t.Fatalf("XFORWARD lines %q, want 2", lines)
	}
	joined := strings.Join(lines, " ")
	for _, l := range lines {
		if len(l) > maxCmdLine || !strings.HasPrefix(l, "XFORWARD ") {
			t.Errorf("line of %d octets: %.40q...", len(l), l)
		}
	}
	for _, a := range []string{"NAME=" + id.Name, "HELO=" + id.Helo, "ADDR=192.0.2.7", "PORT=25", "PROTO=ESMTP", "SOURCE=REMOTE"} {
		if !strings.Contains(joined, a) {
			t.Errorf("%.20q... missing", a)
		}
	}

	// XCLIENT is one line: the longest value gives way.
	x := fitOneLine("XCLIENT", id.attrs(true, names))
	if len(x) > maxCmdLine || !strings.Contains(x, "HELO=[UNAVAILABLE]") || !strings.Contains(x, "NAME="+id.Name) {
		t.Errorf("XCLIENT line (%d octets) %q", len(x), x)
	}

	// A value over 255 octets once encoded is not sent at all.
	id.Helo = strings.Repeat("+", 100)
	if got := commandLines("XFORWARD", id.attrs(false, "HELO")); !slices.Equal(got, []string{"XFORWARD HELO=[UNAVAILABLE]"}) {
		t.Errorf("got %q", got)
	}
}

func TestClientIdentityOf(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name string
		c    verdict.Client
		want ClientIdentity
	}{
		{"confirmed", verdict.Client{IP: "192.0.2.7", Port: 4711, PTR: "mail.example.org.", FCrDNS: &yes, Helo: "h"},
			ClientIdentity{Addr: netip.MustParseAddr("192.0.2.7"), Port: 4711, Name: "mail.example.org", Helo: "h", Proto: "ESMTP"}},
		{"not confirmed", verdict.Client{IP: "192.0.2.7", Port: 1, PTR: "forged.example.org", FCrDNS: &no, Helo: "h"},
			ClientIdentity{Addr: netip.MustParseAddr("192.0.2.7"), Port: 1, Name: unavailable, Helo: "h", Proto: "ESMTP"}},
		{"not checked, TLS", verdict.Client{IP: "2001:db8::1", Port: 2, PTR: "x.test", TLS: &verdict.TLS{Version: "TLS 1.3"}},
			ClientIdentity{Addr: netip.MustParseAddr("2001:db8::1"), Port: 2, Name: unavailable, Proto: "ESMTPS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClientIdentityOf(tc.c); *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func TestClientIdentityConfig(t *testing.T) {
	if _, err := New("gw.test", config.Backend{Servers: []string{"127.0.0.1:25"}, ClientIdentity: "sometimes"}, nil); err == nil {
		t.Error("New took client_identity \"sometimes\"")
	}
	p, err := New("gw.test", config.Backend{Servers: []string{"127.0.0.1:25"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.cfg.ClientIdentity != identityAuto {
		t.Errorf("default client_identity %q, want auto", p.cfg.ClientIdentity)
	}
}

func TestXCLIENTOwnHelo(t *testing.T) {
	// With no usable HELO of the client's, the EHLO after XCLIENT is the
	// gateway's own.
	for _, helo := range []string{"", "two words"} {
		e := newEnv(t)
		b := newIdentityBackend(t, ehloXclient, nil, func(l string) string {
			if strings.HasPrefix(l, "XCLIENT") {
				return "220 identity.test ESMTP"
			}
			return ""
		})
		p := e.pool(testConfig(b.addr))
		id := *oddClient
		id.Helo = helo
		if _, err := sendAs(t, p, &id); err != nil {
			t.Fatal(err)
		}
		if got := b.commands(0, "EHLO"); !slices.Equal(got, []string{"EHLO gw.test", "EHLO gw.test"}) {
			t.Errorf("HELO %q: EHLOs %q", helo, got)
		}
	}
}
