package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTranscripts replays the SMTP dialogues in testdata/transcripts against
// a gateway relaying to the standard sink. A transcript has lines:
//
//	C: <line>            the client sends line + CRLF
//	C: "<go string>"     the client sends the unquoted bytes as they are
//	S: <reply line>      the next reply line; {ref} matches a reference id,
//	                     {any} matches anything; every line of a multi-line
//	                     reply is given
//	V: <action> <reason> <stage>   the next verdict record (checked at the end)
//	B: <n>               the backend has received n messages (checked at the end)
//	# comment
func TestTranscripts(t *testing.T) {
	files, _ := filepath.Glob("../testdata/transcripts/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runTranscript(t, f)
		})
	}
}

var placeholders = strings.NewReplacer(regexp.QuoteMeta("{ref}"), `[0-9A-Z]{26}`, regexp.QuoteMeta("{any}"), `.*`)

func runTranscript(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := newHarness(t, standardSink(), nil)
	cl := h.dial()
	var pending []string // reply lines read but not yet matched
	var verdicts []string
	backend := -1
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		where := fmt.Sprintf("%s:%d", filepath.Base(path), n)
		kind, arg, _ := strings.Cut(line, ": ")
		if line == "C:" {
			kind = "C" // an empty line (editors strip the trailing space)
		}
		switch kind {
		case "C":
			if strings.HasPrefix(arg, `"`) {
				s, err := strconv.Unquote(arg)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				cl.write(s)
			} else {
				cl.send(arg)
			}
		case "S":
			if len(pending) == 0 {
				pending = cl.reply()
			}
			got := pending[0]
			pending = pending[1:]
			re := regexp.MustCompile("^" + placeholders.Replace(regexp.QuoteMeta(arg)) + "$")
			if !re.MatchString(got) {
				t.Fatalf("%s: want %q, got %q", where, arg, got)
			}
		case "V":
			verdicts = append(verdicts, arg)
		case "B":
			backend, _ = strconv.Atoi(arg)
		default:
			if line != "" && !strings.HasPrefix(line, "#") {
				t.Fatalf("%s: bad transcript line %q", where, line)
			}
		}
	}
	if len(pending) > 0 {
		t.Fatalf("unmatched reply lines %q", pending)
	}
	cl.c.Close()
	recs := h.recs.wait(t, len(verdicts))
	for i, want := range verdicts {
		r := recs[i]
		got := fmt.Sprintf("%s %s %s", r.Action, r.Reason, r.Stage)
		if got != want {
			t.Errorf("verdict %d: want %q, got %q (%+v)", i+1, want, got, r)
		}
	}
	if backend >= 0 {
		if got := len(h.sink.Accepted()); got != backend {
			t.Errorf("backend accepted %d messages, want %d", got, backend)
		}
	}
}
