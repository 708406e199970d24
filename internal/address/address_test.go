package address

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/policy"
)

func testDomains(t testing.TB) *Domains {
	t.Helper()
	d, err := NewDomains([]string{"ours.test", "bücher.test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decide is the recipient decision the SMTP session makes: syntax first,
// then whether the domain is ours.
func decide(d *Domains, s string, utf8 bool) (Addr, error) {
	a, err := ParseRecipient(s, utf8)
	if err != nil {
		return Addr{}, err
	}
	if !d.Contains(a.Domain) {
		return Addr{}, policy.ErrRelayDenied
	}
	return a, nil
}

type relayCase struct {
	name  string
	rcpt  string // what the client sent; "-" where go-smtp refuses it
	got   string // what go-smtp hands the session
	utf8  bool
	want  *policy.Reply // nil: accepted and ours
	relay string        // Addr.String() when accepted
}

func long(n int) string { return strings.Repeat("a", n) }

// relayCases are recipients as go-smtp v0.25.1 delivers them (got) for the
// RCPT TO argument a client sent (rcpt, for the reader; "-" where go-smtp
// itself refuses the command, so the string can only reach us if go-smtp
// changes). TestNoOpenRelay checks the decision and the relayed form for
// the domains ours.test and bücher.test.
var relayCases = []relayCase{
	{"plain", `<user@ours.test>`, "user@ours.test", false, nil, "user@ours.test"},
	{"upper-case domain, local case kept", `<User@OURS.TEST>`, "User@OURS.TEST", false, nil, "User@ours.test"},
	{"trailing dot", `<user@ours.test.>`, "user@ours.test.", false, nil, "user@ours.test"},
	{"two trailing dots", `<user@ours.test..>`, "user@ours.test..", false, policy.ErrBadRcptDom, ""},
	{"ours as prefix of foreign", `<user@ours.test.evil.test>`, "user@ours.test.evil.test", false, policy.ErrRelayDenied, ""},
	{"foreign", `<user@evil.test>`, "user@evil.test", false, policy.ErrRelayDenied, ""},
	{"subdomain not listed", `<user@sub.ours.test>`, "user@sub.ours.test", false, policy.ErrRelayDenied, ""},
	{"suffix lookalike", `<user@evilours.test>`, "user@evilours.test", false, policy.ErrRelayDenied, ""},
	{"percent hack", `<user%evil.test@ours.test>`, "user%evil.test@ours.test", false, policy.ErrRouteHack, ""},
	{"bang path", `<evil.test!user@ours.test>`, "evil.test!user@ours.test", false, policy.ErrRouteHack, ""},
	{"@ in quoted local part", `<"user@evil.test"@ours.test>`, "user@evil.test@ours.test", false, policy.ErrRouteHack, ""},
	// go-smtp ends an unquoted local part at the first '@' and takes
	// the rest as the domain, which gives the same string.
	{"@ in unquoted address", `<user@evil.test@ours.test>`, "user@evil.test@ours.test", false, policy.ErrRouteHack, ""},
	{"ours then foreign", `<user@ours.test@evil.test>`, "user@ours.test@evil.test", false, policy.ErrRouteHack, ""},
	{"ours as local part", `<ours.test@evil.test>`, "ours.test@evil.test", false, policy.ErrRelayDenied, ""},
	{"quoted route in local part", `<"@evil.test:user"@ours.test>`, "@evil.test:user@ours.test", false, policy.ErrRouteHack, ""},
	{"quoted colon", `<"evil.test:user"@ours.test>`, "evil.test:user@ours.test", false, policy.ErrRouteHack, ""},
	{"quoted comma", `<"evil.test,user"@ours.test>`, "evil.test,user@ours.test", false, policy.ErrRouteHack, ""},
	{"quoted percent", `<"user%evil.test"@ours.test>`, "user%evil.test@ours.test", false, policy.ErrRouteHack, ""},
	{"source route to us", `<@relay.test,@evil.test:user@ours.test>`, "user@ours.test", false, nil, "user@ours.test"},
	{"source route through us", `<@ours.test:user@evil.test>`, "user@evil.test", false, policy.ErrRelayDenied, ""},
	{"quoted with space", `<"john smith"@ours.test>`, "john smith@ours.test", false, nil, `"john smith"@ours.test`},
	{"quoted trailing space", `<"user "@ours.test>`, "user @ours.test", false, nil, `"user "@ours.test`},
	{"quoted double dot", `<"a..b"@ours.test>`, "a..b@ours.test", false, nil, `"a..b"@ours.test`},
	{"quoted leading dot", `<".user"@ours.test>`, ".user@ours.test", false, nil, `".user"@ours.test`},
	{"quoted escapes", `<"a\"b\\c"@ours.test>`, `a"b\c@ours.test`, false, nil, `"a\"b\\c"@ours.test`},
	{"quoted dot-string unquoted again", `<"user"@ours.test>`, "user@ours.test", false, nil, "user@ours.test"},
	{"atext specials", `<a+b=c/d{e}~f#@ours.test>`, "a+b=c/d{e}~f#@ours.test", false, nil, "a+b=c/d{e}~f#@ours.test"},
	{"IPv4 literal", `<user@[192.0.2.1]>`, "user@[192.0.2.1]", false, policy.ErrRelayDenied, ""},
	{"IPv6 literal", `<user@[IPv6:2001:db8::1]>`, "user@[IPv6:2001:db8::1]", false, policy.ErrRelayDenied, ""},
	{"loopback literal", `<postmaster@[127.0.0.1]>`, "postmaster@[127.0.0.1]", false, policy.ErrRelayDenied, ""},
	{"bracketed name", `<user@[ours.test]>`, "user@[ours.test]", false, policy.ErrRelayDenied, ""},
	{"half bracket", `<user@[ours.test>`, "user@[ours.test", false, policy.ErrBadRcptDom, ""},
	{"U-label without SMTPUTF8", `<user@bücher.test>`, "user@bücher.test", false, policy.ErrUTF8Needed, ""},
	{"U-label with SMTPUTF8", `<user@bücher.test> SMTPUTF8`, "user@bücher.test", true, nil, "user@xn--bcher-kva.test"},
	{"upper-case U-label", `<user@BÜCHER.test>`, "user@BÜCHER.test", true, nil, "user@xn--bcher-kva.test"},
	{"U-label trailing dot", `<user@bücher.test.>`, "user@bücher.test.", true, nil, "user@xn--bcher-kva.test"},
	{"A-label", `<user@xn--bcher-kva.test>`, "user@xn--bcher-kva.test", false, nil, "user@xn--bcher-kva.test"},
	{"A-label with SMTPUTF8", `<user@xn--bcher-kva.test>`, "user@xn--bcher-kva.test", true, nil, "user@xn--bcher-kva.test"},
	{"upper-case A-label", `<user@XN--BCHER-KVA.TEST>`, "user@XN--BCHER-KVA.TEST", false, nil, "user@xn--bcher-kva.test"},
	{"foreign U-label", `<user@пример.test>`, "user@пример.test", true, policy.ErrRelayDenied, ""},
	// UTS #46 maps U+3002 IDEOGRAPHIC FULL STOP to '.', so x/net/idna's
	// Lookup.ToASCII turns "ours。test" into "ours.test" (checked against
	// x/net v0.62.0), and the DNS would resolve it as ours.test: it IS
	// our domain, and relaying it as user@ours.test is correct.
	{"ideographic full stop", `<user@ours。test>`, "user@ours。test", true, nil, "user@ours.test"},
	{"ideographic full stop without SMTPUTF8", `<user@ours。test>`, "user@ours。test", false, policy.ErrUTF8Needed, ""},
	{"fullwidth full stop", `<user@ours．test>`, "user@ours．test", true, nil, "user@ours.test"},
	// UTS #46 maps fullwidth letters to ASCII, as a resolver would: it is
	// ours.test, and the backend is given the ASCII form.
	{"fullwidth letters", `<user@ｏｕｒｓ.test>`, "user@ｏｕｒｓ.test", true, nil, "user@ours.test"},
	{"non-ASCII local without SMTPUTF8", `<jöhn@ours.test>`, "jöhn@ours.test", false, policy.ErrUTF8Needed, ""},
	{"non-ASCII local with SMTPUTF8", `<jöhn@ours.test>`, "jöhn@ours.test", true, nil, "jöhn@ours.test"},
	{"bidi override in local", `<jo\u202ehn@ours.test>`, "jo\u202ehn@ours.test", true, policy.ErrBadRcpt, ""},
	{"C1 control in local", `<jo\u0085hn@ours.test>`, "jo\u0085hn@ours.test", true, policy.ErrBadRcpt, ""},
	{"invalid UTF-8 local", `<\xffuser@ours.test>`, "\xffuser@ours.test", true, policy.ErrBadRcpt, ""},
	{"invalid UTF-8 domain", `<user@\xffours.test>`, "user@\xffours.test", true, policy.ErrBadRcptDom, ""},
	{"empty local", "-", "@ours.test", false, policy.ErrBadRcpt, ""},
	{"empty domain", "-", "user@", false, policy.ErrBadRcpt, ""},
	{"no domain", "-", "postmaster", false, policy.ErrBadRcpt, ""},
	{"null path", "-", "", false, policy.ErrBadRcpt, ""},
	{"double dot domain", `<user@ours..test>`, "user@ours..test", false, policy.ErrBadRcptDom, ""},
	{"leading dot domain", `<user@.ours.test>`, "user@.ours.test", false, policy.ErrBadRcptDom, ""},
	{"only a dot", `<user@.>`, "user@.", false, policy.ErrBadRcptDom, ""},
	{"leading hyphen", `<user@-ours.test>`, "user@-ours.test", false, policy.ErrBadRcptDom, ""},
	{"trailing hyphen", `<user@ours-.test>`, "user@ours-.test", false, policy.ErrBadRcptDom, ""},
	{"underscore label", `<user@under_score.ours.test>`, "user@under_score.ours.test", false, policy.ErrBadRcptDom, ""},
	{"percent-encoded dot", `<user@ours%2etest>`, "user@ours%2etest", false, policy.ErrBadRcptDom, ""},
	{"bang in domain", `<user@evil.test!ours.test>`, "user@evil.test!ours.test", false, policy.ErrBadRcptDom, ""},
	{"port in domain", `<user@ours.test:25>`, "user@ours.test:25", false, policy.ErrBadRcptDom, ""},
	{"NUL in local", `<"us\x00er"@ours.test>`, "us\x00er@ours.test", false, policy.ErrBadRcpt, ""},
	{"NUL in domain", "-", "user@ours.test\x00", false, policy.ErrBadRcptDom, ""},
	{"CR in local", `<"us\rer"@ours.test>`, "us\rer@ours.test", false, policy.ErrBadRcpt, ""},
	{"LF in domain", "-", "user@ours.test\nRCPT", false, policy.ErrBadRcptDom, ""},
	{"tab in local", `<"us\ter"@ours.test>`, "us\ter@ours.test", false, policy.ErrBadRcpt, ""},
	{"trailing whitespace", "-", "user@ours.test ", false, policy.ErrBadRcptDom, ""},
	{"64-octet local", "<" + long(64) + "@ours.test>", long(64) + "@ours.test", false, nil, long(64) + "@ours.test"},
	{"65-octet local", "<" + long(65) + "@ours.test>", long(65) + "@ours.test", false, policy.ErrBadRcpt, ""},
	{"64-octet label", "<u@" + long(64) + ".ours.test>", "u@" + long(64) + ".ours.test", false, policy.ErrBadRcptDom, ""},
	// 64 + 1 + 189 octets, plus the angle brackets: 256, the limit. It is
	// valid syntax, just not ours.
	{"path of 256 octets", "<" + long(64) + "@" + long(60) + "." + long(60) + "." + long(57) + ".ours.test>", long(64) + "@" + long(60) + "." + long(60) + "." + long(57) + ".ours.test", false, policy.ErrRelayDenied, ""},
	{"path of 257 octets", "<" + long(64) + "@" + long(60) + "." + long(60) + "." + long(58) + ".ours.test>", long(64) + "@" + long(60) + "." + long(60) + "." + long(58) + ".ours.test", false, policy.ErrBadRcpt, ""},
}

func TestNoOpenRelay(t *testing.T) {
	d := testDomains(t)
	for _, tt := range relayCases {
		t.Run(tt.name, func(t *testing.T) {
			a, err := decide(d, tt.got, tt.utf8)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("decide(%q, %v) = %v, want accepted", tt.got, tt.utf8, err)
				}
				if s := a.String(); s != tt.relay {
					t.Errorf("String() = %q, want %q", s, tt.relay)
				}
				return
			}
			if err != tt.want {
				t.Fatalf("decide(%q, %v) = %+v, %v; want %v", tt.got, tt.utf8, a, err, tt.want)
			}
		})
	}
}

func TestParseSender(t *testing.T) {
	tests := []struct {
		in     string
		utf8   bool
		want   *policy.Reply
		domain string
		str    string
	}{
		{"", false, nil, "", ""},
		{"user@evil.test", false, nil, "evil.test", "user@evil.test"},
		{"User@Example.TEST.", false, nil, "example.test", "User@example.test"},
		{"user@localhost", false, nil, "localhost", "user@localhost"},
		{"john smith@example.test", false, nil, "example.test", `"john smith"@example.test`},
		{"user@[192.0.2.1]", false, nil, "[192.0.2.1]", "user@[192.0.2.1]"},
		{"user@[IPv6:2001:db8::1]", false, nil, "[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"},
		{"user@[ipv6:::ffff:192.0.2.1]", false, nil, "[ipv6:::ffff:192.0.2.1]", "user@[ipv6:::ffff:192.0.2.1]"},
		{"user@bücher.test", true, nil, "xn--bcher-kva.test", "user@xn--bcher-kva.test"},
		{"jöhn@example.test", true, nil, "example.test", "jöhn@example.test"},
		{"user@bücher.test", false, policy.ErrUTF8Needed, "", ""},
		{"jöhn@example.test", false, policy.ErrUTF8Needed, "", ""},
		{"user@[300.0.2.1]", false, policy.ErrBadSender, "", ""},
		{"user@[192.0.2.01]", false, policy.ErrBadSender, "", ""},
		{"user@[2001:db8::1]", false, policy.ErrBadSender, "", ""},
		{"user@[IPv6:192.0.2.1]", false, policy.ErrBadSender, "", ""},
		{"user@[IPv6:fe80::1%eth0]", false, policy.ErrBadSender, "", ""},
		{"user@[x-tag:whatever]", false, policy.ErrBadSender, "", ""},
		{"user@[]", false, policy.ErrBadSender, "", ""},
		{"user%evil.test@example.test", false, policy.ErrBadSender, "", ""},
		{"evil!user@example.test", false, policy.ErrBadSender, "", ""},
		{"user@evil.test@example.test", false, policy.ErrBadSender, "", ""},
		{"user@under_score.test", false, policy.ErrBadSender, "", ""},
		{"user@", false, policy.ErrBadSender, "", ""},
		{"@example.test", false, policy.ErrBadSender, "", ""},
		{"us\x00er@example.test", false, policy.ErrBadSender, "", ""},
		{strings.Repeat("a", 65) + "@example.test", false, policy.ErrBadSender, "", ""},
	}
	for _, tt := range tests {
		a, err := ParseSender(tt.in, tt.utf8)
		if tt.want != nil {
			if err != tt.want {
				t.Errorf("ParseSender(%q, %v) = %+v, %v; want %v", tt.in, tt.utf8, a, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSender(%q, %v) = %v", tt.in, tt.utf8, err)
			continue
		}
		if a.Domain != tt.domain || a.String() != tt.str || a.IsNull() != (tt.in == "") {
			t.Errorf("ParseSender(%q, %v) = %+v (%q, null %v); want domain %q, %q", tt.in, tt.utf8, a, a.String(), a.IsNull(), tt.domain, tt.str)
		}
	}
}

func TestQuoteLocal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"user", "user"},
		{"first.last", "first.last"},
		{"a+tag", "a+tag"},
		{"jöhn", "jöhn"},
		{"john smith", `"john smith"`},
		{"a..b", `"a..b"`},
		{".a", `".a"`},
		{"a.", `"a."`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"(x)", `"(x)"`},
		{"a;b<c>[d]", `"a;b<c>[d]"`},
	}
	for _, tt := range tests {
		if got := quoteLocal(tt.in); got != tt.want {
			t.Errorf("quoteLocal(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if s := (Addr{}).String(); s != "" {
		t.Errorf("null sender String() = %q", s)
	}
}

func TestDomains(t *testing.T) {
	d, err := NewDomains([]string{"OURS.test.", "bücher.test", "xn--bcher-kva.test", "пример.рф", "Other.Test"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"other.test", "ours.test", "xn--bcher-kva.test", "xn--e1afmkfd.xn--p1ai"}
	if got := d.List(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("List() = %q, want %q", got, want)
	}
	d.List()[0] = "mutated"
	if !d.Contains("other.test") {
		t.Error("List() exposed the internal slice")
	}
	contains := []struct {
		in   string
		want bool
	}{
		{"ours.test", true},
		{"OURS.TEST", true},
		{"ours.test.", true},
		{"ours.test..", false},
		{"ours。test", true},
		{"bücher.test", true},
		{"BÜCHER.TEST.", true},
		{"xn--bcher-kva.test", true},
		{"XN--BCHER-KVA.test", true},
		{"ПРИМЕР.РФ", true},
		{"sub.ours.test", false},
		{"ours.test.evil.test", false},
		{"test", false},
		{"", false},
		{".", false},
		{"[192.0.2.1]", false},
		{"ours%2etest", false},
		{"ours.test\x00", false},
	}
	for _, tt := range contains {
		if got := d.Contains(tt.in); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	var nilSet *Domains
	if nilSet.Contains("ours.test") || nilSet.List() != nil {
		t.Error("nil *Domains is not empty")
	}
}

func TestNewDomainsInvalid(t *testing.T) {
	for _, entry := range []string{
		"", ".", "ours..test", "-ours.test", "under_score.test", "[192.0.2.1]",
		"ours.test:25", "user@ours.test", "ours test", strings.Repeat("a", 64) + ".test",
	} {
		if _, err := NewDomains([]string{"ours.test", entry}); err == nil {
			t.Errorf("NewDomains accepted %q", entry)
		}
	}
}

// goSMTPMailbox mimics go-smtp v0.25.1's parser.parseMailbox on the text
// between the angle brackets: a Quoted-string local part is unquoted, a
// Dot-string one is read up to '@' and refused if it holds specials, and the
// domain runs to a space, tab or '>'. ok is false where go-smtp would refuse
// the command or leave text unparsed.
func goSMTPMailbox(s string) (string, bool) {
	var local strings.Builder
	i := 0
	if strings.HasPrefix(s, `"`) {
		for i = 1; ; i++ {
			if i >= len(s) {
				return "", false
			}
			c := s[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				if i++; i >= len(s) {
					return "", false
				}
				c = s[i]
			}
			local.WriteByte(c)
		}
	} else {
		for ; i < len(s) && s[i] != '@'; i++ {
			if strings.IndexByte("()<>[]:;\\,\" \t", s[i]) >= 0 {
				return "", false
			}
			local.WriteByte(s[i])
		}
	}
	if local.Len() == 0 || i >= len(s) || s[i] != '@' {
		return "", false
	}
	domain := s[i+1:]
	if domain == "" || strings.ContainsAny(domain, " \t>") {
		return "", false
	}
	return local.String() + "@" + domain, true
}

func TestGoSMTPMailbox(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"user@ours.test", "user@ours.test", true},
		{`"john smith"@ours.test`, "john smith@ours.test", true},
		{`"a\"b\\c"@ours.test`, `a"b\c@ours.test`, true},
		{`"x@evil.test"@ours.test`, "x@evil.test@ours.test", true},
		{"a@b@ours.test", "a@b@ours.test", true},
		{"john smith@ours.test", "", false},
		{`"unterminated@ours.test`, "", false},
		{"@ours.test", "", false},
		{"user@", "", false},
	}
	for _, tt := range tests {
		got, ok := goSMTPMailbox(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("goSMTPMailbox(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseRecipient(f *testing.F) {
	for _, s := range []string{
		"user@ours.test", "User@OURS.TEST.", "john smith@ours.test", `a"b\c@ours.test`,
		"user%evil.test@ours.test", "evil!user@ours.test", "x@evil.test@ours.test",
		"user@[192.0.2.1]", "user@bücher.test", "user@xn--bcher-kva.test", "user@ours。test",
		"jöhn@ours.test", "a..b@ours.test", "user@ours..test", "@ours.test", "user@", "",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	d := testDomains(f)
	f.Fuzz(func(t *testing.T, s string, utf8 bool) {
		a, err := ParseRecipient(s, utf8)
		if err != nil {
			if _, isReply := err.(*policy.Reply); !isReply {
				t.Fatalf("ParseRecipient(%q) returned a non-reply error %v", s, err)
			}
			return
		}
		for i := 0; i < len(a.Domain); i++ {
			if c := a.Domain[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				t.Fatalf("ParseRecipient(%q): domain %q is not lower-case LDH", s, a.Domain)
			}
		}
		// The backend must see the same mailbox: go-smtp on its side
		// parses what we send back to exactly this address.
		relayed := a.String()
		back, ok := goSMTPMailbox(relayed)
		if !ok {
			t.Fatalf("ParseRecipient(%q): go-smtp would refuse relayed form %q", s, relayed)
		}
		b, err := ParseRecipient(back, utf8)
		if err != nil || b != a {
			t.Fatalf("ParseRecipient(%q) = %+v; relayed %q re-parses to %+v, %v", s, a, relayed, b, err)
		}
		ours := d.Contains(a.Domain)
		raw := s[strings.LastIndexByte(s, '@')+1:]
		if d.Contains(raw) != ours || d.Contains(strings.ToUpper(a.Domain)+".") != ours {
			t.Fatalf("ParseRecipient(%q): Contains disagrees between %q and %q", s, raw, a.Domain)
		}
	})
}
