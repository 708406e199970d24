package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var refs = regexp.MustCompile(`[0-9A-HJKMNP-TV-Z]{26}`)

// TestExplainGolden pins the output of `gateway explain` for a few
// transactions (reference ids masked).
func TestExplainGolden(t *testing.T) {
	// The configuration names "{{dns}}": a DNS server serving the shared
	// test zones on loopback, started here.
	zones, err := zoneserver.LoadZoneDir("../../testdata/zones")
	if err != nil {
		t.Fatal(err)
	}
	dns, err := zoneserver.Start("127.0.0.1:0", zones...)
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	tmpl, err := os.ReadFile("../../testdata/explain/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, bytes.ReplaceAll(tmpl, []byte("{{dns}}"), []byte(dns.Addr())), 0o644)
	tests := []struct {
		name string
		args []string
	}{
		{"clean-with-localhost-helo", []string{"--ip", "203.0.113.5", "--helo", "localhost", "--from", "a@sender.test", "--rcpt", "bob@example.test", "../../testdata/explain/winner.eml"}},
		{"content-reject", []string{"--ip", "203.0.113.5", "--helo", "mail.sender.test", "--from", "a@sender.test", "--rcpt", "bob@example.test", "../../testdata/explain/pills.eml"}},
		{"sender-reject-and-relay-denied", []string{"--ip", "203.0.113.5", "--helo", "mx.bulk.test", "--from", "x@mx.bulk.test", "--rcpt", "bob@example.test", "--rcpt", "eve@elsewhere.test"}},
		{"partner-accepted", []string{"--ip", "192.0.2.44", "--helo", "localhost", "--from", "x@mx.bulk.test", "--rcpt", "bob@example.test", "../../testdata/explain/pills.eml"}},
		{"dnsbl-listed-and-fcrdns", []string{"--ip", "127.0.0.2", "--helo", "[127.0.0.9]", "--from", "a@sender.test", "--rcpt", "bob@example.test"}},
		{"fcrdns-pass", []string{"--ip", "127.0.0.5", "--helo", "mail.example.test", "--from", "a@example.test", "--rcpt", "bob@example.test", "../../testdata/explain/winner.eml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(append([]string{"explain", "--config", cfg}, tt.args...), &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			got := refs.ReplaceAll(out.Bytes(), []byte("REF"))
			got = bytes.ReplaceAll(got, []byte(cfg), []byte("config.yaml"))
			golden := filepath.Join("../../testdata/explain", tt.name+".golden")
			if *update {
				os.WriteFile(golden, got, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
