package demo

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var rowRE = regexp.MustCompile(`^ [0-9]+ +\S`)

// TestTour runs the demo as `gateway demo --exit` does and checks that each
// example ended as the tour says it does, that the accepted message was
// stored, and that every transaction has a verdict record.
func TestTour(t *testing.T) {
	dir := t.TempDir()
	var out, errs bytes.Buffer
	err := Run(context.Background(), Options{Listen: "127.0.0.1:0", Tour: true, Exit: true, Out: &out, Err: &errs, Dir: dir})
	if err != nil {
		t.Fatalf("%v\n%s", err, errs.String())
	}
	want := []string{
		"accept / accepted", "reject / relay_denied", "reject / relay_denied",
		"reject / message_too_large", "reject / bare_newline", "reject / backend_rcpt",
		"reject / rule", "accept / accepted (shadow: demo-watch-lottery would reject)", "tag / accepted",
		"reject / rule", "accept / accepted", "reject / rule",
		"greylist / greylisted", "accept / accepted",
	}
	text := out.String()
	var rows []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if l := sc.Text(); rowRE.MatchString(l) {
			rows = append(rows, l)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("tour printed %d rows, want %d:\n%s", len(rows), len(want), text)
	}
	for i, w := range want {
		if !strings.HasSuffix(strings.TrimSpace(rows[i]), w) {
			t.Errorf("row %d = %q, want it to end in %q", i+1, rows[i], w)
		}
	}
	emls, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	if len(emls) != 5 {
		t.Fatalf("want 5 stored messages, have %d", len(emls))
	}
	eml, _ := os.ReadFile(emls[0])
	tagged, _ := os.ReadFile(emls[2])
	if !strings.Contains(text, "550 5.7.26 Unauthenticated mail from bank.test is r") {
		t.Errorf("the spoofed bank.test message was not refused by DMARC:\n%s", text)
	}
	if !strings.Contains(text, "dkim=pass") || !strings.Contains(text, "dmarc=pass header.from=sender.test") || !strings.Contains(text, "spf=pass") {
		t.Errorf("no passing Authentication-Results shown:\n%s", text)
	}
	if !strings.Contains(text, "554 5.7.1 Service unavailable; client [127.0.0.2] l") {
		t.Errorf("the DNSBL example was not refused naming the list:\n%s", text)
	}
	if !bytes.Contains(tagged, []byte("\r\nX-Spam-Flag: YES\r\n")) || !bytes.Contains(tagged, []byte("\r\nSubject: [SPAM] hello")) {
		t.Errorf("the tagged message lacks X-Spam-Flag or the subject tag:\n%s", tagged)
	}
	if !bytes.HasPrefix(eml, []byte("Received: from client.sender.test (client.sender.test [127.0.0.1])")) ||
		!bytes.Contains(eml, []byte("\r\nX-Spam-Status: No, score=0.0\r\n")) ||
		!bytes.Contains(eml, []byte("\r\n. a line that starts with a dot survives.\r\n")) {
		t.Errorf("stored message:\n%s", eml)
	}
	v, _ := os.ReadFile(filepath.Join(dir, "verdicts.jsonl"))
	if n := bytes.Count(v, []byte("\n")); n < len(want) {
		t.Errorf("verdicts.jsonl has %d records, want at least %d", n, len(want))
	}
	if bytes.Contains(v, []byte(`\u003c`)) {
		t.Error("verdict records HTML-escape < and >")
	}
}
