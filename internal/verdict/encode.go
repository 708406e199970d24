package verdict

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file renders a Record without reflection. Every message writes one
// record, and encoding/json spent most of its time on reflection and on
// sorting Facts through reflect.Value. The output must stay byte for byte
// what encoding/json produces (with SetEscapeHTML(false)), because the
// verdict log is a public format and `gateway replay` and operators' tools
// read it; FuzzMarshal compares the two.
//
// Each piece below mirrors the encoding/json code it replaces, so a reviewer
// can hold the two side by side. Errors are not reproduced here: where
// encoding/json would fail (NaN, infinities, times MarshalJSON refuses, a
// Facts value it cannot encode), the encoder gives up with errUseStd and the
// caller renders the whole record with encoding/json, which then returns
// exactly the error it always did.

// errUseStd says the record needs encoding/json: it holds a value this
// encoder does not render itself. It never leaves the package.
var errUseStd = errors.New("verdict: record needs encoding/json")

// appendLine appends r as its JSON line, newline included, exactly as
// marshalStd does.
func appendLine(b []byte, r *Record) ([]byte, error) {
	out, err := appendRecord(b, r)
	if err == errUseStd {
		return appendStd(b, r)
	}
	if err != nil {
		return b, err
	}
	return append(out, '\n'), nil
}

// appendStd appends r as encoding/json renders it, with HTML escaping off
// and the newline Encoder.Encode adds. It is the reference the hand-written
// encoder reproduces, and the fallback when that encoder gives up.
func appendStd(b []byte, r *Record) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	// Encode writes nothing when it fails, so b is intact on error.
	if err := enc.Encode(r); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}

// appendRecord appends the JSON object for r without the trailing newline.
// It returns errUseStd when r holds a value only encoding/json may render.
func appendRecord(b []byte, r *Record) ([]byte, error) {
	e := encoder{b: b}
	e.record(r)
	if e.useStd {
		return b, errUseStd
	}
	return e.b, nil
}

// encoder appends to b. useStd is set by the first value it cannot render
// as encoding/json would; the rest of the output is then thrown away, so
// the methods need not stop early.
type encoder struct {
	b      []byte
	useStd bool
}

// The methods below follow the struct declarations in verdict.go field by
// field. Keys are written as literals with their leading comma: every
// struct starts with a field that has no omitempty, so the first key never
// needs one. An omitempty field is skipped when encoding/json's
// isEmptyValue would say it is empty: "", 0, false, nil pointer, and
// len() == 0 for slices and maps. An omitzero time.Time is skipped when
// IsZero reports true, because encoding/json calls IsZero when a type has it.

func (e *encoder) record(r *Record) {
	e.raw(`{"ts":`)
	e.time(r.TS)
	e.raw(`,"schema":`)
	e.int(int64(r.Schema))
	e.raw(`,"ref":`)
	e.string(r.Ref)
	e.raw(`,"conn_id":`)
	e.string(r.ConnID)
	if r.Listener != "" {
		e.raw(`,"listener":`)
		e.string(r.Listener)
	}
	e.raw(`,"client":`)
	e.client(&r.Client)
	if r.MailFrom != nil {
		e.raw(`,"mail_from":`)
		e.string(*r.MailFrom)
	}
	if len(r.Rcpts) != 0 {
		e.raw(`,"rcpts":[`)
		for i := range r.Rcpts {
			e.comma(i)
			e.rcpt(&r.Rcpts[i])
		}
		e.raw(`]`)
	}
	if r.Size != 0 {
		e.raw(`,"size":`)
		e.int(r.Size)
	}
	if r.RequireTLS {
		e.raw(`,"requiretls":true`)
	}
	if r.MessageID != "" {
		e.raw(`,"message_id":`)
		e.string(r.MessageID)
	}
	if r.HeaderFrom != "" {
		e.raw(`,"header_from":`)
		e.string(r.HeaderFrom)
	}
	if len(r.Checks) != 0 {
		e.raw(`,"checks":[`)
		for i := range r.Checks {
			e.comma(i)
			e.check(&r.Checks[i])
		}
		e.raw(`]`)
	}
	if len(r.Rules) != 0 {
		e.raw(`,"rules":[`)
		for i := range r.Rules {
			e.comma(i)
			e.rule(&r.Rules[i])
		}
		e.raw(`]`)
	}
	if len(r.Facts) != 0 {
		e.raw(`,"facts":`)
		e.facts(r.Facts)
	}
	if r.Greylist != nil {
		e.raw(`,"greylist":`)
		e.greylist(r.Greylist)
	}
	if r.Shadow != nil {
		e.raw(`,"shadow":`)
		e.shadow(r.Shadow)
	}
	e.raw(`,"score":`)
	e.float(r.Score)
	e.raw(`,"action":`)
	e.string(string(r.Action))
	e.raw(`,"reason":`)
	e.string(string(r.Reason))
	e.raw(`,"stage":`)
	e.string(string(r.Stage))
	if r.Detail != "" {
		e.raw(`,"detail":`)
		e.string(r.Detail)
	}
	if r.Reply != nil {
		e.raw(`,"reply":`)
		e.reply(r.Reply)
	}
	if r.Relay != nil {
		e.raw(`,"relay":`)
		e.relay(r.Relay)
	}
	e.raw(`,"duration_ms":`)
	e.int(r.DurationMS)
	e.raw(`}`)
}

func (e *encoder) client(c *Client) {
	e.raw(`{"ip":`)
	e.string(c.IP)
	e.raw(`,"port":`)
	e.int(int64(c.Port))
	if c.PTR != "" {
		e.raw(`,"ptr":`)
		e.string(c.PTR)
	}
	if c.FCrDNS != nil {
		e.raw(`,"fcrdns":`)
		e.bool(*c.FCrDNS)
	}
	if c.Helo != "" {
		e.raw(`,"helo":`)
		e.string(c.Helo)
	}
	if c.TLS != nil {
		e.raw(`,"tls":{"version":`)
		e.string(c.TLS.Version)
		e.raw(`,"cipher":`)
		e.string(c.TLS.Cipher)
		e.raw(`}`)
	}
	e.raw(`}`)
}

func (e *encoder) rcpt(r *Rcpt) {
	e.raw(`{"addr":`)
	e.string(r.Addr)
	e.raw(`,"reason":`)
	e.string(string(r.Reason))
	e.raw(`,"reply":`)
	e.reply(&r.Reply)
	e.raw(`}`)
}

func (e *encoder) check(c *Check) {
	e.raw(`{"name":`)
	e.string(c.Name)
	e.raw(`,"result":`)
	e.string(c.Result)
	if c.Detail != "" {
		e.raw(`,"detail":`)
		e.string(c.Detail)
	}
	// Like isEmptyValue, this also omits -0 (it equals 0) and keeps NaN,
	// which then makes float fall back to encoding/json and its error.
	if c.Score != 0 {
		e.raw(`,"score":`)
		e.float(c.Score)
	}
	e.raw(`,"ms":`)
	e.int(c.MS)
	e.raw(`}`)
}

func (e *encoder) rule(r *Rule) {
	e.raw(`{"name":`)
	e.string(r.Name)
	if r.Action != "" {
		e.raw(`,"action":`)
		e.string(string(r.Action))
	}
	if r.Score != 0 {
		e.raw(`,"score":`)
		e.float(r.Score)
	}
	if r.Shadow {
		e.raw(`,"shadow":true`)
	}
	e.raw(`,"stage":`)
	e.string(string(r.Stage))
	e.raw(`}`)
}

func (e *encoder) greylist(g *Greylist) {
	e.raw(`{"state":`)
	e.string(g.State)
	if g.Key != "" {
		e.raw(`,"key":`)
		e.string(g.Key)
	}
	if g.Ref != "" {
		e.raw(`,"ref":`)
		e.string(g.Ref)
	}
	if !g.FirstSeen.IsZero() {
		e.raw(`,"first_seen":`)
		e.time(g.FirstSeen)
	}
	if !g.PassAt.IsZero() {
		e.raw(`,"pass_at":`)
		e.time(g.PassAt)
	}
	e.raw(`}`)
}

func (e *encoder) shadow(s *Shadow) {
	e.raw(`{"action":`)
	e.string(string(s.Action))
	e.raw(`,"rule":`)
	e.string(s.Rule)
	e.raw(`,"stage":`)
	e.string(string(s.Stage))
	e.raw(`,"reply":`)
	e.reply(&s.Reply)
	e.raw(`}`)
}

func (e *encoder) reply(r *Reply) {
	e.raw(`{"code":`)
	e.int(int64(r.Code))
	e.raw(`,"enhanced":`)
	e.string(r.Enhanced)
	e.raw(`,"text":`)
	e.string(r.Text)
	e.raw(`}`)
}

func (e *encoder) relay(r *Relay) {
	e.raw(`{"backend":`)
	e.string(r.Backend)
	if r.Code != 0 {
		e.raw(`,"code":`)
		e.int(int64(r.Code))
	}
	if r.Text != "" {
		e.raw(`,"text":`)
		e.string(r.Text)
	}
	if r.QueueID != "" {
		e.raw(`,"queue_id":`)
		e.string(r.QueueID)
	}
	e.raw(`,"ms":`)
	e.int(r.MS)
	e.raw(`}`)
}

// maxStackKeys is how many Facts keys are sorted without a heap
// allocation; records have about 30. More still work, they just allocate.
const maxStackKeys = 64

// facts writes the map as encoding/json's mapEncoder does: keys sorted
// byte-wise (strings.Compare on the key strings, which for string keys are
// the keys themselves), each escaped like any string.
func (e *encoder) facts(m map[string]any) {
	var stack [maxStackKeys]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.raw(`{`)
	for i, k := range keys {
		e.comma(i)
		e.string(k)
		e.raw(`:`)
		e.value(m[k])
	}
	e.raw(`}`)
}

// value writes a Facts value. The types the checks put there are written
// here; anything else goes through encoding/json on its own (see
// valueStd). Named types (a policy.Action, say) are "anything else": their
// dynamic type is not string, and they might have a MarshalJSON.
func (e *encoder) value(v any) {
	switch v := v.(type) {
	case nil:
		e.raw(`null`)
	case string:
		e.string(v)
	case bool:
		e.bool(v)
	case float64:
		e.float(v)
	case int:
		e.int(int64(v))
	case int64:
		e.int(v)
	case []string:
		e.strings(v)
	default:
		e.valueStd(v)
	}
}

// strings writes a []string as encoding/json's sliceEncoder does: a nil
// slice is null, an empty one is [].
func (e *encoder) strings(s []string) {
	if s == nil {
		e.raw(`null`)
		return
	}
	e.raw(`[`)
	for i, v := range s {
		e.comma(i)
		e.string(v)
	}
	e.raw(`]`)
}

// valueStd writes v with encoding/json. Inside a map, encoding/json encodes
// an interface value exactly as it encodes the same value passed to Encode
// on its own, so this is the same output; the newline Encode adds is cut.
// If encoding fails, the whole record goes to encoding/json, which reports
// the error as it always did.
func (e *encoder) valueStd(v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		e.useStd = true
		return
	}
	e.b = append(e.b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

func (e *encoder) raw(s string) { e.b = append(e.b, s...) }

// comma writes the separator before every element but the first.
func (e *encoder) comma(i int) {
	if i > 0 {
		e.b = append(e.b, ',')
	}
}

func (e *encoder) string(s string) { e.b = appendString(e.b, s) }

func (e *encoder) bool(v bool) { e.b = strconv.AppendBool(e.b, v) }

// int writes any of the struct's int and int64 fields, as encoding/json's
// intEncoder does.
func (e *encoder) int(v int64) { e.b = strconv.AppendInt(e.b, v, 10) }

func (e *encoder) float(f float64) {
	b, ok := appendFloat(e.b, f)
	if !ok {
		e.useStd = true
		return
	}
	e.b = b
}

func (e *encoder) time(t time.Time) {
	b, ok := appendTime(e.b, t)
	if !ok {
		e.useStd = true
		return
	}
	e.b = b
}

// appendString is encoding/json's appendString with escapeHTML false: only
// '"', '\\' and control characters are escaped among ASCII, invalid UTF-8
// becomes \ufffd, and U+2028 and U+2029 are escaped for JSONP's sake.
func appendString(dst []byte, src string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(src); {
		if b := src[i]; b < utf8.RuneSelf {
			// encoding/json's safeSet: every ASCII byte but the
			// controls, '"' and '\\'.
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, src[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(src[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, src[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, src[start:]...)
	dst = append(dst, '"')
	return dst
}

// appendFloat is encoding/json's floatEncoder for 64 bits: the shortest
// decimal that round-trips, in 'f' form unless the number is very small or
// very large (ES6 number-to-string), with exponents unpadded ("1e-7", not
// "1e-07"). ok is false for NaN and infinities, which JSON cannot hold.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// appendTime writes t as time.Time.MarshalJSON does: RFC 3339 with
// nanoseconds, quoted (MarshalJSON's output needs no compacting, so
// encoding/json copies it as is). ok is false where MarshalJSON fails; the
// checks are those of time's appendStrictRFC3339, made on the same bytes:
// the year must be exactly four digits, and the zone hour below 24.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	s := b[n0:]
	if s[len("9999")] != '-' {
		return b, false
	}
	if s[len(s)-1] != 'Z' {
		c := s[len(s)-len("Z07:00")]
		hour := 10*(s[len(s)-5]-'0') + (s[len(s)-4] - '0')
		if ('0' <= c && c <= '9') || hour >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}
