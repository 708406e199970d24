package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/internal/sink"
)

// startSink starts a backend that is closed when the test ends.
func startSink(t *testing.T, cfg sink.Config) *sink.Server {
	t.Helper()
	s, err := sink.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runJSON runs the command with -json and decodes its report.
func runJSON(t *testing.T, ctx context.Context, args ...string) (int, *report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append(args, "-json"), &stdout, &stderr)
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q: %v", code, stdout.String(), stderr.String(), err)
	}
	return code, &rep, stderr.String()
}

// writeKey writes key as PEM in PKCS#8 (or PKCS#1 for an RSA key when
// pkcs1) and returns the file and the DKIM TXT record of its public half.
func writeKey(t *testing.T, key crypto.Signer, pkcs1 bool) (path, txt string) {
	t.Helper()
	var block *pem.Block
	if pkcs1 {
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	path = filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		txt = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		txt = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	return path, txt
}

// verifyDKIM checks msg's one signature against the record txt, published
// (as far as the verifier knows) at selector._domainkey.domain.
func verifyDKIM(msg []byte, selector, domain, txt string) error {
	want := selector + "._domainkey." + domain
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name != want {
				return nil, fmt.Errorf("lookup of %q, want %q", name, want)
			}
			return []string{txt}, nil
		},
	})
	if err != nil {
		return err
	}
	if len(vs) != 1 {
		return fmt.Errorf("%d signatures, want 1", len(vs))
	}
	if vs[0].Domain != domain {
		return fmt.Errorf("d=%s, want %s", vs[0].Domain, domain)
	}
	return vs[0].Err
}

// TestAgainstSink runs the generator against the project's test backend and
// checks that every message arrived intact (and verifies, when signed).
func TestAgainstSink(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, txt := writeKey(t, priv, false)
	const n, warmup, size = 50, 3, 2000
	for _, perConn := range []int{1, 5} {
		for _, signed := range []bool{false, true} {
			t.Run(fmt.Sprintf("per-conn=%d/dkim=%v", perConn, signed), func(t *testing.T) {
				s := startSink(t, sink.Config{})
				args := []string{"-addr", s.Addr(), "-c", "4", "-n", strconv.Itoa(n),
					"-size", strconv.Itoa(size), "-per-conn", strconv.Itoa(perConn),
					"-warmup", strconv.Itoa(warmup), "-helo", "h.example.test", "-timeout", "10s"}
				if signed {
					args = append(args, "-dkim-key", keyFile)
				}
				code, rep, stderr := runJSON(t, context.Background(), args...)
				if code != exitOK || rep.OK != n || rep.Sent != n || rep.Fail != 0 || len(rep.FailByCode) != 0 {
					t.Fatalf("exit %d, report %+v, stderr %q", code, rep, stderr)
				}
				if rep.SessionP50Ms <= 0 || rep.SessionMaxMs < rep.SessionP99Ms || rep.DataP50Ms <= 0 ||
					rep.DataMaxMs > rep.SessionMaxMs || rep.MsgsPerSec <= 0 {
					t.Errorf("implausible latencies: %+v", rep)
				}
				if err := s.WaitIdle(5 * time.Second); err != nil {
					t.Error(err) // every session must end with QUIT and close
				}
				checkReceived(t, s, rep, n+warmup, perConn, size)
				if signed {
					for _, m := range s.Accepted()[:3] {
						if err := verifyDKIM(m.Data, "bench", "example.test", txt); err != nil {
							t.Errorf("%s: DKIM: %v", m.ID, err)
						}
					}
				}
			})
		}
	}
}

// TestPaced offers a fixed rate: every message arrives, none is sent
// before it is due, so the phase lasts at least until the last one was
// due, and the rate is echoed in the report.
func TestPaced(t *testing.T) {
	const n, rate = 40, 200.0
	for _, perConn := range []int{1, 4} {
		t.Run(fmt.Sprintf("per-conn=%d", perConn), func(t *testing.T) {
			s := startSink(t, sink.Config{})
			code, rep, stderr := runJSON(t, context.Background(), "-addr", s.Addr(), "-c", "3",
				"-n", strconv.Itoa(n), "-warmup", "0", "-rate", "200", "-per-conn", strconv.Itoa(perConn), "-timeout", "10s")
			if code != exitOK || rep.OK != n || rep.Flags.Rate != rate {
				t.Fatalf("exit %d, report %+v, stderr %q", code, rep, stderr)
			}
			// Message n-1 is due (n-1)/rate after the start.
			if min := float64(n-1) / rate; rep.Secs < min {
				t.Errorf("the run took %.3f s, but the last message was due only after %.3f s", rep.Secs, min)
			}
			if rep.SessionP50Ms <= 0 || rep.SessionMaxMs < rep.SessionP99Ms {
				t.Errorf("implausible latencies: %+v", rep)
			}
			if err := s.WaitIdle(5 * time.Second); err != nil {
				t.Error(err)
			}
			if got := len(s.Accepted()); got != n {
				t.Errorf("sink accepted %d messages, want %d", got, n)
			}
		})
	}
}

func checkReceived(t *testing.T, s *sink.Server, rep *report, total, perConn, size int) {
	t.Helper()
	ms := s.Accepted()
	if len(ms) != total || len(s.Messages()) != total {
		t.Fatalf("sink accepted %d of %d messages, want %d", len(ms), len(s.Messages()), total)
	}
	first := ms[0].Data
	if d := len(first) - size; d < -2 || d > 2 || rep.MessageBytes != len(first) {
		t.Errorf("message of %d bytes (report: %d), want about %d", len(first), rep.MessageBytes, size)
	}
	if !bytes.Contains(first, []byte("\r\n.This line starts with a dot")) {
		t.Errorf("the dot-leading line did not arrive unstuffed")
	}
	for _, m := range ms {
		if !bytes.Equal(m.Data, first) || m.From != "sender@example.test" ||
			len(m.Rcpts) != 1 || m.Rcpts[0] != "user@dest.test" || m.Helo != "h.example.test" ||
			m.MailParams != "SIZE="+strconv.Itoa(len(first)) {
			t.Fatalf("message %s: from %q rcpts %q helo %q params %q, %d bytes",
				m.ID, m.From, m.Rcpts, m.Helo, m.MailParams, len(m.Data))
		}
	}
	conns := s.Stats().Conns
	if perConn == 1 && (conns != total || rep.Conns != rep.Sent) {
		t.Errorf("%d connections (report: %d) for %d messages, want one each", conns, rep.Conns, total)
	}
	// Each of the 4 workers may end one connection early in each phase.
	if max := total/perConn + 2*4; perConn > 1 && conns > max {
		t.Errorf("%d connections for %d messages at %d per connection, want at most %d", conns, total, perConn, max)
	}
}

// TestFailuresCounted makes the backend refuse some messages and checks
// the counts by code, the exit status and that reused sessions go on.
func TestFailuresCounted(t *testing.T) {
	for _, perConn := range []int{1, 5} {
		t.Run(fmt.Sprintf("per-conn=%d", perConn), func(t *testing.T) {
			var datas, rcpts atomic.Int64
			s := startSink(t, sink.Config{
				OnRcpt: func(string, string) *sink.Reply {
					if rcpts.Add(1)%7 == 0 {
						return &sink.Reply{Code: 550, Text: "5.1.1 No such user"}
					}
					return nil
				},
				OnData: func(*sink.Message) *sink.Reply {
					if datas.Add(1)%5 == 0 {
						return &sink.Reply{Code: 451, Text: "4.3.0 Try again later"}
					}
					return nil
				},
			})
			const n = 40
			code, rep, stderr := runJSON(t, context.Background(), "-addr", s.Addr(), "-c", "3", "-n", strconv.Itoa(n),
				"-warmup", "0", "-size", "500", "-per-conn", strconv.Itoa(perConn))
			rejected, deferred := int(rcpts.Load()/7), int(datas.Load()/5)
			if code != exitFailures || rep.Sent != n || rep.OK != n-rejected-deferred ||
				rep.FailByCode["550"] != rejected || rep.FailByCode["451"] != deferred || len(rep.FailByCode) != 2 {
				t.Fatalf("exit %d, report %+v; the sink refused %d at RCPT, deferred %d", code, rep, rejected, deferred)
			}
			if !strings.Contains(stderr, "RCPT: 550 5.1.1 No such user") || !strings.Contains(stderr, "end of data: 451 4.3.0 Try again later") {
				t.Errorf("stderr %q lacks the failure lines", stderr)
			}
			if len(s.Accepted()) != rep.OK {
				t.Errorf("sink accepted %d, report says ok=%d", len(s.Accepted()), rep.OK)
			}
			if err := s.WaitIdle(5 * time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestConnectionRefused counts dial failures as "io" and exits 1.
func TestConnectionRefused(t *testing.T) {
	s := startSink(t, sink.Config{})
	addr := s.Addr()
	s.Close()
	code, rep, stderr := runJSON(t, context.Background(), "-addr", addr, "-c", "2", "-n", "5", "-warmup", "0")
	if code != exitFailures || rep.Fail != 5 || rep.FailByCode["io"] != 5 || rep.OK != 0 {
		t.Fatalf("exit %d, report %+v", code, rep)
	}
	if !strings.Contains(stderr, "connect: ") {
		t.Errorf("stderr %q", stderr)
	}
}

// TestInterrupt stops a run whose server never answers the final dot: the
// report comes at once, well before -timeout, and the cut-short messages
// count neither as ok nor as failed.
func TestInterrupt(t *testing.T) {
	s := startSink(t, sink.Config{Hang: sink.PhaseEOD})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		s.WaitMessages(2, 5*time.Second)
		cancel()
	}()
	start := time.Now()
	code, rep, _ := runJSON(t, ctx, "-addr", s.Addr(), "-c", "2", "-n", "10", "-warmup", "0", "-timeout", "60s")
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %v after the interrupt", el)
	}
	if code != exitInterrupted || !rep.Interrupted || rep.Sent != 0 || rep.Fail != 0 {
		t.Errorf("exit %d, report %+v", code, rep)
	}
}

func TestHumanOutput(t *testing.T) {
	s := startSink(t, sink.Config{})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", s.Addr(), "-c", "2", "-n", "6", "-warmup", "1"}, &stdout, &stderr)
	out := stdout.String()
	if code != exitOK || !strings.HasPrefix(out, "sent=6 ok=6 fail=0 secs=") ||
		!strings.Contains(out, " msgs_per_sec=") || !strings.Contains(out, " session_p99_ms=") ||
		!strings.Contains(out, " data_max_ms=") || strings.Count(out, "\n") != 1 || stderr.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, stderr.String())
	}
}

func TestParseArgs(t *testing.T) {
	base := []string{"-addr", "127.0.0.1:2525"}
	tests := []struct {
		args    []string
		wantErr string // "" = valid
	}{
		{base, ""},
		{[]string{"-addr", "[::1]:25"}, ""},
		{[]string{"-addr", "127.9.8.7:25"}, ""},
		{[]string{"-addr", "[::ffff:127.0.0.1]:25"}, ""},
		{[]string{"-ports", "3"}, ""},
		{nil, "-addr is required"},
		{[]string{"-addr", "10.0.0.1:25"}, "not a loopback address"},
		{[]string{"-addr", "0.0.0.0:25"}, "not a loopback address"},
		{[]string{"-addr", "[::]:25"}, "not a loopback address"},
		{[]string{"-addr", "[2001:db8::1]:25"}, "not a loopback address"},
		{[]string{"-addr", "[fe80::1%lo]:25"}, "not a loopback address"},
		{[]string{"-addr", "localhost:25"}, "not a name"},
		{[]string{"-addr", "mx.example.com:25"}, "not a name"},
		{[]string{"-addr", "127.0.0.1"}, "missing port"},
		{[]string{"-addr", "127.0.0.1:smtp"}, "-addr"},
		{[]string{"-addr", "127.0.0.1:0"}, "port 0"},
		{append(base, "-c", "0"), "-c 0"},
		{append(base, "-n", "0"), "-n 0"},
		{append(base, "-per-conn", "0"), "-per-conn 0"},
		{append(base, "-size", "-1"), "-size -1"},
		{append(base, "-size", "100000000"), "at most"},
		{append(base, "-warmup", "-1"), "-warmup -1"},
		{append(base, "-timeout", "0s"), "-timeout"},
		{append(base, "-rate", "250.5"), ""},
		{append(base, "-rate", "-1"), "-rate -1"},
		{append(base, "-rate", "NaN"), "-rate NaN"},
		{append(base, "-rate", "2e6"), "up to 1000000"},
		{append(base, "-from", "no-at-sign"), "local@domain"},
		{append(base, "-to", "a b@example.test"), "not allowed"},
		{append(base, "-to", "a@x\r\nRSET"), "not allowed"},
		{append(base, "-helo", ""), "empty"},
		{append(base, "-dkim-domain", "example.test"), "needs -dkim-key"},
		{append(base, "-dkim-key", "k.pem", "-dkim-selector", "a;b"), "not a domain name"},
		{append(base, "extra"), "unexpected argument"},
		{append(base, "-bogus"), "-bogus"},
		{[]string{"-ports", "-1"}, "-ports"},
	}
	for _, tc := range tests {
		var stderr bytes.Buffer
		cfg, err := parseArgs(tc.args, &stderr)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("%q: accepted: %+v", tc.args, cfg)
		case tc.wantErr != "" && !strings.Contains(stderr.String(), tc.wantErr):
			t.Errorf("%q: stderr %q, want it to mention %q", tc.args, stderr.String(), tc.wantErr)
		}
	}
}

// TestUsageErrorsExit2 runs the command with arguments that must stop it
// before it sends anything.
func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	for _, args := range [][]string{
		{"-addr", "192.0.2.1:25"},
		{"-addr", "127.0.0.1:25", "-dkim-key", filepath.Join(dir, "missing.pem")},
		{"-addr", "127.0.0.1:25", "-dkim-key", bad},
		{"-n", "x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage || stdout.Len() != 0 || stderr.Len() == 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != exitOK || !strings.Contains(stderr.String(), "usage: load -addr") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr.String())
	}
}

// TestKeys loads every supported key format, signs with it and verifies;
// other keys are refused.
func TestKeys(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	msg := buildMessage("a@example.test", "b@dest.test", 1000, time.Now())
	for _, tc := range []struct {
		name  string
		key   crypto.Signer
		pkcs1 bool
	}{{"ed25519-pkcs8", edKey, false}, {"rsa-pkcs8", rsaKey, false}, {"rsa-pkcs1", rsaKey, true}} {
		path, txt := writeKey(t, tc.key, tc.pkcs1)
		key, err := loadKey(path)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		signed, err := signMessage(msg, key, "example.test", "sel")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err := verifyDKIM(signed, "sel", "example.test", txt); err != nil {
			t.Errorf("%s: verify: %v", tc.name, err)
		}
		// A different key must not verify, or the check above proves nothing.
		_, other := writeKey(t, must(ed25519.GenerateKey(rand.Reader)), false)
		if err := verifyDKIM(signed, "sel", "example.test", other); err == nil {
			t.Errorf("%s: verified with the wrong key", tc.name)
		}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path, _ := writeKey(t, ecKey, false)
	if _, err := loadKey(path); err == nil || !strings.Contains(err.Error(), "RSA or Ed25519") {
		t.Errorf("ECDSA key: %v", err)
	}
}

func must(_ ed25519.PublicKey, k ed25519.PrivateKey, err error) ed25519.PrivateKey {
	if err != nil {
		panic(err)
	}
	return k
}

// TestSignedSize checks that -size counts the DKIM-Signature.
func TestSignedSize(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path, txt := writeKey(t, key, false)
	for _, size := range []int{1000, 4096, 20000} {
		cfg, err := parseArgs([]string{"-addr", "127.0.0.1:25", "-size", strconv.Itoa(size), "-dkim-key", path}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := prepareMessage(cfg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if d := len(msg) - size; d < -2 || d > 2 {
			t.Errorf("-size %d: signed message of %d bytes", size, len(msg))
		}
		if err := verifyDKIM(msg, "bench", "example.test", txt); err != nil {
			t.Errorf("-size %d: %v", size, err)
		}
		checkLines(t, msg)
	}
}

// checkLines asserts that msg is CRLF-ended ASCII lines of at most 998
// characters (RFC 5322 §2.1.1), body lines of at most 78.
func checkLines(t *testing.T, msg []byte) {
	t.Helper()
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Errorf("message does not end with CRLF")
	}
	inBody := false
	for i, l := range strings.Split(strings.TrimSuffix(string(msg), "\r\n"), "\r\n") {
		if strings.ContainsAny(l, "\r\n") || len(l) > 998 || (inBody && len(l) > 78) {
			t.Errorf("line %d: %q", i+1, l)
		}
		for _, r := range l {
			if r >= 0x7f || (r < ' ' && r != '\t') {
				t.Errorf("line %d: character %q", i+1, r)
			}
		}
		inBody = inBody || l == ""
	}
}

func TestBuildMessage(t *testing.T) {
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	small := len(buildMessage("s@example.test", "u@dest.test", 0, date))
	for _, size := range []int{0, 100, small, small + 1, small + 2, small + 3, 300, 301, 302, 1000, 4096, 100000} {
		msg := buildMessage("s@example.test", "u@dest.test", size, date)
		if want := max(size, small); len(msg) != want {
			t.Errorf("-size %d: %d bytes, want %d", size, len(msg), want)
		}
		checkLines(t, msg)
		head, _, ok := strings.Cut(string(msg), "\r\n\r\n")
		if !ok {
			t.Fatalf("-size %d: no header/body separator", size)
		}
		for _, h := range []string{"Date: Fri, 02 Jan 2026 03:04:05 +0000", "From: <s@example.test>", "To: <u@dest.test>",
			"Subject: ", "Message-ID: <load@example.test>", "MIME-Version: 1.0", "Content-Type: text/plain"} {
			if !strings.Contains(head, h) {
				t.Errorf("-size %d: header lacks %q", size, h)
			}
		}
	}
	if big := buildMessage("s@example.test", "u@dest.test", 4096, date); !bytes.Contains(big, []byte("\r\n.This")) {
		t.Errorf("no line starts with a dot")
	}
}

func TestDotStuff(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\n", "a\r\n.\r\n"},
		{"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"..x\r\n.\r\nend\r\n", "...x\r\n..\r\nend\r\n.\r\n"},
		{"a.b\r\n. \r\n", "a.b\r\n.. \r\n.\r\n"},
		{"no final break", "no final break\r\n.\r\n"},
		{"", ".\r\n"},
	} {
		if got := string(dotStuff([]byte(tc.in))); got != tc.want {
			t.Errorf("dotStuff(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, tc := range []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{s, 0.5, 50}, {s, 0.9, 90}, {s, 0.99, 99}, {s, 1, 100},
		{s[:1], 0.5, 1}, {s[:1], 1, 1}, {s[:3], 0.5, 2}, {s[:3], 0.99, 3}, {nil, 0.5, 0},
	} {
		if got := percentile(tc.samples, tc.p); got != tc.want {
			t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tc.samples), tc.p, got, tc.want)
		}
	}
}

func TestPorts(t *testing.T) {
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"-ports", "3"}, &stdout, io.Discard); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	seen := map[int]bool{}
	for _, l := range strings.Fields(stdout.String()) {
		p, err := strconv.Atoi(l)
		if err != nil || p <= 0 || p > 65535 || seen[p] {
			t.Errorf("port %q (seen %v)", l, seen)
		}
		seen[p] = true
	}
	if len(seen) != 3 {
		t.Errorf("output %q, want 3 ports", stdout.String())
	}
}
