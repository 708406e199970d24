package server

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/sink"
)

// TestRelayBDAT: to a backend that offers CHUNKING the gateway relays with
// BDAT, and the backend gets the same message it would get with DATA: the
// gateway's header fields, then the client's message as the client sent
// it, dots and all. Both a message kept in memory and one spilled to a
// temporary file (over message.memory_buffer) are sized exactly.
func TestRelayBDAT(t *testing.T) {
	small := "Subject: small\r\n\r\n.one dot\r\n..two dots\r\nend\r\n"
	big := "Subject: big\r\n\r\n" + strings.Repeat(".a line that starts with a dot, as SMTP smuggling tests like\r\n", 300)
	var got [2][]sink.Message
	for i, exts := range [][]string{nil, append(sink.DefaultExtensions(), "CHUNKING")} {
		h := newHarness(t, sink.Config{Extensions: exts}, nil)
		cl := h.greet()
		for _, msg := range []string{small, big} {
			cl.startData("bob@ours.test")
			cl.write(strings.ReplaceAll(msg, "\r\n.", "\r\n..") + ".\r\n")
			cl.expect("250 ")
		}
		got[i] = h.sink.Accepted()
	}
	for i, msg := range []string{small, big} {
		data, bdat := got[0][i], got[1][i]
		if data.BDAT || !bdat.BDAT {
			t.Fatalf("message %d: BDAT %v and %v, want DATA to the first sink and BDAT to the second", i, data.BDAT, bdat.BDAT)
		}
		if !strings.HasSuffix(string(bdat.Data), "\r\n"+msg) {
			t.Errorf("message %d by BDAT does not end with the client's message", i)
		}
		// The gateway's own fields differ (ref ids, times); the rest must not.
		_, d, _ := strings.Cut(string(data.Data), "Subject: ")
		_, b, _ := strings.Cut(string(bdat.Data), "Subject: ")
		if d != b {
			t.Errorf("message %d: from the Subject on, BDAT and DATA delivered different bytes", i)
		}
	}
}
