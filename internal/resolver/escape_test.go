package resolver

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

func TestTXTBytesUnescaped(t *testing.T) {
	s := serve(t, zoneserver.Zone{Origin: "esc.test", Text: "@ SOA a. b. 1 2 3 4 5\n" +
		`@ TXT "caf\195\169 \"quoted\" back\\slash" " tab\009end"` + "\n"})
	c, _ := client(t, Config{}, s.Addr())
	txt, err := c.LookupTXT(t.Context(), "esc.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := "café \"quoted\" back\\slash tab\tend"; len(txt) != 1 || txt[0] != want {
		t.Errorf("got %q, want %q", txt, want)
	}
}

func TestJoinTXT(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"v=spf1 ", "-all"}, "v=spf1 -all"},
		{[]string{`a\"b`}, `a"b`},
		{[]string{`a\\b`}, `a\b`},
		{[]string{`\195\169`}, "é"},
		{[]string{`\000`}, "\x00"},
		{[]string{`x\`}, `x\`},    // dangling
		{[]string{`\999`}, "999"}, // not a byte: a quoted digit
		{[]string{`\12`}, "12"},   // too short for \DDD
		{[]string{}, ""},
	}
	for _, tt := range tests {
		if got := joinTXT(tt.in); got != tt.want {
			t.Errorf("joinTXT(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzJoinTXT: any bytes packed into a TXT record and unpacked by
// miekg/dns come back unchanged from joinTXT.
func FuzzJoinTXT(f *testing.F) {
	f.Add([]byte("v=spf1 -all"))
	f.Add([]byte("\"\\\x00\xff\xc3\xa9"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 255 {
			raw = raw[:255]
		}
		// Build the wire form by hand: a character-string is a length byte
		// and the bytes, with no escaping at all.
		rdata := append([]byte{byte(len(raw))}, raw...)
		wire := []byte{0, 0, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, // header: 1 answer
			0, 0, 16, 0, 1, 0, 0, 0, 60, byte(len(rdata) >> 8), byte(len(rdata))} // ". TXT IN 60"
		wire = append(wire, rdata...)
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if got := joinTXT(m.Answer[0].(*dns.TXT).Txt); got != string(raw) {
			t.Errorf("joinTXT = %q, want %q", got, raw)
		}
	})
}
