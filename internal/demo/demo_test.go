package demo

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	}
	var rows []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if l := sc.Text(); len(l) > 3 && l[0] == ' ' && l[1] >= '1' && l[1] <= '9' && l[2] == ' ' {
			rows = append(rows, l)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("tour printed %d rows, want %d:\n%s", len(rows), len(want), out.String())
	}
	for i, w := range want {
		if !strings.HasSuffix(strings.TrimSpace(rows[i]), w) {
			t.Errorf("row %d = %q, want it to end in %q", i+1, rows[i], w)
		}
	}
	emls, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	if len(emls) != 3 {
		t.Fatalf("want 3 stored messages, have %d", len(emls))
	}
	eml, _ := os.ReadFile(emls[0])
	tagged, _ := os.ReadFile(emls[2])
	if !bytes.Contains(tagged, []byte("\r\nX-Spam-Flag: YES\r\n")) || !bytes.Contains(tagged, []byte("\r\nSubject: [SPAM] hello")) {
		t.Errorf("the tagged message lacks X-Spam-Flag or the subject tag:\n%s", tagged)
	}
	if !bytes.HasPrefix(eml, []byte("Received: from client.sender.test ([127.0.0.1])")) ||
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
