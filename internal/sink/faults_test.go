package sink

import (
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOnRcptRefusesOne(t *testing.T) {
	s := start(t, Config{OnRcpt: func(rcpt, params string) *Reply {
		if rcpt == "bad@y.test" {
			return &Reply{550, "5.1.1 User unknown\n5.1.1 (no such mailbox)"}
		}
		return nil
	}})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<ok@y.test>\r\nRCPT TO:<bad@y.test>\r\nRCPT TO:<ok2@y.test>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	if got, want := c.expect(550), []string{"550-5.1.1 User unknown", "550 5.1.1 (no such mailbox)"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	c.expect(250)
	c.expect(354)
	c.send("x\r\n.\r\n")
	c.expect(250)
	ms, err := s.WaitMessages(1, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := ms[0].Rcpts; !slices.Equal(got, []string{"ok@y.test", "ok2@y.test"}) {
		t.Errorf("rcpts %q", got)
	}
}

func TestCallbacks(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	s := start(t, Config{
		OnMail: func(from, params string) *Reply {
			switch from {
			case "temp@x.test":
				return &Reply{451, "4.7.1 later"}
			case "bye@x.test":
				return &Reply{421, "4.3.2 closing"}
			}
			return nil
		},
		OnData: func(m *Message) *Reply {
			mu.Lock()
			seen = append(seen, m.ID+" "+string(m.Data))
			mu.Unlock()
			return &Reply{554, "5.7.1 no thanks"}
		},
	})
	dialogue(t, s.Addr(), []step{
		{"EHLO c\r\nMAIL FROM:<temp@x.test>\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y>\r\nDATA\r\n", []int{250, 451, 250, 250, 354}},
		{"x\r\n.\r\n", []int{554}},
	})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO c\r\nMAIL FROM:<bye@x.test>\r\n")
	c.expect(250)
	c.expect(421)
	c.closed()

	ms := s.Messages()
	if len(ms) != 1 || ms[0].Accepted || len(s.Accepted()) != 0 {
		t.Errorf("messages %+v", ms)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{ms[0].ID + " x\r\n"}; !slices.Equal(seen, want) {
		t.Errorf("OnData saw %q, want %q", seen, want)
	}
	if st := s.Stats(); st.Messages != 1 || st.Accepted != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGreeting(t *testing.T) {
	t.Run("421 closes", func(t *testing.T) {
		s := start(t, Config{Greeting: &Reply{421, "4.3.2 not now"}})
		c := dial(t, s.Addr())
		if got := c.expect(421); got[0] != "421 4.3.2 not now" {
			t.Errorf("got %q", got)
		}
		c.closed()
	})
	t.Run("554 waits for QUIT", func(t *testing.T) {
		s := start(t, Config{Greeting: &Reply{554, "5.7.1 go away"}})
		c := dial(t, s.Addr())
		c.expect(554)
		c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nQUIT\r\n")
		c.expect(503)
		c.expect(503)
		c.expect(221)
		c.closed()
	})
	t.Run("custom 220", func(t *testing.T) {
		s := start(t, Config{Greeting: &Reply{220, "mx.test ready"}})
		c := dial(t, s.Addr())
		if got := c.expect(220); got[0] != "220 mx.test ready" {
			t.Errorf("got %q", got)
		}
		c.send("EHLO c\r\n")
		c.expect(250)
	})
}

func TestHang(t *testing.T) {
	const txn = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"
	for _, tc := range []struct {
		phase  Phase
		before []step // answered
		last   string // never answered
	}{
		{PhaseGreeting, nil, ""},
		{PhaseMail, []step{{"EHLO c\r\n", []int{250}}}, "MAIL FROM:<a@x>\r\n"},
		// MAIL and RCPT pipelined: MAIL's reply is still sent.
		{PhaseRcpt, []step{{"EHLO c\r\n" + txn, []int{250, 250}}}, ""},
		{PhaseData, []step{{"EHLO c\r\n" + txn, []int{250, 250, 250}}}, "DATA\r\n"},
		{PhaseEOD, []step{{"EHLO c\r\n" + txn + "DATA\r\n", []int{250, 250, 250, 354}}}, "x\r\n.\r\n"},
	} {
		t.Run(string(tc.phase), func(t *testing.T) {
			s := start(t, Config{Hang: tc.phase})
			c := dial(t, s.Addr())
			if tc.phase != PhaseGreeting {
				c.expect(220)
			}
			for _, st := range tc.before {
				c.send(st.send)
				for _, code := range st.want {
					c.expect(code)
				}
			}
			c.send(tc.last)
			c.silent(300 * time.Millisecond)
			if tc.phase == PhaseEOD {
				ms, err := s.WaitMessages(1, 2*time.Second)
				if err != nil || ms[0].Accepted || string(ms[0].Data) != "x\r\n" {
					t.Errorf("got %+v, %v", ms, err)
				}
			}
			t0 := time.Now()
			s.Close()
			if d := time.Since(t0); d > time.Second {
				t.Errorf("Close took %v", d)
			}
			c.closed()
		})
	}
}

func TestDropAfterDataBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop int
		data string
	}{
		{"drops mid-data", 10, strings.Repeat("y", 100) + "\r\n.\r\n"},
		{"message shorter than limit", 1000, "short\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Config{DropAfterDataBytes: tc.drop})
			c := dial(t, s.Addr())
			c.expect(220)
			c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
			c.expect(250)
			c.expect(250)
			c.expect(250)
			c.expect(354)
			io.WriteString(c.conn, tc.data) // may fail once the sink has closed
			dropped := len(tc.data) > tc.drop
			if dropped {
				c.closed()
			} else {
				c.expect(250)
			}
			if dropped {
				if err := s.WaitIdle(2 * time.Second); err != nil {
					t.Error(err)
				}
			}
			want := 1
			if dropped {
				want = 0 // not even offered: DATA never completed
			}
			if got := len(s.Messages()); got != want || len(s.Accepted()) != want {
				t.Errorf("%d messages, want %d: %+v", got, want, s.Messages())
			}
		})
	}
}

func TestSetConfig(t *testing.T) {
	s := start(t, Config{})
	c := dial(t, s.Addr())
	c.expect(220)
	c.send("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	s.SetConfig(func(cfg *Config) {
		cfg.OnRcpt = func(string, string) *Reply { return &Reply{550, "5.1.1 gone"} }
		cfg.Hostname = "ignored.test"
	})
	c.send("RCPT TO:<c@y>\r\nEHLO c\r\n") // applies to the open connection
	c.expect(550)
	if got := c.expect(250); got[0] != "250-sink.test" {
		t.Errorf("Hostname changed by SetConfig: %q", got)
	}

	// Flip OnData while clients run, for the race detector. The earlier
	// OnRcpt is cleared first, synchronously: the goroutine's first turn
	// may come after the first RCPT.
	s.SetConfig(func(cfg *Config) { cfg.OnRcpt, cfg.OnData = nil, nil })
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetConfig(func(cfg *Config) {
				cfg.OnRcpt = nil
				cfg.OnData = nil
				if i%2 == 0 {
					cfg.OnData = func(*Message) *Reply { return &Reply{554, "5.7.1 no"} }
				}
			})
			time.Sleep(time.Millisecond)
		}
	})
	for range 10 {
		c.send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
		c.expect(250)
		c.expect(250)
		c.expect(354)
		c.send("x\r\n.\r\n")
		if code, lines, err := readReply(c.r); err != nil || (code != 250 && code != 554) {
			t.Fatalf("final reply %d %q, %v", code, lines, err)
		}
	}
	close(stop)
	wg.Wait()
}
