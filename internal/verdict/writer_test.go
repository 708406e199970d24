package verdict

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/policy"
)

func TestWriteOneLinePerRecord(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	from := "a@example.test"
	r := &Record{
		TS: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), Ref: "R1", ConnID: "C1",
		Client: Client{IP: "192.0.2.1", Port: 25}, MailFrom: &from,
		Rcpts:  []Rcpt{{Addr: "<b@ours.test>", Reason: policy.ReasonRelayDenied, Reply: ReplyOf(policy.ErrRelayDenied, "R1")}},
		Action: policy.ActionReject, Reason: policy.ReasonRelayDenied, Stage: policy.StageRcpt,
	}
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	want := `{"ts":"2026-11-22T12:00:00Z","schema":1,"ref":"R1","conn_id":"C1","client":{"ip":"192.0.2.1","port":25},` +
		`"mail_from":"a@example.test","rcpts":[{"addr":"<b@ours.test>","reason":"relay_denied","reply":{"code":550,"enhanced":"5.7.1","text":"Relay access denied (ref R1)"}}],` +
		`"score":0,"action":"reject","reason":"relay_denied","stage":"rcpt","duration_ms":0}` + "\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestReopen: after logrotate moves the file away, SIGHUP's Reopen starts
// a new file and no record is lost.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "verdicts.jsonl")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(&Record{Ref: "first"})
	os.Rename(path, path+".1")
	w.Write(&Record{Ref: "second"}) // still goes to the moved file
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write(&Record{Ref: "third"})
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"ref":"first"`) || !strings.Contains(string(old), `"ref":"second"`) ||
		!strings.Contains(string(cur), `"ref":"third"`) || strings.Count(string(cur), "\n") != 1 {
		t.Fatalf("rotated: %q, current: %q", old, cur)
	}
}
