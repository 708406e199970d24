package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/internal/testutil"
	"github.com/mxgate/mxgate/policy"
)

// tlsFiles is a certificate and key as PEM files, as certbot leaves them.
type tlsFiles struct {
	cert, key string
	bump      int // makes every write a new modification time
}

func newTLSFiles(t testing.TB) *tlsFiles {
	dir := t.TempDir()
	return &tlsFiles{cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem")}
}

func (f *tlsFiles) config() config.TLS { return config.TLS{Cert: f.cert, Key: f.key} }

// write puts c's certificate and key in the files.
func (f *tlsFiles) write(t testing.TB, c *testutil.Cert) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.TLS.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	f.writeRaw(t,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.TLS.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// writeRaw writes the files with the given contents and a modification
// time of their own, so a change is seen even on a coarse clock.
func (f *tlsFiles) writeRaw(t testing.TB, cert, key []byte) {
	t.Helper()
	f.bump++
	mtime := time.Now().Add(time.Duration(f.bump) * time.Second)
	for _, w := range []struct {
		path string
		data []byte
	}{{f.cert, cert}, {f.key, key}} {
		if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(w.path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// tlsHarness is a gateway offering STARTTLS with a certificate for
// mx.ours.test.
func tlsHarness(t *testing.T) (*harness, *testutil.Cert, *tlsFiles) {
	t.Helper()
	cert := testutil.SelfSigned(t, "mx.ours.test")
	files := newTLSFiles(t)
	files.write(t, cert)
	h := newHarness(t, standardSink(), func(c *config.Config) { c.TLS = files.config() })
	return h, cert, files
}

// startTLS sends STARTTLS on a greeted client and runs the handshake;
// the returned client talks over TLS.
func (cl *client) startTLS(cfg *tls.Config) (*client, error) {
	cl.t.Helper()
	cl.send("STARTTLS")
	return cl.handshake(cfg)
}

// handshake reads the 220 to a STARTTLS already sent and runs the
// handshake.
func (cl *client) handshake(cfg *tls.Config) (*client, error) {
	cl.t.Helper()
	cl.expect("220 ")
	if n := cl.r.Buffered(); n != 0 {
		b, _ := cl.r.Peek(n)
		cl.t.Fatalf("%d bytes after the 220 of STARTTLS, before the handshake: %q", n, b)
	}
	tc := tls.Client(cl.c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return &client{t: cl.t, c: tc, r: bufio.NewReader(tc)}, nil
}

func clientTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: "mx.ours.test"}
}

func hasLine(lines []string, ext string) bool {
	for _, l := range lines {
		if len(l) > 4 && strings.EqualFold(l[4:], ext) {
			return true
		}
	}
	return false
}

// TestSTARTTLSTransaction: STARTTLS is offered, the handshake works with a
// verifying client, and a message sent over TLS carries the TLS details in
// its Received header and in its verdict record.
func TestSTARTTLSTransaction(t *testing.T) {
	h, cert, _ := tlsHarness(t)
	cl := h.dial()
	cl.expect("220 ")
	cl.send("EHLO client.example.test")
	ehlo := cl.reply()
	if !hasLine(ehlo, "STARTTLS") {
		t.Fatalf("EHLO reply does not offer STARTTLS: %q", ehlo)
	}
	tc, err := cl.startTLS(clientTLS(cert.Pool))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	cs := tc.c.(*tls.Conn).ConnectionState()
	if cs.Version != tls.VersionTLS13 {
		t.Fatalf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
	}
	tc.send("EHLO client.example.test")
	ehlo = tc.reply()
	if !strings.HasPrefix(ehlo[len(ehlo)-1], "250 ") {
		t.Fatalf("EHLO after STARTTLS: %q", ehlo)
	}
	if hasLine(ehlo, "STARTTLS") || !hasLine(ehlo, "REQUIRETLS") {
		t.Fatalf("EHLO after STARTTLS: want REQUIRETLS and no STARTTLS: %q", ehlo)
	}
	tc.startData("bob@ours.test")
	// A body of a few TLS records' worth: any processing of the stream
	// below TLS (bare-CR counting, protocol checks) sees ciphertext, full
	// of CRs and LFs, and would refuse it.
	tc.write("From: a@example.test\r\nSubject: over TLS\r\n\r\n" + strings.Repeat("hello over TLS, line after line\r\n", 200) + ".\r\n")
	tc.expect("250 ")
	tc.send("QUIT")
	tc.expect("221 ")

	msgs, err := h.sink.WaitMessages(1, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	data := string(msgs[0].Data)
	hdr, _, _ := strings.Cut(data, "\r\n\r\n")
	for _, want := range []string{"with ESMTPS", "(version=TLS 1.3 cipher=" + tls.CipherSuiteName(cs.CipherSuite) + ")"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("Received header lacks %q:\n%s", want, hdr)
		}
	}
	recs := h.recs.wait(t, 1)
	rec := recs[0]
	if rec.Client.TLS == nil || rec.Client.TLS.Version != "TLS 1.3" || rec.Client.TLS.Cipher != tls.CipherSuiteName(cs.CipherSuite) {
		t.Fatalf("record client.tls = %+v, want TLS 1.3 %s", rec.Client.TLS, tls.CipherSuiteName(cs.CipherSuite))
	}
	if rec.Facts["tls"] != true {
		t.Errorf("record fact tls = %v, want true", rec.Facts["tls"])
	}
}

// TestSTARTTLSPipelinedCommandDiscarded: a command sent in the same write
// as STARTTLS was in plaintext, open to injection by anyone on the path;
// it is discarded, never answered after the handshake (RFC 3207 §4.2,
// CVE-2011-0411).
func TestSTARTTLSPipelinedCommandDiscarded(t *testing.T) {
	h, cert, _ := tlsHarness(t)
	cl := h.greet()
	cl.write("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
	tc, err := cl.handshake(clientTLS(cert.Pool))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	tc.send("EHLO client.example.test")
	ehlo := tc.reply()
	if !strings.HasPrefix(ehlo[0], "250-Hello client.example.test") || !strings.HasPrefix(ehlo[len(ehlo)-1], "250 ") {
		t.Fatalf("first reply after the handshake is not the EHLO reply (the injected MAIL was answered?): %q", ehlo)
	}
	// No transaction was opened by the injected MAIL: a new one starts.
	tc.send("MAIL FROM:<a@example.test>")
	tc.expect("250 ")
	tc.send("RSET")
	tc.expect("250 ")
	tc.send("QUIT")
	tc.expect("221 ")
	for _, r := range h.recs.wait(t, 1) {
		if r.MailFrom != nil && strings.Contains(*r.MailFrom, "injected") {
			t.Fatalf("the injected MAIL FROM reached a record: %+v", r)
		}
	}
}

// tlsPeer makes a STARTTLS connection trusting pool and returns the
// certificate the gateway presented.
func tlsPeer(t *testing.T, h *harness, pool *x509.CertPool) *x509.Certificate {
	t.Helper()
	cl := h.greet()
	tc, err := cl.startTLS(clientTLS(pool))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	tc.send("QUIT")
	tc.expect("221 ")
	return tc.c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// TestTLSCertificateReload: a renewed certificate is picked up without a
// restart once the check interval has passed; a broken replacement keeps
// the previous certificate in use, and a later good one is picked up.
func TestTLSCertificateReload(t *testing.T) {
	old := certCheckInterval
	certCheckInterval = 50 * time.Millisecond
	t.Cleanup(func() { certCheckInterval = old })
	wait := func() { time.Sleep(3 * certCheckInterval) }

	h, first, files := tlsHarness(t)
	second := testutil.SelfSigned(t, "mx.ours.test", "renewed.ours.test")
	third := testutil.SelfSigned(t, "mx.ours.test", "third.ours.test")
	pool := x509.NewCertPool()
	for _, c := range []*testutil.Cert{first, second, third} {
		pool.AddCert(c.Leaf)
	}
	same := func(got, want *x509.Certificate, what string) {
		t.Helper()
		if got.SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Fatalf("%s: gateway presented serial %v (%v), want %v (%v)", what, got.SerialNumber, got.DNSNames, want.SerialNumber, want.DNSNames)
		}
	}
	same(tlsPeer(t, h, pool), first.Leaf, "at start")

	files.write(t, second)
	wait()
	same(tlsPeer(t, h, pool), second.Leaf, "after renewal")

	// A truncated certificate, then a certificate whose key does not match.
	files.writeRaw(t, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), []byte("garbage"))
	wait()
	same(tlsPeer(t, h, pool), second.Leaf, "after a broken renewal")
	keyDER, err := x509.MarshalPKCS8PrivateKey(first.TLS.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	files.writeRaw(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: third.TLS.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	wait()
	same(tlsPeer(t, h, pool), second.Leaf, "after a mismatched key")

	files.write(t, third)
	wait()
	same(tlsPeer(t, h, pool), third.Leaf, "after a good renewal")
}

// syncBuffer is a log sink safe for concurrent handshakes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// TestTLSCertLoaderWarnsOncePerVersion: the warning for files that do not
// load is logged once per version of the files, not at every check; the
// files are looked at no more often than the interval.
func TestTLSCertLoaderWarnsOncePerVersion(t *testing.T) {
	files := newTLSFiles(t)
	first := testutil.SelfSigned(t, "mx.ours.test")
	files.write(t, first)
	logs := &syncBuffer{}
	l, err := newCertLoader(files.cert, files.key, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.interval = time.Minute
	now := time.Now()
	serial := func() string { return l.cert.Load().Leaf.SerialNumber.String() }
	const warning = "do not load"

	second := testutil.SelfSigned(t, "mx.ours.test")
	files.write(t, second)
	l.maybeReload(now.Add(time.Second)) // within the interval: not looked at
	if serial() != first.Leaf.SerialNumber.String() {
		t.Fatal("files were read again within the check interval")
	}
	now = now.Add(2 * time.Minute)
	l.maybeReload(now)
	if serial() != second.Leaf.SerialNumber.String() || logs.count("TLS certificate reloaded") != 1 {
		t.Fatalf("renewal not loaded (serial %s), logs:\n%s", serial(), logs.b.String())
	}

	files.writeRaw(t, []byte("broken"), []byte("broken"))
	for range 3 {
		now = now.Add(2 * time.Minute)
		l.maybeReload(now)
	}
	if n := logs.count(warning); n != 1 {
		t.Fatalf("%d warnings for one broken version, want 1:\n%s", n, logs.b.String())
	}
	os.Remove(files.key) // another failed version: the key is gone
	for range 3 {
		now = now.Add(2 * time.Minute)
		l.maybeReload(now)
	}
	if n := logs.count(warning); n != 2 {
		t.Fatalf("%d warnings for two broken versions, want 2:\n%s", n, logs.b.String())
	}
	if serial() != second.Leaf.SerialNumber.String() {
		t.Fatal("a broken renewal replaced the certificate")
	}
	if !strings.Contains(logs.b.String(), files.key) {
		t.Errorf("the warning does not name the key file:\n%s", logs.b.String())
	}
}

// TestTLSBadPairFailsNew: a certificate and key that do not belong together
// are an error from New, naming both files.
func TestTLSBadPairFailsNew(t *testing.T) {
	a, b := testutil.SelfSigned(t, "mx.ours.test"), testutil.SelfSigned(t, "mx.ours.test")
	files := newTLSFiles(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(b.TLS.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	files.writeRaw(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.TLS.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	cfg := testConfig("127.0.0.1:1")
	cfg.TLS = files.config()
	srv, err := New(cfg, verdictWriter(&records{}), discardLog())
	if err == nil {
		srv.cancel()
		srv.rt.Load().close()
		t.Fatal("New accepted a certificate with a key that does not match")
	}
	if !strings.Contains(err.Error(), files.cert) || !strings.Contains(err.Error(), files.key) {
		t.Fatalf("error %q does not name both files", err)
	}
}

// TestSTARTTLSVersions: TLS 1.2 is accepted, TLS 1.1 is refused.
func TestSTARTTLSVersions(t *testing.T) {
	h, cert, _ := tlsHarness(t)

	cfg := clientTLS(cert.Pool)
	cfg.MaxVersion = tls.VersionTLS12
	tc, err := h.greet().startTLS(cfg)
	if err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	tc.send("QUIT")
	tc.expect("221 ")

	cfg = clientTLS(cert.Pool)
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := h.greet().startTLS(cfg); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 handshake: err = %v, want a protocol version alert", err)
	}
}

// TestREQUIRETLS (RFC 8689): the extension is offered only after
// STARTTLS; the parameter is refused in plaintext; and a message that
// carries it is relayed only over a backend connection whose certificate
// was verified and whose server offers REQUIRETLS, with the parameter
// passed on. Mail without it is unaffected by the backend's TLS.
func TestREQUIRETLS(t *testing.T) {
	backendCert := testutil.SelfSigned(t, "backend.ours.test")
	verified := config.BackendTLS{Mode: "required", CAFile: backendCert.CAFile, ServerName: "backend.ours.test", Verify: true}
	withREQUIRETLS := append(sink.DefaultExtensions(), "REQUIRETLS")
	for _, tc := range []struct {
		name        string
		backendTLS  bool              // the sink offers STARTTLS
		backendExts []string          // nil: sink defaults (no REQUIRETLS)
		relayTLS    config.BackendTLS // backend.tls
		param       bool              // MAIL FROM carries REQUIRETLS
		want        string            // reply to the first RCPT
		wantParams  string            // MAIL parameters the sink saw
	}{
		{name: "verified TLS to a REQUIRETLS backend", backendTLS: true, backendExts: withREQUIRETLS, relayTLS: verified, param: true, want: "250 ", wantParams: "REQUIRETLS"},
		{name: "backend in plaintext", param: true, relayTLS: config.BackendTLS{Mode: "none"}, want: "550 5.7.10 "},
		{name: "backend TLS not verified", backendTLS: true, backendExts: withREQUIRETLS, relayTLS: config.BackendTLS{Mode: "opportunistic"}, param: true, want: "550 5.7.10 "},
		{name: "backend without REQUIRETLS", backendTLS: true, relayTLS: verified, param: true, want: "550 5.7.30 "},
		{name: "no REQUIRETLS asked, unverified backend", backendTLS: true, relayTLS: config.BackendTLS{Mode: "opportunistic"}, want: "250 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := testutil.SelfSigned(t, "mx.ours.test")
			files := newTLSFiles(t)
			files.write(t, cert)
			sc := standardSink()
			sc.Extensions = tc.backendExts
			if tc.backendTLS {
				sc.TLS = backendCert.ServerConfig()
			}
			h := newHarness(t, sc, func(c *config.Config) {
				c.TLS = files.config()
				c.Backend.TLS = tc.relayTLS
			})
			tls, err := h.greet().startTLS(clientTLS(cert.Pool))
			if err != nil {
				t.Fatal(err)
			}
			tls.send("EHLO client.example.test")
			if ehlo := tls.reply(); !hasLine(ehlo, "REQUIRETLS") {
				t.Fatalf("EHLO after STARTTLS does not offer REQUIRETLS: %q", ehlo)
			}
			param := ""
			if tc.param {
				param = " REQUIRETLS"
			}
			tls.send("MAIL FROM:<alice@example.test>" + param)
			tls.expect("250 ")
			tls.send("RCPT TO:<bob@ours.test>")
			got := tls.expect(tc.want)
			if tc.want != "250 " {
				if !strings.Contains(got, "REQUIRETLS") {
					t.Errorf("refusal does not say why: %q", got)
				}
				tls.send("QUIT")
				tls.expect("221 ")
				rec := h.recs.wait(t, 1)[0]
				if rec.Action != policy.ActionReject || rec.Reason != policy.ReasonRequireTLS || !rec.RequireTLS {
					t.Errorf("record: action %s reason %s requiretls %v, want reject requiretls true", rec.Action, rec.Reason, rec.RequireTLS)
				}
				if n := h.sink.Stats().Messages; n != 0 {
					t.Errorf("sink got %d messages", n)
				}
				return
			}
			tls.send("DATA")
			tls.expect("354 ")
			tls.write("Subject: secret\r\n\r\nfor TLS only\r\n.\r\n")
			tls.expect("250 ")
			msgs, err := h.sink.WaitMessages(1, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(msgs[0].MailParams, "REQUIRETLS") != (tc.wantParams == "") {
				t.Errorf("backend MAIL parameters %q, want %q", msgs[0].MailParams, tc.wantParams)
			}
			if tc.param && !msgs[0].TLS {
				t.Error("REQUIRETLS message relayed without TLS")
			}
			if rec := h.recs.wait(t, 1)[0]; rec.RequireTLS != tc.param {
				t.Errorf("record requiretls = %v, want %v", rec.RequireTLS, tc.param)
			}
		})
	}
}

// TestREQUIRETLSPlaintext: before STARTTLS the extension is not offered,
// and a client that gives the parameter anyway is told to use STARTTLS.
func TestREQUIRETLSPlaintext(t *testing.T) {
	h, _, _ := tlsHarness(t)
	cl := h.dial()
	cl.expect("220 ")
	cl.send("EHLO client.example.test")
	if ehlo := cl.reply(); hasLine(ehlo, "REQUIRETLS") {
		t.Fatalf("REQUIRETLS offered in plaintext: %q", ehlo)
	}
	cl.send("MAIL FROM:<alice@example.test> REQUIRETLS")
	got := cl.expect("530 5.7.10 ")
	if !strings.Contains(got, "STARTTLS") || !strings.Contains(got, "(ref ") {
		t.Errorf("reply %q: want STARTTLS named and a ref", got)
	}
	cl.send("MAIL FROM:<alice@example.test>")
	cl.expect("250 ")
	cl.send("QUIT")
	cl.expect("221 ")
	rec := h.recs.wait(t, 1)[0]
	if rec.Reason != policy.ReasonRequireTLS || rec.Stage != policy.StageMail || !rec.RequireTLS {
		t.Errorf("record reason %s stage %s requiretls %v", rec.Reason, rec.Stage, rec.RequireTLS)
	}
}
