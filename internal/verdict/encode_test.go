package verdict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/policy"
)

// stdMarshal is Marshal as it was before encode.go: the reference the
// hand-written encoder must match byte for byte.
func stdMarshal(r *Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameAsStd fails t unless Marshal(r) is what stdMarshal(r) returns: the
// same bytes, or the same error.
func sameAsStd(t *testing.T, r *Record) {
	t.Helper()
	want, wantErr := stdMarshal(r)
	got, gotErr := Marshal(r)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("error: got %v, encoding/json %v", gotErr, wantErr)
	}
	if gotErr != nil {
		if gotErr.Error() != wantErr.Error() {
			t.Fatalf("error: got %q, encoding/json %q", gotErr, wantErr)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got\n%s\nencoding/json\n%s", got, want)
	}
}

// handRendered reports whether the hand-written encoder rendered r itself
// rather than handing it to encoding/json; without this check, a bug that
// sent every record to the fallback would pass every comparison.
func handRendered(t *testing.T, r *Record) bool {
	t.Helper()
	_, err := appendRecord(nil, r)
	if err != nil && err != errUseStd {
		t.Fatalf("appendRecord: %v", err)
	}
	return err == nil
}

type point struct {
	X, Y int
	Tag  string `json:"tag,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func TestMarshalMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	nano := time.Date(2026, 11, 22, 12, 0, 0, 123456789, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	india := time.FixedZone("IST", 5*3600+30*60)
	full := func() *Record {
		return &Record{
			TS: ts, Schema: Schema, Ref: "R1", ConnID: "C1", Listener: "[::]:25",
			Client: Client{IP: "192.0.2.1", Port: 25, PTR: "mail.example.test", FCrDNS: ptr(true), Helo: "mail.example.test",
				TLS: &TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256"}},
			MailFrom: ptr("a@example.test"),
			Rcpts: []Rcpt{
				{Addr: "<b@ours.test>", Reason: policy.ReasonRelayDenied, Reply: ReplyOf(policy.ErrRelayDenied, "R1")},
				{Addr: "<c@ours.test>", Reason: policy.ReasonAccepted, Reply: Reply{Code: 250, Enhanced: "2.0.0", Text: "ok"}},
			},
			Size: 12345, RequireTLS: true, MessageID: "<id@example.test>", HeaderFrom: "A <a@example.test>",
			Checks: []Check{{Name: "dnsbl", Result: "listed", Detail: "zen", Score: 10, MS: 3}, {Name: "spf", Result: "pass"}},
			Rules:  []Rule{{Name: "r1", Action: policy.ActionReject, Score: 2.5, Shadow: true, Stage: policy.StageRcpt}, {Name: "r2"}},
			Facts:  map[string]any{"b": "x", "a": 1.5, "c": true},
			Greylist: &Greylist{State: "pass", Key: "k", Ref: "G1",
				FirstSeen: ts, PassAt: ts.Add(5 * time.Minute)},
			Shadow: &Shadow{Action: policy.ActionReject, Rule: "r1", Stage: policy.StageData, Reply: Reply{Code: 550}},
			Score:  12.5, Action: policy.ActionReject, Reason: policy.ReasonRelayDenied, Stage: policy.StageRcpt,
			Detail: "why", Reply: &Reply{Code: 550, Enhanced: "5.7.1", Text: "no"},
			Relay:      &Relay{Backend: "127.0.0.1:10025", Code: 250, Text: "2.0.0 Ok: queued as ABC", QueueID: "ABC", MS: 40},
			DurationMS: 1234,
		}
	}
	with := func(change func(r *Record)) *Record {
		r := full()
		change(r)
		return r
	}
	score := func(f float64) *Record { return with(func(r *Record) { r.Score = f }) }
	text := func(s string) *Record {
		return with(func(r *Record) {
			r.Detail, r.Rcpts[0].Addr, r.Facts[s] = s, s, s
		})
	}

	tests := []struct {
		name string
		rec  *Record
		// std: encoding/json must render this one (it is an error).
		std bool
	}{
		{name: "empty", rec: &Record{}},
		{name: "full", rec: full()},
		{name: "nil slices and maps", rec: with(func(r *Record) { r.Rcpts, r.Checks, r.Rules, r.Facts = nil, nil, nil, nil })},
		{name: "empty slices and maps", rec: with(func(r *Record) {
			r.Rcpts, r.Checks, r.Rules, r.Facts = []Rcpt{}, []Check{}, []Rule{}, map[string]any{}
		})},
		{name: "null sender", rec: with(func(r *Record) { r.MailFrom = ptr("") })},
		{name: "fcrdns false", rec: with(func(r *Record) { r.Client.FCrDNS = ptr(false) })},
		{name: "omitempty zeros", rec: with(func(r *Record) {
			r.Size, r.RequireTLS, r.Checks[0].Score, r.Rules[0].Score, r.Rules[0].Shadow, r.Relay.Code = 0, false, 0, 0, false, 0
		})},
		{name: "negative zero score", rec: score(math.Copysign(0, -1))},
		{name: "negative zero check score", rec: with(func(r *Record) { r.Checks[0].Score = math.Copysign(0, -1) })},
		{name: "1e21", rec: score(1e21)},
		{name: "just below 1e21", rec: score(999999999999999900000)},
		{name: "1e-7", rec: score(1e-7)},
		{name: "-1e-7", rec: score(-1e-7)},
		{name: "1e-6", rec: score(1e-6)},
		{name: "1e-300", rec: score(1e-300)},
		{name: "max float", rec: score(math.MaxFloat64)},
		{name: "smallest float", rec: score(math.SmallestNonzeroFloat64)},
		{name: "0.1", rec: score(0.1)},
		{name: "123456789.5", rec: score(123456789.5)},
		{name: "negative", rec: score(-3.75)},
		{name: "NaN", rec: score(math.NaN()), std: true},
		{name: "+Inf", rec: score(math.Inf(1)), std: true},
		{name: "NaN check score", rec: with(func(r *Record) { r.Checks[1].Score = math.NaN() }), std: true},
		{name: "-Inf rule score", rec: with(func(r *Record) { r.Rules[1].Score = math.Inf(-1) }), std: true},
		{name: "NaN fact", rec: with(func(r *Record) { r.Facts["nan"] = math.NaN() }), std: true},
		{name: "large ints", rec: with(func(r *Record) {
			r.Size, r.DurationMS, r.Client.Port, r.Checks[0].MS = math.MaxInt64, math.MinInt64, math.MaxInt, -1
			r.Facts["max"], r.Facts["min"] = int64(math.MaxInt64), math.MinInt
		})},
		{name: "html", rec: text(`<a href="x">&amp;</a>`)},
		{name: "quotes and backslashes", rec: text(`"\"\\`)},
		{name: "short escapes", rec: text("\b\f\n\r\t")},
		{name: "control chars", rec: text("\x00\x01\x1f\x7f x\x0by")},
		{name: "line separators", rec: text("a\u2028b\u2029c\u2027\u202a")},
		{name: "invalid utf-8", rec: text("a\xffb\xc3(\xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80")},
		{name: "truncated rune at end", rec: text("ab\xe2\x82")},
		{name: "multi-byte utf-8", rec: text("grüße, 日本語, 😀, \u00a0")},
		{name: "escaped keys", rec: with(func(r *Record) {
			r.Facts = map[string]any{"a\nb": 1.0, "\xff": 2.0, "\xfe": 3.0, "é": 4.0, "Z": 5.0, "": 6.0, "a\u2028": 7.0}
		})},
		{name: "every fact type", rec: with(func(r *Record) {
			r.Facts = map[string]any{
				"string": "s", "empty": "", "true": true, "false": false,
				"float": 0.5, "float zero": 0.0, "float big": 1e22, "float tiny": 1e-9,
				"int": 42, "int64": int64(-7), "nil": nil,
				"list": []string{"a", "<b>"}, "list empty": []string{}, "list nil": []string(nil),
				"map":      map[string]any{"z": 1, "a": []any{"x", nil, 2.5}, "h": "<&>"},
				"struct":   point{X: 1, Y: 2, Tag: "<t>"},
				"pointer":  &point{X: 3},
				"nil ptr":  (*point)(nil),
				"float32":  float32(0.1),
				"uint":     uint(7),
				"bytes":    []byte("hi"),
				"named":    policy.ActionReject,
				"time":     nano,
				"raw":      json.RawMessage(`{ "a" : "<x>" }`),
				"any list": []any{1, "two"},
			}
		})},
		{name: "unencodable fact", rec: with(func(r *Record) { r.Facts["ch"] = make(chan int) }), std: true},
		{name: "fact with NaN inside", rec: with(func(r *Record) { r.Facts["m"] = map[string]float64{"x": math.NaN()} }), std: true},
		{name: "greylist zero times", rec: with(func(r *Record) { r.Greylist = &Greylist{State: "new"} })},
		{name: "greylist one time", rec: with(func(r *Record) { r.Greylist.FirstSeen = time.Time{} })},
		{name: "zero ts", rec: with(func(r *Record) { r.TS = time.Time{} })},
		{name: "nanoseconds", rec: with(func(r *Record) { r.TS, r.Greylist.PassAt = nano, nano.Add(100) })},
		{name: "trailing zero nanos", rec: with(func(r *Record) { r.TS = ts.Add(120 * time.Millisecond) })},
		{name: "non-UTC zones", rec: with(func(r *Record) {
			r.TS, r.Greylist.FirstSeen, r.Greylist.PassAt = nano.In(berlin), ts.In(india), ts.In(time.FixedZone("", -9*3600))
		})},
		{name: "zone with seconds", rec: with(func(r *Record) { r.TS = ts.In(time.FixedZone("LMT", 3600+59)) })},
		{name: "zone hour 24", rec: with(func(r *Record) { r.TS = ts.In(time.FixedZone("", 24*3600)) }), std: true},
		{name: "zone hour 100", rec: with(func(r *Record) { r.TS = ts.In(time.FixedZone("", -100*3600)) }), std: true},
		{name: "year 0", rec: with(func(r *Record) { r.TS = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{name: "year 9999", rec: with(func(r *Record) { r.TS = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) })},
		{name: "year 10000", rec: with(func(r *Record) { r.TS = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), std: true},
		{name: "year -1", rec: with(func(r *Record) { r.TS = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }), std: true},
		{name: "greylist year 10000", rec: with(func(r *Record) { r.Greylist.PassAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), std: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sameAsStd(t, tt.rec)
			if hand := handRendered(t, tt.rec); hand == tt.std {
				t.Errorf("rendered by hand: %v, want %v", hand, !tt.std)
			}
		})
	}
}

// TestWriteConcurrent writes from many goroutines through the pooled
// buffers: every line must be whole and be the record it was written for.
func TestWriteConcurrent(t *testing.T) {
	var out lines
	w := NewWriter(&out)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				r := benchRecord()
				r.Ref = fmt.Sprintf("R%d-%d", g, i)
				// Vary the length so buffers of different sizes circulate.
				r.Detail = strings.Repeat("x", (g*each+i)%3000)
				if err := w.Write(r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(out.list) != workers*each {
		t.Fatalf("%d lines, want %d", len(out.list), workers*each)
	}
	seen := map[string]bool{}
	for _, l := range out.list {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		want, err := stdMarshal(&r)
		if err != nil || string(want) != l+"\n" {
			t.Fatalf("line\n%s\ndoes not round-trip to\n%s", l, want)
		}
		seen[r.Ref] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct records, want %d", len(seen), workers*each)
	}
}

// TestWriteError: a record encoding/json refuses is not written, and the
// error is encoding/json's.
func TestWriteError(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	err := w.Write(&Record{Score: math.NaN()})
	if err == nil || !strings.Contains(err.Error(), "json: unsupported value: NaN") || buf.Len() != 0 {
		t.Fatalf("err %v, wrote %q", err, buf.String())
	}
}

// lines is an io.Writer that copies each write, as a well-behaved writer
// must, and fails the test if a write is not exactly one line.
type lines struct {
	mu   sync.Mutex
	list []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if bytes.IndexByte(p, '\n') != len(p)-1 {
		return 0, fmt.Errorf("write is not one line: %q", p)
	}
	l.list = append(l.list, string(p[:len(p)-1]))
	return len(p), nil
}

func FuzzMarshal(f *testing.F) {
	f.Add("client.ip", "192.0.2.1", "Relay access denied", 12.5, 0.1, int64(25), true, int64(1795003200), int64(0), int32(0))
	f.Add("", "", "", 0.0, math.Copysign(0, -1), int64(0), false, int64(0), int64(0), int32(0))
	f.Add("a\nb,\xff,\u2028", "<&>\"\\", "\x00\x1f\x7f日本", 1e21, 1e-7, int64(-1), true, int64(-62135596800), int64(999999999), int32(-3600))
	f.Add("k,k,K", "v", "t", math.NaN(), math.Inf(1), int64(math.MaxInt64), false, int64(253402300800), int64(1), int32(86399))
	f.Add("x", "y", "z", 123456789.5, 5e-324, int64(math.MinInt64), true, int64(1e12), int64(-5), int32(5*3600+1800))
	f.Fuzz(func(t *testing.T, key, val, text string, score, fact float64, n int64, flag bool, sec, nsec int64, zone int32) {
		r := fuzzRecord(key, val, text, score, fact, n, flag, sec, nsec, zone)
		want, wantErr := stdMarshal(r)
		got, err := Marshal(r)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("error: got %v, encoding/json %v", err, wantErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got\n%q\nencoding/json\n%q", got, want)
		}
		// The fallback is only for what encoding/json refuses: every Facts
		// value here is one it can encode unless it holds a NaN or an
		// infinity, and then encoding/json fails too.
		if hand := handRendered(t, r); hand != (wantErr == nil) {
			t.Fatalf("rendered by hand: %v, encoding/json error: %v", hand, wantErr)
		}
	})
}

// fuzzRecord spreads the fuzzer's values over as many fields as it can,
// switching the optional parts on and off with n and flag.
func fuzzRecord(key, val, text string, score, fact float64, n int64, flag bool, sec, nsec int64, zone int32) *Record {
	loc := time.FixedZone(text, int(zone))
	at := time.Unix(sec, nsec).In(loc)
	r := &Record{
		TS: at, Schema: int(n), Ref: text, ConnID: val, Listener: key,
		Client: Client{IP: val, Port: int(n), PTR: text, Helo: key},
		Size:   n, RequireTLS: flag, MessageID: key, HeaderFrom: val,
		Checks: []Check{
			{Name: key, Result: val, Detail: text, Score: score, MS: n},
			{Name: val, Result: text, Score: fact},
		},
		Rules: []Rule{
			{Name: text, Action: policy.Action(key), Score: fact, Shadow: flag, Stage: policy.Stage(val)},
			{Name: key, Score: score},
		},
		Facts: map[string]any{
			key: text, val: score, "k." + text: fact, "b": flag, "n": n, "i": int(n),
			"nil": nil, "named": policy.Reason(val), "f32": float32(fact),
			"map": map[string]any{key: val, text: []any{fact, n}},
		},
		Score: score, Action: policy.Action(val), Reason: policy.Reason(text), Stage: policy.Stage(key),
		Detail: text, DurationMS: -n,
	}
	// More keys from key, which the fuzzer can fill with commas: duplicates,
	// prefixes of each other and invalid UTF-8 all test the sort.
	for i, k := range strings.Split(key, ",") {
		r.Facts[k] = []string{val, text}[:i%3]
		if i%3 == 2 {
			r.Facts[k] = []string(nil)
		}
	}
	if flag {
		r.Client.FCrDNS = &flag
		r.Client.TLS = &TLS{Version: val, Cipher: text}
		r.MailFrom = &text
		r.Rcpts = []Rcpt{{Addr: key, Reason: policy.Reason(val), Reply: Reply{Code: int(n), Enhanced: val, Text: text}}, {}}
		r.Greylist = &Greylist{State: key, Key: val, Ref: text, FirstSeen: at}
		r.Reply = &Reply{Code: int(n), Enhanced: key, Text: text}
	} else {
		r.Rcpts = []Rcpt{}
		r.Greylist = &Greylist{State: val, PassAt: at.Add(time.Duration(n))}
		r.Shadow = &Shadow{Action: policy.Action(key), Rule: val, Stage: policy.Stage(text), Reply: Reply{Text: key}}
	}
	if n%2 == 0 {
		r.Relay = &Relay{Backend: key, Code: int(n / 2), Text: val, QueueID: text, MS: n}
		r.Facts = map[string]any{} // empty: omitted
	}
	if n%3 == 0 {
		r.MailFrom = nil
		r.Checks = nil
	}
	return r
}

// benchRecord is a realistic record: a message that was scored, greylisted
// before, and relayed to two recipients.
func benchRecord() *Record {
	ts := time.Date(2026, 11, 22, 12, 0, 0, 123456789, time.UTC)
	return &Record{
		TS: ts, Schema: Schema, Ref: "01JD4S0Q7ZK2", ConnID: "c-8f3a91", Listener: "[::]:25",
		Client: Client{IP: "198.51.100.23", Port: 49152, PTR: "mail-yw1-f182.example.net", FCrDNS: ptr(true),
			Helo: "mail-yw1-f182.example.net", TLS: &TLS{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256"}},
		MailFrom: ptr("newsletter+bounce-1234@lists.example.net"),
		Rcpts: []Rcpt{
			{Addr: "<alice@ours.test>", Reason: policy.ReasonAccepted, Reply: Reply{Code: 250, Enhanced: "2.1.5", Text: "I'll make sure <alice@ours.test> gets this"}},
			{Addr: "<bob@ours.test>", Reason: policy.ReasonAccepted, Reply: Reply{Code: 250, Enhanced: "2.1.5", Text: "I'll make sure <bob@ours.test> gets this"}},
		},
		Size: 48213, MessageID: "<CAF=abc123.4567@mail.example.net>", HeaderFrom: "Example News <news@example.net>",
		Checks: []Check{
			{Name: "pregreet", Result: "pass", MS: 0},
			{Name: "fcrdns", Result: "pass", MS: 12},
			{Name: "dnsbl", Result: "listed", Detail: "zen.spamhaus.org=127.0.0.4", Score: 3.5, MS: 18},
			{Name: "helo", Result: "pass", MS: 0},
			{Name: "spf", Result: "pass", Detail: "include:_spf.example.net", MS: 22},
			{Name: "dkim", Result: "pass", Detail: "d=example.net s=2024a", MS: 31},
			{Name: "dmarc", Result: "pass", MS: 1},
			{Name: "greylist", Result: "pass", MS: 2},
		},
		Rules: []Rule{
			{Name: "dnsbl-listed", Score: 3.5, Stage: policy.StageRcpt},
			{Name: "bulk-header", Score: 1.25, Stage: policy.StageData},
			{Name: "newsletter-ok", Action: policy.ActionAccept, Shadow: true, Stage: policy.StageData},
		},
		Facts: map[string]any{
			"client.ip":          "198.51.100.23",
			"client.ptr":         "mail-yw1-f182.example.net",
			"client.fcrdns":      true,
			"client.port":        49152,
			"client.iplists":     []string{"partners"},
			"helo":               "mail-yw1-f182.example.net",
			"helo.valid":         true,
			"tls":                true,
			"tls.version":        "TLS 1.3",
			"pregreet":           "none",
			"dnsbl.listed":       true,
			"dnsbl.score":        3.5,
			"dnsbl.lists":        []string{"zen.spamhaus.org"},
			"spf":                "pass",
			"spf.domain":         "lists.example.net",
			"dkim":               "pass",
			"dkim.domains":       []string{"example.net", "esp.example.com"},
			"dmarc":              "pass",
			"dmarc.policy":       "none",
			"dmarc.aligned":      true,
			"mail_from.domain":   "lists.example.net",
			"header_from.domain": "example.net",
			"rcpt.count":         2,
			"size":               int64(48213),
			"subject":            "Your weekly digest: 12 new posts <and more>",
			"header.x-mailer":    "ExampleMailer 4.2",
			"header.list-id":     "<news.example.net>",
			"greylist":           "pass",
			"greylist.age":       312.75,
			"score":              4.75,
		},
		Greylist: &Greylist{State: "pass", Key: "198.51.100.0/24|lists.example.net|alice@ours.test", Ref: "01JD4R9X2B1C",
			FirstSeen: ts.Add(-312 * time.Second), PassAt: ts.Add(-12 * time.Second)},
		Score: 4.75, Action: policy.ActionAccept, Reason: policy.ReasonAccepted, Stage: policy.StageData,
		Relay:      &Relay{Backend: "127.0.0.1:10025", Code: 250, Text: "2.0.0 Ok: queued as 4XyZ1m2n3p", QueueID: "4XyZ1m2n3p", MS: 41},
		DurationMS: 1843,
	}
}

func TestBenchRecordMatches(t *testing.T) {
	r := benchRecord()
	sameAsStd(t, r)
	if !handRendered(t, r) {
		t.Fatal("the realistic record went to encoding/json")
	}
}

func BenchmarkMarshal(b *testing.B) {
	r := benchRecord()
	b.Run("std", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stdMarshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	// write is what the gateway runs per message: Writer.Write with its
	// pooled buffer.
	b.Run("write", func(b *testing.B) {
		w := NewWriter(io.Discard)
		b.ReportAllocs()
		for b.Loop() {
			if err := w.Write(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
