package policy

import (
	"fmt"
	"testing"
)

// TestMatch runs every matcher of every kind and every combinator against
// values, including unset facts.
func TestMatch(t *testing.T) {
	type fs = map[string]any
	tests := []struct {
		cond  string
		facts fs
		score float64
		want  bool
	}{
		// string: exact and case-sensitive, regex, list, unset.
		{`{subject: hello}`, fs{"subject": "hello"}, 0, true},
		{`{subject: hello}`, fs{"subject": "Hello"}, 0, false},
		{`{subject: hello}`, fs{"subject": "hello "}, 0, false},
		{`{subject: "/^hel/"}`, fs{"subject": "hello"}, 0, true},
		{`{subject: "/^hel/"}`, fs{"subject": "HELLO"}, 0, false},
		{`{subject: "/^hel/i"}`, fs{"subject": "HELLO"}, 0, true},
		{`{subject: [a, "/b$/"]}`, fs{"subject": "xb"}, 0, true},
		{`{subject: [a, "/b$/"]}`, fs{"subject": "c"}, 0, false},
		{`{subject: ""}`, fs{"subject": ""}, 0, true},
		{`{subject: 5}`, fs{"subject": "5"}, 0, true},
		{`{subject: true}`, fs{"subject": "true"}, 0, true},
		{`{subject: "/usr/bin"}`, fs{"subject": "/usr/bin"}, 0, true},
		{`{subject: hello}`, fs{}, 0, false},
		{`{not: {subject: hello}}`, fs{}, 0, true},
		{`{not: {subject: "/./"}}`, fs{"subject": ""}, 0, true},
		{`{header.X-Mailer: "/^Bulk/"}`, fs{"header.x-mailer": "BulkMail 2"}, 0, true},
		{`{header.x-mailer: "/^Bulk/"}`, fs{"header.X-MAILER": "bulkmail"}, 0, false},
		{`{header.x-mailer: "/^Bulk/"}`, fs{"header.x-other": "BulkMail"}, 0, false},

		// domain: case, trailing dot, glob vs apex, regex on lower case, IDN.
		{`{helo: example.com}`, fs{"helo": "EXAMPLE.com."}, 0, true},
		{`{helo: Example.COM.}`, fs{"helo": "example.com"}, 0, true},
		{`{helo: example.com}`, fs{"helo": "mail.example.com"}, 0, false},
		{`{helo: "*.example.com"}`, fs{"helo": "mail.example.com"}, 0, true},
		{`{helo: "*.example.com"}`, fs{"helo": "a.b.Example.COM."}, 0, true},
		{`{helo: "*.example.com"}`, fs{"helo": "example.com"}, 0, false},
		{`{helo: "*.example.com"}`, fs{"helo": "badexample.com"}, 0, false},
		{`{helo: "*.example.com."}`, fs{"helo": "x.example.com"}, 0, true},
		{`{helo: "/^mail\\./"}`, fs{"helo": "MAIL.example.com"}, 0, true},
		{`{helo: "/^MAIL\\./"}`, fs{"helo": "mail.example.com"}, 0, true},
		{`{helo: "/com$/"}`, fs{"helo": "example.com."}, 0, true},
		{`{helo: bücher.example}`, fs{"helo": "xn--bcher-kva.example"}, 0, true},
		{`{helo: xn--bcher-kva.example}`, fs{"helo": "BÜCHER.example"}, 0, true},
		{`{helo: [a.example, "*.b.example"]}`, fs{"helo": "x.b.example"}, 0, true},
		{`{helo: [a.example, "*.b.example"]}`, fs{"helo": "b.example"}, 0, false},
		{`{helo: "[192.0.2.1]"}`, fs{"helo": "[192.0.2.1]"}, 0, true},
		{`{helo: example.com}`, fs{"mail_from.domain": "example.com"}, 0, false},

		// address: case, *@domain, *@*.domain, null sender, regex.
		{`{mail_from: User@Example.com}`, fs{"mail_from": "user@example.COM"}, 0, true},
		{`{mail_from: user@example.com}`, fs{"mail_from": "other@example.com"}, 0, false},
		{`{mail_from: "*@example.com"}`, fs{"mail_from": "anyone@EXAMPLE.com"}, 0, true},
		{`{mail_from: "*@example.com"}`, fs{"mail_from": "a@sub.example.com"}, 0, false},
		{`{mail_from: "*@*.example.com"}`, fs{"mail_from": "a@sub.example.com"}, 0, true},
		{`{mail_from: "*@*.example.com"}`, fs{"mail_from": "a@example.com"}, 0, false},
		{`{mail_from: ""}`, fs{"mail_from": ""}, 0, true},
		{`{mail_from: ""}`, fs{"mail_from": "a@example.com"}, 0, false},
		{`{mail_from: "/^bounce-/"}`, fs{"mail_from": "BOUNCE-1@example.com"}, 0, true},
		{`{mail_from: "/@example\\.com$/"}`, fs{"mail_from": "a@Example.com."}, 0, true},
		{`{rcpt: postmaster@bücher.example}`, fs{"rcpt": "Postmaster@xn--bcher-kva.example"}, 0, true},
		{`{rcpt: [a@x.example, "*@y.example"]}`, fs{"rcpt": "b@y.example"}, 0, true},

		// ip: address, CIDR, v6, mapped on either side, zones.
		{`{client.ip: 192.0.2.1}`, fs{"client.ip": "192.0.2.1"}, 0, true},
		{`{client.ip: 192.0.2.1}`, fs{"client.ip": "192.0.2.2"}, 0, false},
		{`{client.ip: 192.0.2.1}`, fs{"client.ip": "::ffff:192.0.2.1"}, 0, true},
		{`{client.ip: 192.0.2.0/24}`, fs{"client.ip": "192.0.2.200"}, 0, true},
		{`{client.ip: 192.0.2.0/24}`, fs{"client.ip": "192.0.3.1"}, 0, false},
		{`{client.ip: 192.0.2.0/24}`, fs{"client.ip": "::ffff:192.0.2.5"}, 0, true},
		{`{client.ip: "2001:db8::/32"}`, fs{"client.ip": "2001:db8::1"}, 0, true},
		{`{client.ip: "2001:db8::/32"}`, fs{"client.ip": "2001:db9::1"}, 0, false},
		{`{client.ip: "2001:db8::/32"}`, fs{"client.ip": "192.0.2.1"}, 0, false},
		{`{client.ip: "::ffff:192.0.2.1"}`, fs{"client.ip": "192.0.2.1"}, 0, true},
		{`{client.ip: "::ffff:192.0.2.0/120"}`, fs{"client.ip": "192.0.2.9"}, 0, true},
		{`{client.ip: "fe80::1"}`, fs{"client.ip": "fe80::1%eth0"}, 0, true},
		{`{client.ip: [10.0.0.0/8, 192.0.2.1]}`, fs{"client.ip": "10.1.2.3"}, 0, true},
		{`{client.ip: [10.0.0.0/8, 192.0.2.1]}`, fs{"client.ip": "11.0.0.1"}, 0, false},
		{`{not: {client.ip: 10.0.0.0/8}}`, fs{}, 0, true},

		// number: equality, string forms, every comparison, floats, lists.
		{`{size: 5}`, fs{"size": 5}, 0, true},
		{`{size: 5}`, fs{"size": 5.5}, 0, false},
		{`{size: "5"}`, fs{"size": int64(5)}, 0, true},
		{`{size: "> 5"}`, fs{"size": 5}, 0, false},
		{`{size: "> 5"}`, fs{"size": 6}, 0, true},
		{`{size: ">5"}`, fs{"size": 5.01}, 0, true},
		{`{size: ">= 5"}`, fs{"size": 5}, 0, true},
		{`{size: ">= 5"}`, fs{"size": 4.99}, 0, false},
		{`{size: "< 5.5"}`, fs{"size": 5.4}, 0, true},
		{`{size: "< 5.5"}`, fs{"size": 5.5}, 0, false},
		{`{size: "<= -1"}`, fs{"size": -1}, 0, true},
		{`{size: "!= 5"}`, fs{"size": 4}, 0, true},
		{`{size: "!= 5"}`, fs{"size": 5}, 0, false},
		{`{size: "== 2.5"}`, fs{"size": 2.5}, 0, true},
		{`{size: 1.5e3}`, fs{"size": 1500}, 0, true},
		{`{size: 0x10}`, fs{"size": 16}, 0, true},
		{`{size: [1, "> 100"]}`, fs{"size": 101}, 0, true},
		{`{size: [1, "> 100"]}`, fs{"size": 50}, 0, false},
		{`{size: "!= 5"}`, fs{}, 0, false},
		{`{score: ">= 5"}`, fs{}, 5, true},
		{`{score: ">= 5"}`, fs{}, 4.9, false},
		{`{score: "< 0"}`, fs{}, -0.5, true},

		// bool.
		{`{tls: true}`, fs{"tls": true}, 0, true},
		{`{tls: true}`, fs{"tls": false}, 0, false},
		{`{tls: false}`, fs{"tls": false}, 0, true},
		{`{tls: true}`, fs{}, 0, false},
		{`{tls: false}`, fs{}, 0, false},
		{`{not: {tls: true}}`, fs{}, 0, true},
		{`{tls: [true, false]}`, fs{"tls": false}, 0, true},

		// set: emptiness, any element as a domain, unset.
		{`{test.set: true}`, fs{"test.set": []string{}}, 0, false},
		{`{test.set: true}`, fs{"test.set": []string{"a"}}, 0, true},
		{`{test.set: false}`, fs{"test.set": []string{}}, 0, true},
		{`{test.set: false}`, fs{"test.set": []string{"a"}}, 0, false},
		{`{test.set: false}`, fs{}, 0, false},
		{`{test.set: zen.example}`, fs{"test.set": []string{"other.example", "ZEN.example."}}, 0, true},
		{`{test.set: zen.example}`, fs{"test.set": []string{"other.example"}}, 0, false},
		{`{test.set: "*.example"}`, fs{"test.set": []string{"a.example"}}, 0, true},
		{`{test.set: "*.example"}`, fs{"test.set": []string{"example"}}, 0, false},
		{`{test.set: "/^zen/"}`, fs{"test.set": []string{"x", "Zen.y"}}, 0, true},
		{`{test.set: [false, b.example]}`, fs{"test.set": []string{"b.example"}}, 0, true},
		{`{test.set: [false, b.example]}`, fs{"test.set": []string{"c.example"}}, 0, false},

		// combinators.
		{`{tls: true, helo: a.example}`, fs{"tls": true, "helo": "a.example"}, 0, true},
		{`{tls: true, helo: a.example}`, fs{"tls": true, "helo": "b.example"}, 0, false},
		{`{all: [{tls: true}, {helo: a.example}]}`, fs{"tls": true, "helo": "a.example"}, 0, true},
		{`{all: [{tls: true}, {helo: a.example}]}`, fs{"tls": true}, 0, false},
		{`{any: [{tls: true}, {helo: a.example}]}`, fs{"helo": "a.example"}, 0, true},
		{`{any: [{tls: true}, {helo: a.example}]}`, fs{}, 0, false},
		{`{not: {any: [{tls: true}, {helo: a.example}]}}`, fs{}, 0, true},
		{`{not: {all: [{tls: true}, {helo: a.example}]}}`, fs{"tls": true}, 0, true},
		{`{any: [{helo: "/^localhost/"}, {not: {helo.valid: true}}]}`, fs{"helo": "mx.example", "helo.valid": true}, 0, false},
		{`{any: [{helo: "/^localhost/"}, {not: {helo.valid: true}}]}`, fs{"helo": "localhost.x", "helo.valid": true}, 0, true},
		{`{any: [{helo: "/^localhost/"}, {not: {helo.valid: true}}]}`, fs{"helo": "mx", "helo.valid": false}, 0, true},
		{`{not: {not: {tls: true}}}`, fs{"tls": true}, 0, true},
		{`{all: [{any: [{tls: true}]}], size: "> 1"}`, fs{"tls": true, "size": 2}, 0, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.cond, tt.facts), func(t *testing.T) {
			c := condOf(t, tt.cond)
			if got := c.Match(vals(t, tt.facts), tt.score); got != tt.want {
				t.Errorf("%s.Match(%v, %v) = %v, want %v", c, tt.facts, tt.score, got, tt.want)
			}
		})
	}
}

// TestMatchNilValues: a condition tried before any fact exists sees every
// fact unset.
func TestMatchNilValues(t *testing.T) {
	if condOf(t, `{tls: true}`).Match(nil, 0) {
		t.Error("tls: true matched nil Values")
	}
	if !condOf(t, `{not: {tls: true}}`).Match(nil, 0) {
		t.Error("not(tls: true) did not match nil Values")
	}
}

func TestCondString(t *testing.T) {
	tests := []struct{ cond, want string }{
		{`{helo: example.com}`, `helo: example.com`},
		{`{helo: "*.example.com"}`, `helo: *.example.com`},
		{`{client.ip: [192.0.2.0/24, "2001:db8::/32"]}`, `client.ip: [192.0.2.0/24, 2001:db8::/32]`},
		{`{any: [{helo: "/^localhost/i"}, {not: {helo.valid: true}}]}`, `any(helo: /^localhost/i, not(helo.valid: true))`},
		{`{size: ">= 5", subject: "hello world"}`, `all(size: ">= 5", subject: "hello world")`},
		{`{subject: "5"}`, `subject: "5"`},
		{`{size: 5}`, `size: 5`},
		{`{mail_from: ""}`, `mail_from: ""`},
		{`{header.X-Mailer: "a, b"}`, `header.x-mailer: "a, b"`},
		{`{all: [{tls: false}, {test.set: true}]}`, `all(tls: false, test.set: true)`},
	}
	for _, tt := range tests {
		if got := condOf(t, tt.cond).String(); got != tt.want {
			t.Errorf("%s: String() = %s, want %s", tt.cond, got, tt.want)
		}
	}
}

// BenchmarkMatch keeps an eye on the per-transaction cost of a typical
// condition over a long allow list.
func BenchmarkMatch(b *testing.B) {
	list := "["
	for i := range 1000 {
		list += fmt.Sprintf("host%d.example, ", i)
	}
	c := condOf(b, `{any: [{helo: `+list+`"*.example.org"]}, {client.ip: [192.0.2.0/24, 198.51.100.0/24]}]}`)
	v := vals(b, map[string]any{"helo": "Mail.Example.NET", "client.ip": "203.0.113.9"})
	b.ReportAllocs()
	for b.Loop() {
		c.Match(v, 0)
	}
}
