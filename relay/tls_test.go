package relay

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

func TestSTARTTLS(t *testing.T) {
	cert, caFile := testCert(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		name      string
		sinkTLS   bool
		tls       config.BackendTLS
		wantErr   *policy.Reply
		wantTLS   bool
		wantDials uint64 // for the first transaction
	}{
		{"none", true, config.BackendTLS{Mode: modeNone}, nil, false, 1},
		{"opportunistic", true, config.BackendTLS{Mode: modeOpportunistic}, nil, true, 2},
		{"opportunistic without STARTTLS", false, config.BackendTLS{Mode: modeOpportunistic}, nil, false, 1},
		{"opportunistic verify fails", true, config.BackendTLS{Mode: modeOpportunistic, Verify: true}, nil, false, 3},
		{"opportunistic verified", true, config.BackendTLS{Mode: modeOpportunistic, Verify: true, CAFile: caFile}, nil, true, 2},
		{"required", true, config.BackendTLS{Mode: modeRequired}, nil, true, 1},
		{"required verified", true, config.BackendTLS{Mode: modeRequired, Verify: true, CAFile: caFile}, nil, true, 1},
		{"required verified by name", true, config.BackendTLS{Mode: modeRequired, Verify: true, CAFile: caFile, ServerName: "backend.test"}, nil, true, 1},
		{"required wrong name", true, config.BackendTLS{Mode: modeRequired, Verify: true, CAFile: caFile, ServerName: "other.test"}, policy.ErrBackendDown, false, 1},
		{"required unknown CA", true, config.BackendTLS{Mode: modeRequired, Verify: true}, policy.ErrBackendDown, false, 1},
		{"required without STARTTLS", false, config.BackendTLS{Mode: modeRequired}, policy.ErrBackendDown, false, 1},
	} {
		for _, exts := range sinkExtensions {
			t.Run(tc.name+"/"+exts.name, func(t *testing.T) {
				e := newEnv(t)
				sc := sink.Config{Extensions: exts.exts}
				if tc.sinkTLS {
					sc.TLS = serverTLS
				}
				s := e.sink(sc)
				cfg := testConfig(s.Addr())
				cfg.TLS = tc.tls
				cfg.Pool.MaxIdle = 0 // every transaction dials
				p := e.pool(cfg)
				ctx := context.Background()
				txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
				if tc.wantErr != nil {
					if got := asReply(t, err); got != tc.wantErr {
						t.Fatalf("Begin: %v, want %v", got, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				st, ok := txn.TLS()
				if ok != tc.wantTLS || (ok && !st.HandshakeComplete) {
					t.Errorf("TLS() = %v, want %v", ok, tc.wantTLS)
				}
				if tc.tls.Verify && ok && len(st.VerifiedChains) == 0 {
					t.Error("verify on, but no verified chain")
				}
				if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
					t.Fatal(err)
				}
				if _, err := txn.Data(ctx, []byte(testHeader), strings.NewReader("x\r\n"), int64(len("x\r\n"))); err != nil {
					t.Fatal(err)
				}
				if d := p.Stats().Dials; d != tc.wantDials {
					t.Errorf("first transaction took %d dials, want %d", d, tc.wantDials)
				}
				m := s.Accepted()[0]
				if m.TLS != tc.wantTLS || m.Helo != "gw.test" || m.BDAT != (exts.exts != nil) {
					t.Errorf("sink: TLS %v helo %q BDAT %v, want TLS %v helo gw.test, by %s", m.TLS, m.Helo, m.BDAT, tc.wantTLS, exts.name)
				}
				// The second transaction goes straight to what was learnt:
				// STARTTLS, or plaintext after a failed handshake.
				before := p.Stats().Dials
				mustSend(t, p, "y\r\n")
				if d := p.Stats().Dials - before; d != 1 {
					t.Errorf("second transaction took %d dials, want 1", d)
				}
				if m := s.Accepted()[1]; m.TLS != tc.wantTLS {
					t.Errorf("second message TLS %v, want %v", m.TLS, tc.wantTLS)
				}
			})
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hostname string
		cfg      config.Backend
	}{
		{"no servers", "gw.test", config.Backend{}},
		{"bad address", "gw.test", config.Backend{Servers: []string{"no-port"}}},
		{"bad mode", "gw.test", config.Backend{Servers: []string{"127.0.0.1:25"}, TLS: config.BackendTLS{Mode: "maybe"}}},
		{"missing CA", "gw.test", config.Backend{Servers: []string{"127.0.0.1:25"}, TLS: config.BackendTLS{Mode: modeRequired, CAFile: "/nonexistent/ca.pem"}}},
		{"no name", "", config.Backend{Servers: []string{"127.0.0.1:25"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.hostname, tc.cfg, nil)
			if err == nil {
				_ = p.Close()
				t.Fatal("New succeeded")
			}
		})
	}
	p, err := New("gw.test", config.Backend{Servers: []string{"127.0.0.1:25"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.cfg.Timeouts != config.Default().Backend.Timeouts || p.cfg.Pool.MaxOpen != 500 || p.cfg.TLS.Mode != modeNone {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
}
