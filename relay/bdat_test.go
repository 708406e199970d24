package relay

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

// sinkExtensions are the two ways a message can leave: a sink without
// CHUNKING gets DATA, one with it gets BDAT. Fault tests run with both.
var sinkExtensions = []struct {
	name string
	exts []string
}{
	{"DATA", nil},
	{"BDAT", append(sink.DefaultExtensions(), "CHUNKING")},
}

// TestBDATSameAsDATA: whichever way a message leaves, the backend gets the
// same bytes. BDAT is used exactly when the backend offers CHUNKING, the
// size is known and backend chunking is "auto".
func TestBDATSameAsDATA(t *testing.T) {
	bodies := map[string]string{
		"plain":     "Subject: x\r\n\r\nhello\r\n",
		"dots":      "Subject: x\r\n\r\n.\r\n..\r\n.leading dot\r\nend\r\n",
		"empty":     "",
		"no body":   "Subject: x\r\n\r\n",
		"over 64K":  "Subject: big\r\n\r\n" + strings.Repeat(line72+".x\r\n", 3000),
		"long line": "Subject: x\r\n\r\n" + strings.Repeat("y", 990) + "\r\n",
	}
	for _, tc := range []struct {
		name     string
		exts     []string
		chunking string
		size     bool // pass the body size
		bdat     bool
	}{
		{"DATA backend", nil, "auto", true, false},
		{"CHUNKING backend", sinkExtensions[1].exts, "auto", true, true},
		{"chunking off", sinkExtensions[1].exts, "off", true, false},
		{"size unknown", sinkExtensions[1].exts, "auto", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.sink(sink.Config{Extensions: tc.exts})
			cfg := testConfig(s.Addr())
			cfg.Chunking = tc.chunking
			p := e.pool(cfg)
			for name, body := range bodies {
				size := int64(len(body))
				if !tc.size {
					size = -1
				}
				res, err := data(p, body, size)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				ms := s.Messages()
				m := ms[len(ms)-1]
				if !m.Accepted || m.BDAT != tc.bdat || string(m.Data) != testHeader+body || res.QueueID != m.ID {
					t.Errorf("%s: got BDAT %v, accepted %v, queue id %q (sink %q), %d bytes; want BDAT %v and %d bytes",
						name, m.BDAT, m.Accepted, res.QueueID, m.ID, len(m.Data), tc.bdat, len(testHeader+body))
				}
			}
			if st := p.Stats(); st.Dials != 1 {
				t.Errorf("pool stats %+v: every message should reuse the one connection", st)
			}
		})
	}
}

// data relays body with its size as given.
func data(p *Pool, body string, size int64) (*Result, error) {
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test", FirstRcpt: "b@example.org"})
	if err != nil {
		return nil, err
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		txn.Abort()
		return nil, err
	}
	return txn.Data(ctx, []byte(testHeader), strings.NewReader(body), size)
}

// TestBDATWrongSize: a message that is not the size it was announced as,
// or (the same, once its bare LF becomes CRLF) not canonical, never
// reaches the backend, and no byte past the chunk is sent, where the
// backend would read it as a command. The connection is closed, so the
// backend drops the partial chunk.
func TestBDATWrongSize(t *testing.T) {
	body := "Subject: x\r\n\r\nhello\r\n"
	// Past the chunk, a whole transaction: if it were read as commands,
	// the sink would take a second message.
	smuggled := "MAIL FROM:<evil@x.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n\r\nevil\r\n.\r\n"
	for _, tc := range []struct {
		name string
		body string
		size int64
	}{
		{"longer", body + smuggled, int64(len(body))},
		{"shorter", body, int64(len(body)) + 10},
		{"bare LF", "Subject: x\r\n\r\nbare\nLF\r\n", int64(len("Subject: x\r\n\r\nbare\nLF\r\n"))},
		{"no final CRLF", "Subject: x\r\n\r\nno end", int64(len("Subject: x\r\n\r\nno end"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.sink(sink.Config{Extensions: sinkExtensions[1].exts})
			p := e.pool(testConfig(s.Addr()))
			res, err := data(p, tc.body, tc.size)
			if res != nil || asReply(t, err) != policy.ErrInternal {
				t.Fatalf("Data = %v, %v; want ErrInternal", res, err)
			}
			if err := s.WaitIdle(3e9); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Messages != 0 {
				t.Errorf("sink stats %+v: it got a message", st)
			}
			if st := p.Stats(); st.Open != 0 {
				t.Errorf("pool stats %+v, want the connection closed", st)
			}
		})
	}
}

// TestBDATRefused: the backend's refusal of the chunk is passed through,
// and the connection is reset (RFC 3030 §2) and used again.
func TestBDATRefused(t *testing.T) {
	e := newEnv(t)
	refuse := true
	s := e.sink(sink.Config{Extensions: sinkExtensions[1].exts, OnData: func(*sink.Message) *sink.Reply {
		if refuse {
			return &sink.Reply{Code: 554, Text: "5.7.1 content refused"}
		}
		return nil
	}})
	p := e.pool(testConfig(s.Addr()))
	body := "Subject: x\r\n\r\nhello\r\n"
	_, err := data(p, body, int64(len(body)))
	if r := asReply(t, err); r.Code != 554 || r.Enhanced != [3]int{5, 7, 1} || !strings.Contains(r.Text, "content refused") {
		t.Fatalf("Data: %v, want the backend's 554 5.7.1", err)
	}
	refuse = false
	if _, err := data(p, body, int64(len(body))); err != nil {
		t.Fatalf("next message: %v", err)
	}
	if st := s.Stats(); st.Rsets != 1 || st.Conns != 1 || st.Accepted != 1 {
		t.Errorf("sink stats %+v, want one RSET and the message on the same connection", st)
	}
}

// TestBDATBodyReadError: a body that fails to read partway never
// completes the chunk.
func TestBDATBodyReadError(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{Extensions: sinkExtensions[1].exts})
	p := e.pool(testConfig(s.Addr()))
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test", FirstRcpt: "b@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	part := "Subject: x\r\n\r\npartial\r\n"
	body := io.MultiReader(strings.NewReader(part), errReader{})
	if res, err := txn.Data(ctx, nil, body, int64(len(part))+100); res != nil || asReply(t, err) != policy.ErrInternal {
		t.Fatalf("Data = %v, %v; want ErrInternal", res, err)
	}
	if err := s.WaitIdle(3e9); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 0 {
		t.Errorf("sink stats %+v: it got a message", st)
	}
}
