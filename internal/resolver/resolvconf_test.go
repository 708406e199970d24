package resolver

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{Servers: []string{"127.0.0.1:53"}}, ""},
		{"IPv6", Config{Servers: []string{"[::1]:5353"}}, ""},
		{"host name", Config{Servers: []string{"localhost:53"}}, "want ip:port"},
		{"no port", Config{Servers: []string{"127.0.0.1"}}, "want ip:port"},
		{"negative", Config{Servers: []string{"127.0.0.1:53"}, Attempts: -1}, "must not be negative"},
		{"min above max", Config{Servers: []string{"127.0.0.1:53"}, MinTTL: time.Hour, MaxTTL: time.Minute}, "exceeds MaxTTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.timeout != DefaultTimeout || c.attempts != DefaultAttempts || c.minTTL != DefaultMinTTL || c.maxTTL != DefaultMaxTTL {
				t.Errorf("defaults not applied: %+v", c)
			}
		})
	}
}

// TestNewReadsResolvConf points New at a temporary file; nothing is asked.
func TestNewReadsResolvConf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	old := resolvConfPath
	resolvConfPath = path
	t.Cleanup(func() { resolvConfPath = old })

	if _, err := New(Config{}); err == nil {
		t.Error("missing resolv.conf: no error")
	}
	os.WriteFile(path, []byte("search example.com\n"), 0o644)
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no usable nameserver") {
		t.Errorf("resolv.conf without nameservers: %v", err)
	}
	os.WriteFile(path, []byte("nameserver 192.0.2.1\nnameserver 2001:db8::1\n"), 0o644)
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:53"}; !slices.Equal(c.servers, want) {
		t.Errorf("servers %q, want %q", c.servers, want)
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"typical", "# generated\nsearch corp.example\nnameserver 10.0.0.1\noptions ndots:5\n", []string{"10.0.0.1:53"}},
		{"IPv6 and zone", "nameserver ::1\nnameserver fe80::1%eth0\n", []string{"[::1]:53", "[fe80::1%eth0]:53"}},
		{"comments", "#nameserver 10.0.0.1\n; nameserver 10.0.0.2\n  # nameserver 10.0.0.3\nnameserver 10.0.0.4 # trailing\n", []string{"10.0.0.4:53"}},
		{"at most three", "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
			[]string{"10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"}},
		{"host names and junk skipped", "nameserver dns.example\nnameserver\nnameserver 300.1.1.1\nnameserver 10.0.0.9\n", []string{"10.0.0.9:53"}},
		{"tabs and CRLF", "nameserver\t10.0.0.1\r\n", []string{"10.0.0.1:53"}},
		{"keyword case matters", "NAMESERVER 10.0.0.1\n", nil},
		{"no final newline", "nameserver 10.0.0.1", []string{"10.0.0.1:53"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseResolvConf([]byte(tt.in)); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.1\nsearch a b\n"))
	f.Add([]byte("nameserver fe80::1%eth0 extra\n#x\n;y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		servers := parseResolvConf(data)
		if len(servers) > maxNameservers {
			t.Fatalf("%d servers", len(servers))
		}
		for _, s := range servers {
			if err := checkServer(s); err != nil {
				t.Fatalf("parsed server fails New's check: %v", err)
			}
		}
	})
}
