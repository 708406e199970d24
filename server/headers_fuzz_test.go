package server

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// FuzzRewriteHeader: whatever header section a client sends, the rewritten
// one keeps only canonical lines it had, never a field claiming our
// authserv-id or an X-Spam-Flag/-Status of the sender's, and never panics.
func FuzzRewriteHeader(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.ours.test; spf=pass\r\nSubject: s\r\n\r\n"), "[SPAM]")
	f.Add([]byte("X-Spam-Flag: YES\r\n\tfolded\r\nAuthentication-Results: (c) MX.OURS.TEST;\r\n dkim=pass\r\nFrom: a@b\r\n\r\n"), "")
	f.Add([]byte("Subject:\r\nsubject: two\r\n\r\n"), "[x]")
	f.Fuzz(func(t *testing.T, h []byte, tag string) {
		out := rewriteHeader(h, tag, "mx.ours.test")
		for _, line := range strings.Split(string(out), "\r\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			n := strings.TrimSpace(name)
			if strings.EqualFold(n, "X-Spam-Flag") || strings.EqualFold(n, "X-Spam-Status") {
				t.Fatalf("sender's %s kept: %q", n, out)
			}
			if strings.EqualFold(n, "Authentication-Results") && strings.EqualFold(authservID(value), "mx.ours.test") &&
				!bytes.Contains(h, []byte("\n"+line+"\n")) {
				t.Fatalf("forged Authentication-Results kept: %q", out)
			}
		}
	})
}

// FuzzAuthservID never panics and never returns text with separators.
func FuzzAuthservID(f *testing.F) {
	for _, s := range []string{" mx.ours.test; spf=pass", " (a (b)) x;", "(", " x (y); z", "\r\n\tmx;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if id := authservID(v); strings.ContainsAny(id, "; \t\r\n") {
			t.Fatalf("authservID(%q) = %q", v, id)
		}
	})
}

// FuzzProxyHeader feeds arbitrary bytes to the PROXY protocol parser the
// listener uses (go-proxyproto): it must fail cleanly, never panic.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\nEHLO x\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x07\x7f\x00\x00\x01\x9c\x40\x00\x19"))
	f.Fuzz(func(t *testing.T, b []byte) {
		proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
	})
}
