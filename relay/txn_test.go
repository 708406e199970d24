package relay

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/policy"
)

func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))

	// Lines that start with a dot must be stuffed on the wire and arrive
	// unstuffed; a lone "." would otherwise end the message early.
	body := "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n"
	res := mustSend(t, p, body)

	if res.Code != 250 || res.Enhanced != [3]int{2, 0, 0} {
		t.Errorf("result %d %v, want 250 2.0.0", res.Code, res.Enhanced)
	}
	msgs := s.Accepted()
	if len(msgs) != 1 {
		t.Fatalf("sink accepted %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if got, want := string(m.Data), testHeader+body; got != want {
		t.Errorf("data at the sink:\n%q\nwant\n%q", got, want)
	}
	if !strings.Contains(string(m.Raw), "\r\n..hidden\r\n...two\r\n..\r\n") {
		t.Errorf("raw data not dot-stuffed: %q", m.Raw)
	}
	if res.QueueID != m.ID || res.Text != "Ok: queued as "+m.ID {
		t.Errorf("queue id %q text %q, want %q", res.QueueID, res.Text, m.ID)
	}
	if res.Backend != s.Addr() || res.Duration <= 0 {
		t.Errorf("backend %q duration %v", res.Backend, res.Duration)
	}
	if m.Helo != "gw.test" || m.From != "a@client.test" || !slices.Equal(m.Rcpts, []string{"b@example.org"}) {
		t.Errorf("envelope helo=%q from=%q rcpts=%q", m.Helo, m.From, m.Rcpts)
	}
	if st := p.Stats(); st.Open != 1 || st.Idle != 1 || st.InUse != 0 || st.Dials != 1 {
		t.Errorf("stats %+v, want one idle connection", st)
	}
}

func TestNullSenderAndHelo(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	cfg := testConfig(s.Addr())
	cfg.Helo = "relay.gw.test"
	p := e.pool(cfg)
	if _, err := send(t, p, MailParams{From: ""}, []string{"b@example.org"}, "x\r\n"); err != nil {
		t.Fatal(err)
	}
	m := s.Accepted()[0]
	if m.From != "" || m.Helo != "relay.gw.test" {
		t.Errorf("from %q helo %q, want null sender and relay.gw.test", m.From, m.Helo)
	}
}

func TestRcptPassthrough(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{
		OnRcpt: func(rcpt, _ string) *sink.Reply {
			switch rcpt {
			case "unknown@example.org":
				return &sink.Reply{Code: 550, Text: "5.1.1 No such user\nTry another one"}
			case "full@example.org":
				return &sink.Reply{Code: 452, Text: "4.2.2 Mailbox full"}
			case "plain@example.org":
				return &sink.Reply{Code: 550, Text: "Rejected"}
			}
			return nil
		},
	})
	p := e.pool(testConfig(s.Addr()))
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rcpt string
		want *policy.Reply // nil: accepted
	}{
		{"unknown@example.org", &policy.Reply{Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "No such user\nTry another one", Reason: policy.ReasonBackendRcpt}},
		{"ok@example.org", nil},
		{"full@example.org", &policy.Reply{Code: 452, Enhanced: [3]int{4, 2, 2}, Text: "Mailbox full", Reason: policy.ReasonBackendRcpt}},
		{"plain@example.org", &policy.Reply{Code: 550, Enhanced: [3]int{5, 0, 0}, Text: "Rejected", Reason: policy.ReasonBackendRcpt}},
		{"ok2@example.org", nil},
	} {
		err := txn.Rcpt(ctx, tc.rcpt)
		if tc.want == nil {
			if err != nil {
				t.Errorf("Rcpt(%s): %v", tc.rcpt, err)
			}
			continue
		}
		if got := asReply(t, err); *got != *tc.want {
			t.Errorf("Rcpt(%s) = %+v, want %+v", tc.rcpt, *got, *tc.want)
		}
	}
	if _, err := txn.Data(ctx, []byte(testHeader), strings.NewReader("x\r\n"), int64(len("x\r\n"))); err != nil {
		t.Fatal(err)
	}
	if got := s.Accepted()[0].Rcpts; !slices.Equal(got, []string{"ok@example.org", "ok2@example.org"}) {
		t.Errorf("sink rcpts %q", got)
	}
}

func TestMailRefused(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{
		OnMail: func(string, string) *sink.Reply { return &sink.Reply{Code: 553, Text: "5.7.1 Sender rejected"} },
	})
	p := e.pool(testConfig(s.Addr()))
	txn, err := p.Begin(context.Background(), MailParams{From: "a@client.test"})
	if txn != nil {
		t.Fatal("Begin returned a transaction with an error")
	}
	want := policy.Reply{Code: 553, Enhanced: [3]int{5, 7, 1}, Text: "Sender rejected", Reason: policy.ReasonBackendMail}
	if got := asReply(t, err); *got != want {
		t.Errorf("Begin = %+v, want %+v", *got, want)
	}
	// A refused MAIL leaves the connection fine: it waits in the pool.
	if st := p.Stats(); st.Idle != 1 || st.InUse != 0 {
		t.Errorf("stats %+v, want the connection idle", st)
	}
	s.SetConfig(func(c *sink.Config) { c.OnMail = nil })
	mustSend(t, p, "x\r\n")
	if st := s.Stats(); st.Conns != 1 {
		t.Errorf("sink saw %d connections, want 1", st.Conns)
	}
}

func TestFinalReply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply sink.Reply
		want  *policy.Reply // nil: success
		code  int
	}{
		{"reject", sink.Reply{Code: 554, Text: "5.7.1 Spam\nGo away"}, &policy.Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "Spam\nGo away", Reason: policy.ReasonBackendData}, 0},
		{"tempfail", sink.Reply{Code: 452, Text: "4.3.1 Insufficient system storage"}, &policy.Reply{Code: 452, Enhanced: [3]int{4, 3, 1}, Text: "Insufficient system storage", Reason: policy.ReasonBackendData}, 0},
		{"421", sink.Reply{Code: 421, Text: "4.3.2 Shutting down"}, &policy.Reply{Code: 451, Enhanced: [3]int{4, 3, 2}, Text: "Shutting down", Reason: policy.ReasonBackendData}, 0},
		{"251", sink.Reply{Code: 251, Text: "2.1.5 Forwarded queued as QID77"}, nil, 251},
		{"no enhanced", sink.Reply{Code: 250, Text: "OK id=1abc-0002Xy-Q1"}, nil, 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.sink(sink.Config{OnData: func(*sink.Message) *sink.Reply { return &tc.reply }})
			p := e.pool(testConfig(s.Addr()))
			res, err := send(t, p, MailParams{From: "a@client.test"}, []string{"b@example.org"}, "x\r\n")
			if tc.want != nil {
				if res != nil {
					t.Errorf("Data returned a result with error %v", err)
				}
				if got := asReply(t, err); *got != *tc.want {
					t.Errorf("Data = %+v, want %+v", *got, *tc.want)
				}
			} else if err != nil || res.Code != tc.code || res.Enhanced[0] != 2 {
				t.Fatalf("Data = %+v, %v; want %d", res, err, tc.code)
			}
			// The connection goes back without RSET unless the backend is
			// closing it (421), and the next message uses it.
			wantIdle := 1
			if tc.reply.Code == 421 {
				wantIdle = 0
			}
			if st := p.Stats(); st.Idle != wantIdle || st.Open != wantIdle {
				t.Errorf("stats %+v, want %d idle", st, wantIdle)
			}
			s.SetConfig(func(c *sink.Config) { c.OnData = nil })
			mustSend(t, p, "y\r\n")
			if st := s.Stats(); st.Rsets != 0 || st.Conns != 2-wantIdle {
				t.Errorf("sink stats %+v", st)
			}
		})
	}
	t.Run("queue id", func(t *testing.T) {
		e := newEnv(t)
		s := e.sink(sink.Config{OnData: func(*sink.Message) *sink.Reply {
			return &sink.Reply{Code: 250, Text: "OK id=1abc-0002Xy-Q1"}
		}})
		res := mustSend(t, e.pool(testConfig(s.Addr())), "x\r\n")
		if res.QueueID != "1abc-0002Xy-Q1" || res.Enhanced != [3]int{2, 0, 0} || res.Text != "OK id=1abc-0002Xy-Q1" {
			t.Errorf("result %+v", res)
		}
	})
}

func TestMailParams(t *testing.T) {
	all := sink.DefaultExtensions()
	without := func(kw string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(e string) bool { return strings.HasPrefix(e, kw) })
	}
	for _, tc := range []struct {
		name    string
		exts    []string
		m       MailParams
		want    []string // in MailParams at the sink
		notWant []string
		err     *policy.Reply
	}{
		{"size advertised", all, MailParams{Size: 1234}, []string{"SIZE=1234"}, nil, nil},
		{"size not advertised", without("SIZE"), MailParams{Size: 1234}, nil, []string{"SIZE"}, nil},
		{"no size given", all, MailParams{}, nil, []string{"SIZE"}, nil},
		{"8bitmime advertised", all, MailParams{EightBit: true}, []string{"BODY=8BITMIME"}, nil, nil},
		{"8bitmime not advertised", without("8BITMIME"), MailParams{EightBit: true}, nil, []string{"BODY"}, nil},
		{"utf8 advertised", all, MailParams{UTF8: true, From: "jö@client.test"}, []string{"SMTPUTF8"}, nil, nil},
		{"utf8 not advertised", without("SMTPUTF8"), MailParams{UTF8: true, From: "jö@client.test"}, nil, nil, policy.ErrUTF8Backend},
		{"no extensions", []string{}, MailParams{Size: 10, EightBit: true}, nil, []string{"SIZE", "BODY"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.sink(sink.Config{Extensions: tc.exts})
			p := e.pool(testConfig(s.Addr()))
			if tc.m.From == "" {
				tc.m.From = "a@client.test"
			}
			_, err := send(t, p, tc.m, []string{"b@example.org"}, "x\r\n")
			if tc.err != nil {
				if got := asReply(t, err); got != tc.err {
					t.Fatalf("error %v, want %v", got, tc.err)
				}
				if st := p.Stats(); st.Idle != 1 {
					t.Errorf("stats %+v: the connection should be back in the pool", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			params := s.Accepted()[0].MailParams
			for _, w := range tc.want {
				if !strings.Contains(params, w) {
					t.Errorf("MAIL parameters %q lack %s", params, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(params, w) {
					t.Errorf("MAIL parameters %q have %s", params, w)
				}
			}
		})
	}
}

func TestMisuse(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	ctx := context.Background()
	if _, err := p.Begin(ctx, MailParams{From: "a@b\r\nRSET"}); asReply(t, err) != policy.ErrInternal {
		t.Errorf("Begin with CRLF in From: %v", err)
	}
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Rcpt(ctx, "x\r\nDATA"); asReply(t, err) != policy.ErrInternal {
		t.Errorf("Rcpt with CRLF: %v", err)
	}
	if _, err := txn.Data(ctx, nil, strings.NewReader("x\r\n"), int64(len("x\r\n"))); asReply(t, err) != policy.ErrNoValidRcpt {
		t.Errorf("Data without recipients: %v", err)
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Data(ctx, nil, strings.NewReader("x\r\n"), int64(len("x\r\n"))); err != nil {
		t.Fatal(err)
	}
	txn.Abort() // no-op after Data
	txn.Abort()
	if err := txn.Rcpt(ctx, "c@example.org"); asReply(t, err) != policy.ErrInternal {
		t.Errorf("Rcpt after Data: %v", err)
	}
	if st := s.Stats(); st.Rsets != 0 {
		t.Errorf("Abort after Data sent RSET")
	}
	var nilTxn *Txn
	nilTxn.Abort()
}

func TestBodyReadError(t *testing.T) {
	e := newEnv(t)
	s := e.sink(sink.Config{})
	p := e.pool(testConfig(s.Addr()))
	ctx := context.Background()
	txn, err := p.Begin(ctx, MailParams{From: "a@client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Rcpt(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	body := io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial\r\n"), errReader{})
	res, err := txn.Data(ctx, []byte(testHeader), body, -1)
	if res != nil || asReply(t, err) != policy.ErrInternal {
		t.Fatalf("Data = %v, %v; want ErrInternal", res, err)
	}
	if err := s.WaitIdle(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 0 {
		t.Errorf("the sink got %d messages: the final dot was sent", st.Messages)
	}
	if st := p.Stats(); st.Open != 0 {
		t.Errorf("stats %+v, want the connection closed", st)
	}
	if _, err := txn.Data(ctx, nil, strings.NewReader("x"), int64(len("x"))); asReply(t, err) != policy.ErrInternal {
		t.Errorf("Data again: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("spool read failed") }

func TestQueueID(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"Ok: queued as 4Xk9sT0bq1z3", "4Xk9sT0bq1z3"},
		{"Ok: queued as S0000001A", "S0000001A"},
		{"OK id=1vQ2rS-000ABC-Xy", "1vQ2rS-000ABC-Xy"},
		{"5AMBc8Ye012345 Message accepted for delivery", "5AMBc8Ye012345"},
		{"Message queued with id abc.def-1", "abc.def-1"},
		{"Queued 1234.5678", "1234.5678"},
		{"Ok queued as x.y", "x"},
		{"Ok", ""},
		{"short Message accepted for delivery", ""},
		{"", ""},
	} {
		if got := QueueID(tc.text); got != tc.want {
			t.Errorf("QueueID(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestSplitEnhanced(t *testing.T) {
	for _, tc := range []struct {
		code     int
		text     string
		wantEnh  [3]int
		wantText string
	}{
		{250, "2.0.0 Ok: queued as X", [3]int{2, 0, 0}, "Ok: queued as X"},
		{250, "2.6.0 first\n2.6.0 second", [3]int{2, 6, 0}, "first\nsecond"},
		{250, "2.0.0 first\nsecond", [3]int{2, 0, 0}, "first\nsecond"},
		{250, "Ok", [3]int{2, 0, 0}, "Ok"},
		{250, "5.0.0 wrong class", [3]int{2, 0, 0}, "5.0.0 wrong class"},
		{250, "2.0 not a code", [3]int{2, 0, 0}, "2.0 not a code"},
		{250, "2.0.0", [3]int{2, 0, 0}, ""},
		{251, "2.1.5 forwarded", [3]int{2, 1, 5}, "forwarded"},
	} {
		enh, text := splitEnhanced(tc.code, tc.text)
		if enh != tc.wantEnh || text != tc.wantText {
			t.Errorf("splitEnhanced(%d, %q) = %v %q, want %v %q", tc.code, tc.text, enh, text, tc.wantEnh, tc.wantText)
		}
	}
}
