package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// alphabet is the printable ASCII the message bodies are made of, without
// '%' and '\': swaks rewrites "%TOKEN%" and a literal backslash-n in --data
// files (see its data "fixup"), so they would not arrive as written.
var alphabet = func() []byte {
	var a []byte
	for c := byte(' '); c <= '~'; c++ {
		if c != '%' && c != '\\' {
			a = append(a, c)
		}
	}
	return a
}()

// genMessage returns a complete message with CRLF line ends: headers with
// Message-ID msgID, then body lines of random printable text until it is at
// least size bytes long. Lines are at most 998 bytes plus CRLF (RFC 5322
// §2.1.1); some are empty, some start with one or more dots (dot-stuffing),
// some are exactly 998 bytes. With longDots, some of those start with a
// dot, which makes them 999 bytes on the wire once stuffed: still within
// the limit, since RFC 5321 §4.5.3.1.6 does not count the added dot. The
// last line is ordinary text.
func genMessage(rng *rand.Rand, msgID, to string, n, size int, longDots bool) []byte {
	var b bytes.Buffer
	b.Grow(size + 2048)
	fmt.Fprintf(&b, "From: E2E Sender <sender@example.test>\r\n")
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Subject: e2e message %d,\r\n\tfolded subject line\r\n", n)
	fmt.Fprintf(&b, "Date: Sun, 22 Nov 2026 12:00:00 +0000\r\n")
	fmt.Fprintf(&b, "Message-ID: %s\r\n", msgID)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("\r\n")
	line := make([]byte, 0, 998)
	for b.Len() < size {
		line = line[:0]
		var want int
		switch r := rng.Intn(100); {
		case r < 3:
			want = 0
		case r < 5:
			want = 998
		default:
			want = 1 + rng.Intn(998)
		}
		line = randText(rng, line, want)
		if want == 998 && !longDots {
			if line[0] == '.' { // random text can start with a dot too
				line[0] = '-'
			}
			b.Write(line)
			b.WriteString("\r\n")
			continue
		}
		switch r := rng.Intn(100); {
		case r < 8 && want > 0: // ".text"
			line[0] = '.'
		case r < 10 && want > 1: // "..text"
			line[0], line[1] = '.', '.'
		case r < 12: // a lone "." (would end the message if not stuffed)
			line = append(line[:0], '.')
		case r < 13: // ".." alone
			line = append(line[:0], '.', '.')
		case r < 14 && want > 0: // ends with a dot
			line[len(line)-1] = '.'
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "-- end of e2e message %d --\r\n", n)
	return b.Bytes()
}

// randText appends n random bytes of alphabet to dst.
func randText(rng *rand.Rand, dst []byte, n int) []byte {
	for n > 0 {
		v := rng.Uint64()
		for i := 0; i < 8 && n > 0; i++ {
			dst = append(dst, alphabet[int(byte(v))%len(alphabet)])
			v >>= 8
			n--
		}
	}
	return dst
}

// dotStuff returns msg (complete lines, CRLF) as sent after DATA: a dot
// doubled at the start of every line, and the terminating ".".
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(msg) + len(msg)/100 + 8)
	for len(msg) > 0 {
		i := bytes.Index(msg, []byte("\r\n"))
		if i < 0 {
			panic("dotStuff: message does not end with CRLF")
		}
		if msg[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(msg[:i+2])
		msg = msg[i+2:]
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// sinkDump is one message transaction as smtp-sink dumped it (-d).
//
// smtp-sink 3.x writes, with LF line ends: its own header records
// "X-Client-Addr:", "X-Client-Proto:", "X-Helo-Args:", "X-Mail-Args:", one
// "X-Rcpt-Args:" per RCPT, then a three-line "Received: ... (smtp-sink)"
// header. Those records up to X-Rcpt-Args are written as the commands
// arrive; the Received header once DATA is accepted. Then the message as
// received, dot-unstuffed and with every CR dropped, then a final empty
// line (the LF of the terminating ".\r\n"). The file is closed before the
// 250 to the final dot is sent, so a message the sink said 250 to is
// complete on disk even if the sink is SIGKILLed right after.
type sinkDump struct {
	path        string
	rcpts       []string // X-Rcpt-Args
	hasData     bool     // the sink's Received header is there: DATA was accepted
	received    string   // the gateway's Received header, LF line ends
	authResults string   // the gateway's Authentication-Results field, LF line ends
	content     []byte   // the rest: the message after the gateway's fields, LF line ends, plus the final "\n"
	msgID       string   // Message-ID of content
	err         error    // why the dump could not be parsed (a dump cut short)
}

// refOfReceived finds the gateway's reference id in its Received header.
var refOfReceived = regexp.MustCompile(`\bid ([0-9A-Za-z]+)\b`)

func (d *sinkDump) ref() string {
	if m := refOfReceived.FindStringSubmatch(d.received); m != nil {
		return m[1]
	}
	return ""
}

// parseDump parses one dump file.
func parseDump(path string, b []byte) *sinkDump {
	d := &sinkDump{path: path}
	next := func() (string, bool) {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return "", false
		}
		l := string(b[:i])
		b = b[i+1:]
		return l, true
	}
	peek := func() byte {
		if len(b) == 0 {
			return 0
		}
		return b[0]
	}
	// smtp-sink's records.
	for {
		l, ok := next()
		if !ok {
			d.err = fmt.Errorf("cut short in smtp-sink's header records")
			return d
		}
		if r, ok := strings.CutPrefix(l, "X-Rcpt-Args: "); ok {
			d.rcpts = append(d.rcpts, r)
			continue
		}
		if strings.HasPrefix(l, "X-") {
			continue
		}
		if !strings.HasPrefix(l, "Received: ") {
			d.err = fmt.Errorf("unexpected line %q in smtp-sink's header records", l)
			return d
		}
		if by, ok := next(); !ok || !strings.Contains(by, "(smtp-sink)") {
			d.err = fmt.Errorf("smtp-sink's Received header is cut short or not its own: %q", by)
			return d
		}
		for peek() == '\t' {
			next()
		}
		d.hasData = true
		break
	}
	// The gateway's Received header: the first field, with its folded
	// continuation lines, which start with a TAB.
	l, ok := next()
	if !ok {
		d.err = fmt.Errorf("cut short before the message")
		return d
	}
	if !strings.HasPrefix(l, "Received: ") {
		d.err = fmt.Errorf("message does not start with a Received header but with %q", l)
		return d
	}
	rcvd := []string{l}
	for peek() == '\t' {
		l, ok := next()
		if !ok {
			d.err = fmt.Errorf("cut short in the gateway's Received header")
			return d
		}
		rcvd = append(rcvd, l)
	}
	d.received = strings.Join(rcvd, "\n")
	// Then the gateway's Authentication-Results (RFC 8601), with its
	// folded lines: the senders are example.test, which the test zones
	// give SPF and DMARC, so both must pass.
	l, ok = next()
	if !ok || !strings.HasPrefix(l, "Authentication-Results: "+gatewayHostname+";") {
		d.err = fmt.Errorf("no Authentication-Results field after the gateway's Received header: %q", l)
		return d
	}
	ar := []string{l}
	for peek() == '\t' {
		l, _ := next()
		ar = append(ar, l)
	}
	d.authResults = strings.Join(ar, "\n")
	if !strings.Contains(d.authResults, "spf=pass") || !strings.Contains(d.authResults, "dmarc=pass header.from=example.test") {
		d.err = fmt.Errorf("authentication did not pass: %s", d.authResults)
		return d
	}
	// Then the gateway's X-Spam-Status, which every relayed message gets
	// (no thresholds are set here, so it is always "No").
	if l, ok := next(); !ok || !strings.HasPrefix(l, "X-Spam-Status: No, score=") {
		d.err = fmt.Errorf("no X-Spam-Status field after the gateway's Received header: %q", l)
		return d
	}
	d.content = b
	// Message-ID, from the header section.
	for _, h := range strings.Split(string(headerOf(b)), "\n") {
		if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(name, "Message-ID") {
			d.msgID = strings.TrimSpace(v)
		}
	}
	return d
}

// headerOf returns the header section of a message with LF line ends, or
// as much of it as there is in complete lines when the dump was cut short.
func headerOf(b []byte) []byte {
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return b[:i]
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return nil
}

// readDumps parses every file in dir.
func readDumps(t *testing.T, dir string) []*sinkDump {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ds []*sinkDump
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, parseDump(p, b))
	}
	return ds
}

// expectedDump is how smtp-sink dumps a message whose content (between
// DATA and the final dot, unstuffed) was wire: CRs dropped, plus the LF of
// the terminating dot line. The test messages contain no CR or LF other
// than in CRLF, so nothing is lost by comparing in this form.
func expectedDump(wire []byte) []byte {
	out := bytes.ReplaceAll(wire, []byte("\r\n"), []byte("\n"))
	return append(out, '\n')
}

// firstDiff describes where got and want first differ.
func firstDiff(got, want []byte) string {
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	ctx := func(b []byte) string {
		lo, hi := max(0, i-60), min(len(b), i+60)
		return fmt.Sprintf("%q", b[lo:hi])
	}
	line := bytes.Count(want[:i], []byte("\n")) + 1
	return fmt.Sprintf("lengths got %d want %d; first difference at byte %d (line %d of the message):\n  got  ...%s...\n  want ...%s...",
		len(got), len(want), i, line, ctx(got), ctx(want))
}

// checkReceived checks the gateway's Received header in a dump.
func checkReceived(t *testing.T, d *sinkDump, helo, rcpt string) {
	t.Helper()
	unfolded := strings.ReplaceAll(d.received, "\n\t", " ")
	for _, want := range []string{
		"Received: from " + helo + " ",
		"[127.0.0.1]",
		"by " + gatewayHostname + " (mxgate) with ESMTP",
		"for <" + rcpt + ">;",
	} {
		if !strings.Contains(unfolded, want) {
			t.Errorf("%s: the gateway's Received header lacks %q:\n%s", d.path, want, d.received)
			return
		}
	}
	if strings.Contains(d.received, "\n ") {
		t.Errorf("%s: Received header folded with a space rather than a TAB:\n%s", d.path, d.received)
	}
	if d.ref() == "" {
		t.Errorf("%s: no \"id <ref>\" in the gateway's Received header:\n%s", d.path, d.received)
	}
}

// record is a verdict record as written to verdict_log.path: the public
// schema, decoded independently of package verdict so that a renamed
// field breaks this test.
type record struct {
	Ref       string `json:"ref"`
	Action    string `json:"action"`
	Reason    string `json:"reason"`
	Stage     string `json:"stage"`
	Detail    string `json:"detail"`
	Size      int64  `json:"size"`
	MessageID string `json:"message_id"`
	Rcpts     []struct {
		Addr  string `json:"addr"`
		Reply reply  `json:"reply"`
	} `json:"rcpts"`
	Reply *reply `json:"reply"`
	Relay *struct {
		Backend string `json:"backend"`
		Code    int    `json:"code"`
		Text    string `json:"text"`
		QueueID string `json:"queue_id"`
		MS      int64  `json:"ms"`
	} `json:"relay"`
	line string
}

type reply struct {
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced"`
	Text     string `json:"text"`
}

func readVerdicts(t *testing.T, path string) []*record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("verdict log: %v", err)
	}
	defer f.Close()
	var rs []*record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		r := &record{line: sc.Text()}
		if err := json.Unmarshal(sc.Bytes(), r); err != nil {
			t.Fatalf("%s:%d: not a JSON record: %v\n%s", path, n, err, sc.Text())
		}
		rs = append(rs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

// refInReply is how every reply text ends: " (ref <26-char id>)".
var refInReply = regexp.MustCompile(`\(ref ([0-9A-Za-z]{26})\)\s*$`)
