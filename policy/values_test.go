package policy

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestValuesSet(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name string
		val  any
		want any // stored form; nil = Set fails
	}{
		{"subject", "hi", "hi"},
		{"helo", "MX.Example.", "MX.Example."},
		{"mail_from", "", ""},
		{"client.ip", ip, ip},
		{"client.ip", netip.Addr{}, nil},
		{"client.ip", "192.0.2.1", nil},
		{"client.port", 25, 25.0},
		{"size", int64(1 << 40), float64(1 << 40)},
		{"size", uint32(7), 7.0},
		{"size", 2.5, 2.5},
		{"size", math.NaN(), nil},
		{"size", math.Inf(1), nil},
		{"size", "5", nil},
		{"tls", true, true},
		{"tls", "true", nil},
		{"test.set", []string{"a"}, []string{"a"}},
		{"test.set", []string(nil), []string{}},
		{"test.set", []any{"a"}, nil},
		{"subject", 5, nil},
		{"header.X-Mailer", "x", "x"},
		{"score", 5.0, nil},
		{"nope", "x", nil},
		{"header.", "x", nil},
	}
	for _, tt := range tests {
		v := NewValues()
		err := v.Set(tt.name, tt.val)
		if (err == nil) != (tt.want != nil) {
			t.Errorf("Set(%q, %#v) error = %v, want ok=%v", tt.name, tt.val, err, tt.want != nil)
			continue
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("Set(%q) error %q lacks the package prefix", tt.name, err)
			}
			continue
		}
		got, ok := v.Get(tt.name)
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Set(%q, %#v); Get = %#v, %v; want %#v", tt.name, tt.val, got, ok, tt.want)
		}
	}
}

// TestValuesCopies: sets go in and out as copies, and clones are
// independent, so no caller can change facts behind the evaluation.
func TestValuesCopies(t *testing.T) {
	in := []string{"a"}
	v := NewValues()
	if err := v.Set("test.set", in); err != nil {
		t.Fatal(err)
	}
	in[0] = "changed"
	got, _ := v.Get("test.set")
	got.([]string)[0] = "changed"
	v.Map()["test.set"].([]string)[0] = "changed"
	c := v.Clone()
	if err := c.Set("test.set", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if again, _ := v.Get("test.set"); !reflect.DeepEqual(again, []string{"a"}) {
		t.Errorf("set changed from outside: %v", again)
	}
	if _, ok := NewValues().Clone().Get("tls"); ok {
		t.Error("clone of empty Values has tls")
	}
}

func TestValuesRoundTrip(t *testing.T) {
	tests := []map[string]any{
		{},
		{"client.ip": netip.MustParseAddr("192.0.2.1"), "client.port": 25, "helo": "mx.example", "helo.valid": true, "tls": false},
		{"client.ip": netip.MustParseAddr("::ffff:192.0.2.1")},
		{"client.ip": netip.MustParseAddr("fe80::1%eth0")},
		{"mail_from": "", "mail_from.domain": "", "rcpt": "a@b.example", "rcpt.domain": "b.example"},
		{"size": 1e15, "subject": "héllo\x00", "header.x-mailer": "m", "message_id": "<x@y>", "header_from.domain": "y"},
		{"test.set": []string{}, "test.mail-set": []string{"a.example", "b.example"}},
		{"size": -0.000001},
	}
	for _, m := range tests {
		roundTrip(t, vals(t, stringIPs(m)))
	}
}

// stringIPs turns netip.Addr values into strings for vals.
func stringIPs(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if a, ok := v.(netip.Addr); ok {
			v = a.String()
		}
		out[k] = v
	}
	return out
}

// roundTrip checks ValuesFromMap(Map()) through JSON, as the verdict
// record and `gateway replay` use it.
func roundTrip(t *testing.T, v *Values) {
	t.Helper()
	data, err := json.Marshal(v.Map())
	if err != nil {
		t.Fatalf("Map() does not marshal: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	back, err := ValuesFromMap(m)
	if err != nil {
		t.Fatalf("ValuesFromMap(%s): %v", data, err)
	}
	if !reflect.DeepEqual(back.m, v.m) {
		t.Errorf("round trip through %s:\n got %#v\nwant %#v", data, back.m, v.m)
	}
}

// TestValuesRoundTripRandom round-trips many random fact sets drawn from
// every registered kind.
func TestValuesRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		roundTrip(t, randomValues(r))
	}
}

// randomValues sets a random selection of facts to random values of
// their kind.
func randomValues(r *rand.Rand) *Values {
	v := NewValues()
	for _, d := range FactDefs() {
		if r.IntN(3) == 0 || d.Name == scoreFact {
			continue
		}
		name := d.Name
		if d.family() {
			name += randomString(r, "abcXYZ-_")
		}
		if err := v.Set(name, randomValue(r, d.Kind)); err != nil {
			panic(err)
		}
	}
	return v
}

func randomValue(r *rand.Rand, k Kind) any {
	switch k {
	case KindIP:
		if r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), 2, 1})
		}
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return netip.AddrFrom16(b)
	case KindNumber:
		return []any{r.IntN(1 << 20), r.NormFloat64() * 1e6, int64(-r.IntN(100)), 0.1}[r.IntN(4)]
	case KindBool:
		return r.IntN(2) == 0
	case KindSet:
		s := []string{}
		for range r.IntN(4) {
			s = append(s, randomString(r, "ab.ü"))
		}
		return s
	}
	return randomString(r, "aZ.@é\"\\ \t\x01")
}

func randomString(r *rand.Rand, alphabet string) string {
	runes := []rune(alphabet)
	var b strings.Builder
	for range 1 + r.IntN(12) {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	return b.String()
}

func TestValuesFromMapErrors(t *testing.T) {
	tests := []struct {
		m    map[string]any
		want []string // substrings of the error
	}{
		{map[string]any{"nope": 1, "zzz": 2, "tls": true}, []string{"unknown facts: nope, zzz"}},
		{map[string]any{"client.ip": "not an ip"}, []string{"fact client.ip"}},
		{map[string]any{"client.ip": 5.0}, []string{"want an IP address string"}},
		{map[string]any{"size": "5"}, []string{"fact size"}},
		{map[string]any{"size": json.Number("5x")}, []string{"fact size"}},
		{map[string]any{"test.set": []any{"a", 1.0}}, []string{"element 1"}},
		{map[string]any{"test.set": "a"}, []string{"fact test.set"}},
		{map[string]any{"score": 5.0}, []string{"score is computed"}},
		{map[string]any{"nope": 1, "tls": "yes"}, []string{"unknown facts: nope", "fact tls"}},
	}
	for _, tt := range tests {
		v, err := ValuesFromMap(tt.m)
		if err == nil || v != nil {
			t.Errorf("ValuesFromMap(%v) = %v, %v; want an error", tt.m, v, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ValuesFromMap(%v) error %q does not contain %q", tt.m, err, w)
			}
		}
	}
	v, err := ValuesFromMap(map[string]any{"size": json.Number("5"), "test.set": []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Get("size"); got != 5.0 {
		t.Errorf("json.Number size = %v", got)
	}
}
