package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("hostname: mx.example.net\ndomains: [example.net]\nbackend:\n  servers: [\"127.0.0.1:10025\"]\n  timeouts:\n    conect: 5s\n"), 0o644)
	tests := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"check-config", "--config", "../../config.example.yaml"}, 0, "config.example.yaml: ok", ""},
		{[]string{"check-config", "--config", bad}, 1, "", `bad.yaml:6: backend.timeouts.conect: unknown key (did you mean "connect"?)`},
		{[]string{"check-config", "--config", "/nonexistent.yaml"}, 1, "", "nonexistent.yaml"},
		{[]string{"version"}, 0, "mxgate ", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{nil, 2, "", "usage: gateway"},
		{[]string{"serve", "--bogus"}, 2, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tt.args, &out, &errb); code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tt.out) || !strings.Contains(errb.String(), tt.err) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", out.String(), tt.out, errb.String(), tt.err)
			}
		})
	}
}
