package server

import (
	"bufio"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
	"go.yaml.in/yaml/v3"
)

// dialFrom connects from a chosen loopback address (any 127/8 address is
// this host's), to be a client the test zones list or name.
func (h *harness) dialFrom(ip string) *client {
	h.t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h.t.Cleanup(func() { c.Close() })
	return &client{t: h.t, c: c, r: bufio.NewReader(c)}
}

const dnsblRule = `
- name: dnsbl-reject
  if: { dnsbl.score: ">= 10" }
  action: reject
  reply: 554 5.7.1 Service unavailable; client [{client.ip}] {dnsbl.reason}
`

func withDNSBL(c *config.Config) {
	c.Checks.DNSBL.Zones = []config.DNSBLZone{{Zone: "bl.test", Name: "test-bl", Weight: 10}}
}

// TestDNSBLRejectAtRcpt: a client the test zone lists (127.0.0.2, RFC 5782)
// is refused at its first RCPT with the list named, never the zone; the
// record carries every check's result and the client's reverse DNS.
func TestDNSBLRejectAtRcpt(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, dnsblRule, policy.Options{}, withDNSBL))
	cl := h.dialFrom("127.0.0.2")
	cl.expect("220 ")
	cl.send("EHLO dialup.example.test")
	cl.expect("250 ")
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	refOf(t, cl.expect("554 5.7.1 Service unavailable; client [127.0.0.2] listed by test-bl (127.0.0.2) (ref "))
	cl.send("QUIT")
	rec := h.recs.wait(t, 1)[0]
	names := map[string]string{}
	for _, c := range rec.Checks {
		names[c.Name] = c.Result
	}
	if names["dnsbl"] != "listed" || names["fcrdns"] == "" || names["helo"] == "" || rec.Facts["dnsbl.score"] != 10.0 {
		t.Fatalf("checks %+v facts %v", rec.Checks, rec.Facts)
	}
	if strings.Contains(strings.ToLower(rec.Reply.Text), "bl.test") {
		t.Fatalf("the zone itself leaked into the reply: %q", rec.Reply.Text)
	}
	if n := h.sink.Stats().Conns; n != 0 {
		t.Fatalf("the backend was contacted for a listed client (%d connections)", n)
	}
}

// TestCleanClientRecord: 127.0.0.5 has forward-confirmed reverse DNS in the
// test zones; the record and the Received header say so.
func TestCleanClientRecord(t *testing.T) {
	h := newHarness(t, sink.Config{}, withRules(t, dnsblRule, policy.Options{}, withDNSBL))
	cl := h.dialFrom("127.0.0.5")
	cl.expect("220 ")
	cl.send("EHLO mail.example.test")
	cl.expect("250 ")
	cl.startData("bob@ours.test")
	cl.write("Subject: hi\r\n\r\nx\r\n.\r\n")
	cl.expect("250 ")
	rec := h.recs.wait(t, 1)[0]
	if rec.Client.PTR != "mail.example.test" || rec.Client.FCrDNS == nil || !*rec.Client.FCrDNS {
		t.Fatalf("client %+v", rec.Client)
	}
	if data := string(h.sink.Accepted()[0].Data); !strings.HasPrefix(data, "Received: from mail.example.test (mail.example.test [127.0.0.5])") {
		t.Fatalf("Received: %q", data[:80])
	}
}

func TestRateLimits(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) {
		c.Checks.RateLimit.Messages = config.Rate{Limit: 2, Per: time.Hour}
		c.Checks.RateLimit.Recipients = config.Rate{Limit: 3, Per: time.Hour}
	})
	cl := h.greet()
	for i := range 2 {
		cl.send("MAIL FROM:<a@example.test>")
		cl.expect("250 ")
		cl.send("RCPT TO:<bob@ours.test>")
		if i == 1 {
			cl.expect("250 ")
			cl.send("RCPT TO:<carol@ours.test>")
			cl.expect("250 ")
			cl.send("RCPT TO:<dave@ours.test>")
			refOf(t, cl.expect("451 4.7.1 Too many recipients from your network"))
		} else {
			cl.expect("250 ")
		}
		cl.send("RSET")
		cl.expect("250 ")
	}
	// The message limit is taken at the first RCPT that got past
	// greylisting, so deferred attempts never cost a sender anything.
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	refOf(t, cl.expect("451 4.7.1 Too many messages from your network"))
}

// TestPregreetEnforce: a client that talks before the banner goes on, but
// its transaction is refused at the first RCPT, envelope recorded.
func TestPregreetEnforce(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) {
		c.Checks.Pregreet = config.Pregreet{Wait: 300 * time.Millisecond, Action: "enforce"}
	})
	cl := h.dial()
	cl.send("EHLO eager.example.test") // before the banner
	cl.expect("220 ")
	cl.expect("250 ")
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	refOf(t, cl.expect("550 5.5.1 Protocol error: you talked before the greeting"))
	cl.send("QUIT")
	if rec := h.recs.wait(t, 1)[0]; rec.Reason != policy.ReasonPregreet || rec.Facts["pregreet"] != "early" {
		t.Fatalf("record %+v", rec)
	}
}

func TestConnectionRateLimit(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) {
		c.Checks.RateLimit.Connections = config.Rate{Limit: 2, Per: time.Hour}
	})
	h.dial().expect("220 ")
	h.dial().expect("220 ")
	refOf(t, h.dial().expect("421 4.7.0 Too many connections from your network, slow down"))
	if rec := h.recs.wait(t, 1)[0]; rec.Reason != policy.ReasonRateLimit || rec.Action != policy.ActionTempfail {
		t.Fatalf("record %+v", rec)
	}
}

// TestIPListsShippedRules: lists named allow and deny work with the rules
// shipped in rules/default.yaml.
func TestIPListsShippedRules(t *testing.T) {
	h := newHarness(t, sink.Config{}, withDefaultRules(t, func(c *config.Config) {
		c.Checks.IPLists = []config.IPList{{Name: "deny", CIDRs: []string{"127.0.0.66/32"}}}
	}))
	cl := h.dialFrom("127.0.0.66")
	cl.expect("220 ")
	cl.send("EHLO mail.example.test")
	cl.expect("250 ")
	cl.send("MAIL FROM:<a@example.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("554 5.7.1 Access denied for your network (ref ")
	ok := h.greet() // 127.0.0.1 is in no list
	ok.startData("bob@ours.test")
	ok.write("From: a@example.test\r\nSubject: x\r\n\r\nx\r\n.\r\n")
	ok.expect("250 ")
}

// withDefaultRules loads the shipped rules/default.yaml, as a loaded
// configuration would.
func withDefaultRules(t *testing.T, more func(*config.Config)) func(*config.Config) {
	data, err := os.ReadFile("../rules/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	out, _ := yaml.Marshal(doc.Content[0].Content[1]) // the "rules:" list
	return withRules(t, string(out), policy.Options{}, more)
}

// TestDMARCRejectsSpoof: example.test publishes p=reject; a message whose
// From claims it, sent with an unrelated envelope sender and no signature,
// is refused at DATA with 5.7.26, under the shipped rules.
func TestDMARCRejectsSpoof(t *testing.T) {
	h := newHarness(t, sink.Config{}, withDefaultRules(t, nil))
	cl := h.greet()
	cl.send("MAIL FROM:<bounce@other.test>")
	cl.expect("250 ")
	cl.send("RCPT TO:<bob@ours.test>")
	cl.expect("250 ")
	cl.send("DATA")
	cl.expect("354 ")
	cl.write("From: CEO <ceo@example.test>\r\nSubject: pay now\r\n\r\nx\r\n.\r\n")
	refOf(t, cl.expect("550 5.7.26 Unauthenticated mail from example.test is refused by its DMARC policy"))
	rec := h.recs.wait(t, 1)[0]
	if rec.Facts["dmarc"] != "fail" || rec.Facts["dmarc.policy"] != "reject" || len(h.sink.Accepted()) != 0 {
		t.Fatalf("facts %v", rec.Facts)
	}
}

// TestAuthenticationResults: an aligned message passes SPF and DMARC and
// reaches the backend with our Authentication-Results first; a forged one
// claiming our authserv-id is removed, another server's is kept.
func TestAuthenticationResults(t *testing.T) {
	h := newHarness(t, sink.Config{}, withDefaultRules(t, nil))
	got := transaction(h, "bob@ours.test", "Authentication-Results: MX.OURS.TEST; dmarc=pass header.from=bank.test\r\n"+
		"Authentication-Results: relay.example.net; spf=pass\r\nFrom: a@example.test\r\nSubject: hi\r\n\r\nx\r\n")
	if !strings.HasPrefix(got, "250 ") {
		t.Fatalf("got %q", got)
	}
	data := string(h.sink.Accepted()[0].Data)
	if !strings.Contains(data, "\r\nAuthentication-Results: mx.ours.test;\r\n\tspf=pass") ||
		!strings.Contains(data, "dmarc=pass header.from=example.test") ||
		strings.Contains(data, "bank.test") || !strings.Contains(data, "Authentication-Results: relay.example.net; spf=pass") {
		t.Fatalf("backend got:\n%s", data)
	}
}

// TestReceivedLoop: more Received fields than limits.max_received is a mail
// loop: 554 5.4.6, before any content check.
func TestReceivedLoop(t *testing.T) {
	h := newHarness(t, sink.Config{}, func(c *config.Config) { c.Limits.MaxReceived = 3 })
	hdr := strings.Repeat("Received: from a by b; Sun, 22 Nov 2026 12:00:00 +0000\r\n", 4)
	got := transaction(h, "bob@ours.test", hdr+"From: a@example.test\r\n\r\nx\r\n")
	if !strings.HasPrefix(got, "554 5.4.6 Too many Received header fields: mail loop") {
		t.Fatalf("got %q", got)
	}
}
