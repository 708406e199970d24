package server

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/sink"
)

var replyLineRE = regexp.MustCompile(`^([2-5])\d\d([ -])(.*)$`)
var enhancedPrefixRE = regexp.MustCompile(`^([2-5])\.\d{1,3}\.\d{1,3} `)

// FuzzSession sends arbitrary bytes as a client to a real gateway relaying
// to the in-process backend. Whatever the input: the gateway must not
// panic or hang; every reply line must be well-formed with an enhanced
// code of the reply's class; the backend must never see a recipient
// outside our domains, nor a message that is not canonical CRLF.
func FuzzSession(f *testing.F) {
	for _, s := range transcriptSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@ours.test>\r\nBDAT 5 LAST\r\nab\rc"))
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c%d@ours.test>\r\nDATA\r\nx\n.\nQUIT\r\n"))

	var recs records
	sk, err := sink.Start(sink.Config{Lenient: true})
	if err != nil {
		f.Fatal(err)
	}
	defer sk.Close()
	cfg := testConfig(sk.Addr())
	cfg.Limits.CommandTimeout = time.Second
	cfg.Limits.DataTimeout = time.Second
	srv, err := New(cfg, verdictWriter(&recs), discardLog())
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv.StartListeners([]net.Listener{ln})
	defer srv.Shutdown(canceledAfter(2 * time.Second))
	doms, _ := address.NewDomains(cfg.Domains)

	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			checkReplyLine(t, strings.TrimRight(line, "\r\n"))
		}
		for _, m := range sk.Messages() {
			for _, rc := range m.Rcpts {
				a, err := address.ParseRecipient(rc, true)
				if err != nil || !doms.Contains(a.Domain) {
					t.Fatalf("backend got recipient %q", rc)
				}
			}
			assertCanonical(t, m.Raw)
		}
	})
}

func checkReplyLine(t *testing.T, line string) {
	m := replyLineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("malformed reply line %q", line)
	}
	if m[2] == "-" || m[1] == "3" {
		return // continuation lines and 354 carry no enhanced code
	}
	e := enhancedPrefixRE.FindStringSubmatch(m[3])
	if m[1] != "2" && line[:3] != "220" && line[:3] != "221" && e == nil {
		t.Fatalf("reply %q has no enhanced code", line)
	}
	if e != nil && e[1] != m[1] {
		t.Fatalf("reply %q: enhanced code of another class", line)
	}
}

// transcriptSeeds turns the client side of every transcript into a seed.
func transcriptSeeds(f *testing.F) [][]byte {
	files, _ := filepath.Glob("../testdata/transcripts/*.txt")
	var seeds [][]byte
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var b strings.Builder
		for _, l := range strings.Split(string(data), "\n") {
			switch {
			case l == "C:":
				b.WriteString("\r\n")
			case strings.HasPrefix(l, `C: "`):
				if s, err := strconv.Unquote(l[3:]); err == nil {
					b.WriteString(s)
				}
			case strings.HasPrefix(l, "C: "):
				b.WriteString(l[3:] + "\r\n")
			}
		}
		seeds = append(seeds, []byte(b.String()))
	}
	return seeds
}
