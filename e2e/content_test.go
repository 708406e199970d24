package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/testutil"
)

// TestDotStuffedLongLine sends, one message each, the line shapes where
// dot-stuffing meets the line length limit, and checks each is accepted
// and arrives unaltered. RFC 5321 §4.5.3.1.6: "The maximum total length of
// a text line including the <CRLF> is 1000 octets (not counting the leading
// dot duplicated for transparency)", so a 998-octet line that starts with a
// dot is 1001 octets on the wire and must be accepted.
func TestDotStuffedLongLine(t *testing.T) {
	t.Parallel()
	sinkBin := testutil.Need(t, "smtp-sink", "postfix")
	dumpDir := newDumpDir(t)
	sinkAddr := loopback(testutil.FreePort(t))
	startSink(t, sinkBin, sinkAddr, dumpDir)
	g := startGateway(t, sinkAddr)

	cases := []struct{ name, line string }{
		{"998 octets", strings.Repeat("x", 998)},
		{"998 octets starting with a dot", "." + strings.Repeat("x", 997)},
		{"998 octets starting with two dots", ".." + strings.Repeat("x", 996)},
		{"998 dots", strings.Repeat(".", 998)},
		{"997 octets starting with a dot", "." + strings.Repeat("x", 996)},
		{"a lone dot", "."},
		{"two dots", ".."},
	}
	msgs := make([][]byte, len(cases))
	results := make([]outcome, len(cases))
	for i, c := range cases {
		msgs[i] = []byte(fmt.Sprintf("From: <sender@example.test>\r\nSubject: %s\r\nMessage-ID: <line-%d@example.test>\r\n\r\nbefore\r\n%s\r\nafter\r\n",
			c.name, i, c.line))
		results[i] = sendSMTP(g.addr, "rcpt@dest.test", msgs[i])
	}
	g.stop(t)

	byID := map[string]*sinkDump{}
	for _, d := range readDumps(t, dumpDir) {
		if d.err == nil {
			byID[d.msgID] = d
		}
	}
	for i, c := range cases {
		o := results[i]
		if o.stage != "." || o.code != 250 {
			t.Errorf("%s (%d octets on the wire with CRLF and stuffing): got %v, want 250", c.name, len(c.line)+2+strings.Count(c.line[:1], "."), o)
			continue
		}
		d := byID[fmt.Sprintf("<line-%d@example.test>", i)]
		if d == nil {
			t.Errorf("%s: accepted, but not at smtp-sink", c.name)
			continue
		}
		if want := expectedDump(msgs[i]); string(d.content) != string(want) {
			t.Errorf("%s: altered on the way: %s", c.name, firstDiff(d.content, want))
		}
	}
}
