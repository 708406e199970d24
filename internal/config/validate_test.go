package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/testutil"
)

// validBase is the start of a valid configuration. Cases append the
// sections they test (a repeated key would be a duplicate-key error), and
// always a backend section, which validBase leaves out for that reason.
const validBase = `hostname: mx.example.com
domains: [example.com]
`

func TestValidate(t *testing.T) {
	caFile := writeTestCA(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	const servers = "backend:\n  servers: [\"127.0.0.1:10025\"]\n"
	tests := []struct {
		name string
		in   string // appended to validBase
		want []string
	}{
		{"valid", servers, nil},
		{"listen ipv6 and names", servers + "listen:\n  - address: \"[::1]:25\"\n  - address: \"localhost:2525\"\n  - address: \"192.0.2.1:25\"\n", nil},
		{"listen empty", servers + "listen: []\n", []string{"t.yaml:5: listen: at least one address is required"}},
		{"listen duplicate", servers + "listen:\n  - address: \"[::1]:25\"\n  - address: \"[0:0::1]:025\"\n",
			[]string{`t.yaml:7: listen[1].address: "[0:0::1]:025" is listed twice (also listen[0].address)`}},
		{"listen no port", servers + "listen: [{address: \"127.0.0.1\"}]\n", []string{`want host:port like "0.0.0.0:25", got "127.0.0.1"`}},
		{"listen port 0", servers + "listen: [{address: \":0\"}]\n", []string{`port "0" in ":0" is not a number from 1 to 65535`}},
		{"listen bad host", servers + "listen: [{address: \"bad_host:25\"}]\n", []string{`host in "bad_host:25": "bad_host" is not a valid domain name`}},
		{"backend name and ipv6", "backend:\n  servers: [\"mail.internal:25\", \"[2001:db8::1]:25\"]\n", nil},
		{"backend duplicate", "backend:\n  servers: [\"127.0.0.1:10025\", \"127.0.0.1:10025\"]\n", []string{"backend.servers[1]"}},
		{"backend no port", "backend:\n  servers: [\"127.0.0.1\"]\n", []string{`backend.servers[0]: want host:port like "127.0.0.1:10025"`}},
		{"helo defaults and valid", servers + "  helo: relay-1.example.com\n", nil},
		{"helo invalid", servers + "  helo: \"relay..example.com\"\n", []string{`backend.helo: "relay..example.com" is not a valid domain name: empty label`}},
		{"tls required with verify", servers + "  tls: {mode: required, verify: true, server_name: mail.example.com}\n", nil},
		{"tls server name ip", servers + "  tls: {mode: required, server_name: 192.0.2.1}\n", nil},
		{"tls server name bad", servers + "  tls: {mode: required, server_name: \"a b\"}\n", []string{"backend.tls.server_name"}},
		{"ca file good", servers + "  tls: {mode: required, ca_file: " + caFile + "}\n", nil},
		{"ca file not pem", servers + "  tls: {mode: required, ca_file: " + notPEM + "}\n", []string{"holds no PEM certificates"}},
		{"ca file is a directory", servers + "  tls: {mode: required, ca_file: " + dir + "}\n", []string{"is not a regular file"}},
		{"verify with default mode", servers + "  tls: {verify: true}\n", []string{"t.yaml:5: backend.tls.verify: true contradicts mode \"none\""}},
		{"timeouts", servers + "  timeouts: {connect: 0s, command: -1s, data: 1ns, final: 1h}\n",
			[]string{"backend.timeouts.connect: must be more than 0, got 0s", "backend.timeouts.command: must be more than 0, got -1s"}},
		{"pool", servers + "  pool: {max_idle: -1, max_open: 0, idle_timeout: 0s, max_messages: 0}\n  retry_down: -1s\n",
			[]string{"backend.pool.max_idle: must be at least 0", "backend.pool.max_open: must be at least 1",
				"backend.pool.idle_timeout: must be more than 0", "backend.pool.max_messages: must be at least 1",
				"backend.retry_down: must not be negative, got -1s"}},
		{"pool zero idle and retry", servers + "  pool: {max_idle: 0}\n  retry_down: 0s\n", nil},
		{"limits bounds ok", servers + "limits: {max_message_size: 1KiB, max_recipients: 1, max_line_length: 1048576}\n", nil},
		{"limits bounds", servers + "limits: {max_message_size: 1023, max_recipients: 0, max_line_length: 1048577, max_connections: 0, max_connections_per_ip: 0}\n",
			[]string{"limits.max_message_size: must be at least 1KiB, got 1023 bytes", "limits.max_recipients: must be at least 1",
				"limits.max_line_length: must be from 1000", "limits.max_connections: must be at least 1",
				"limits.max_connections_per_ip: must be at least 1"}},
		{"limits timeouts", servers + "limits: {command_timeout: 0s, data_timeout: 0s, session_timeout: 0s}\n",
			[]string{"limits.command_timeout", "limits.data_timeout", "limits.session_timeout"}},
		{"per ip equal total", servers + "limits: {max_connections: 20, max_connections_per_ip: 20}\n", nil},
		{"message ok", servers + "message: {memory_buffer: 0, temp_dir: " + dir + ", bare_newline: normalize, nul: strip}\n", nil},
		{"message buffer above max size", servers + "message: {memory_buffer: 1GiB}\n", nil},
		{"temp dir is a file", servers + "message: {temp_dir: " + notPEM + "}\n", []string{"is not a directory"}},
		{"dns ok", servers + "dns: {servers: [\"127.0.0.1:53\", \"[::1]:53\"], timeout: 1s}\n", nil},
		{"dns timeout", servers + "dns: {timeout: 0s}\n", []string{"dns.timeout: must be more than 0"}},
		{"log and verdict", servers + "log: {level: debug}\nverdict_log: {path: /var/log/mxgate.log}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, validBase+tt.in, tt.want)
		})
	}
}

func TestHeloDefaultsToHostname(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(validBase+"backend:\n  servers: [\"127.0.0.1:10025\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend.Helo != "mx.example.com" {
		t.Errorf("helo = %q, want the hostname", cfg.Backend.Helo)
	}
}

func TestNormalizeDomain(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct{ in, want, wantErr string }{
		{in: "example.com", want: "example.com"},
		{in: "EXAMPLE.Com.", want: "example.com"},
		{in: "sub-1.example.co.uk", want: "sub-1.example.co.uk"},
		{in: "localhost", want: "localhost"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.example", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "münchen.de", want: "xn--mnchen-3ya.de"},
		{in: "例え.テスト", want: "xn--r8jz45g.xn--zckzah"},
		{in: "例え。テスト", want: "xn--r8jz45g.xn--zckzah"},
		{in: "пример.рф", want: "xn--e1afmkfd.xn--p1ai"},
		{in: long + ".example", want: long + ".example"},
		{in: long + "a.example", wantErr: "label longer than 63 characters"},
		{in: strings.Repeat("a.", 127) + "com", wantErr: "longer than 253 characters"},
		{in: "", wantErr: "empty label"},
		{in: ".", wantErr: "empty label"},
		{in: "a..b", wantErr: "empty label"},
		{in: "-a.example", wantErr: "starts or ends with a hyphen"},
		{in: "a_b.example", wantErr: "'_' is not a letter, digit, hyphen or dot"},
		{in: "a b.example", wantErr: "is not a letter"},
		{in: "☃.example", want: "xn--n3h.example"}, // UTS #46 lookup maps it as a resolver would
		{in: "\xff.example", wantErr: "not valid UTF-8"},
		{in: "192.0.2.1", wantErr: "is an IP address"},
		{in: "2001:db8::1", wantErr: "is an IP address"},
		{in: "[192.0.2.1]", wantErr: "is an address literal"},
		{in: "[IPv6:2001:db8::1]", wantErr: "is an address literal"},
		{in: "10.0.0", wantErr: "the last label is all digits"},
		{in: "*.example.com", wantErr: "wildcards are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeDomain(tt.in)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %q, %v; want error containing %q", got, err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case got != tt.want:
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHostPort(t *testing.T) {
	tests := []struct{ in, host, canon, wantErr string }{
		{in: ":25", host: "", canon: ":25"},
		{in: "0.0.0.0:25", host: "0.0.0.0", canon: "0.0.0.0:25"},
		{in: "[::]:25", host: "::", canon: "[::]:25"},
		{in: "[fe80::1%eth0]:25", host: "fe80::1%eth0", canon: "[fe80::1%eth0]:25"},
		{in: "Mail.Example.com:025", host: "Mail.Example.com", canon: "mail.example.com:25"},
		{in: "127.0.0.1:65535", host: "127.0.0.1", canon: "127.0.0.1:65535"},
		{in: "127.0.0.1:65536", wantErr: "not a number from 1 to 65535"},
		{in: "127.0.0.1:+25", wantErr: "not a number from 1 to 65535"},
		{in: "127.0.0.1:", wantErr: "not a number from 1 to 65535"},
		{in: "127.0.0.1", wantErr: "want host:port"},
		{in: "::1", wantErr: "write an IPv6 address in brackets"},
		{in: "", wantErr: "want host:port"},
		{in: "a_b:25", wantErr: "not a valid domain name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			host, canon, err := hostPort(tt.in, "127.0.0.1:25")
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want error containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case host != tt.host || canon != tt.canon:
				t.Errorf("got %q, %q; want %q, %q", host, canon, tt.host, tt.canon)
			}
		})
	}
}

// writeTestCA writes a self-signed certificate as PEM and returns its path.
func writeTestCA(t *testing.T) string {
	return testutil.SelfSigned(t, "mxgate test CA").CAFile
}

// checkParse parses in as t.yaml and checks the outcome: no error when
// want is empty, else exactly len(want) errors, each containing one of
// want's strings.
func checkParse(t *testing.T, in string, want []string) {
	t.Helper()
	_, err := Parse("t.yaml", []byte(in))
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected errors:\n%v\nin:\n%s", err, in)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %q\nin:\n%s", want, in)
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\ndo not contain %q", got, w)
		}
	}
	if n := len(err.(Errors)); n != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", n, len(want), got)
	}
}
