package dmarc

import (
	"slices"
	"testing"
)

func TestScanHeader(t *testing.T) {
	tests := []struct {
		name     string
		header   string
		froms    []string
		id, date string
	}{
		{name: "crlf", header: "From: a@x.test\r\nMessage-ID: <1@x>\r\nDate: today\r\n\r\nFrom: body@x.test\r\n",
			froms: []string{"a@x.test"}, id: "<1@x>", date: "today"},
		{name: "bare lf and folding", header: "From: \"A\"\n <a@x.test>\nMessage-Id:\n\t<1@x>\n\n",
			froms: []string{"\"A\" <a@x.test>"}, id: "<1@x>"},
		{name: "any case, WSP before the colon", header: "FROM : a@x.test\r\nfrom:b@x.test\r\n",
			froms: []string{"a@x.test", "b@x.test"}},
		{name: "lines without a colon are skipped, not merged", header: "garbage line\r\n continued\r\nFrom: a@x.test\r\n",
			froms: []string{"a@x.test"}},
		{name: "a continuation before any field", header: " From: a@x.test\r\nTo: b@x.test\r\n"},
		{name: "Resent-From and X-From are other fields", header: "Resent-From: a@x.test\r\nX-From: b@x.test\r\nFrom: c@x.test\r\n",
			froms: []string{"c@x.test"}},
		{name: "first Message-ID and Date win", header: "Message-ID: <1@x>\r\nMessage-ID: <2@x>\r\nDate: d1\r\nDate: d2\r\n",
			id: "<1@x>", date: "d1"},
		{name: "no blank line", header: "From: a@x.test", froms: []string{"a@x.test"}},
		{name: "empty", header: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := scanHeader([]byte(tt.header))
			if !slices.Equal(h.froms, tt.froms) || h.messageID != tt.id || h.date != tt.date {
				t.Errorf("got froms %q id %q date %q, want %q %q %q", h.froms, h.messageID, h.date, tt.froms, tt.id, tt.date)
			}
		})
	}
}

func TestAuthor(t *testing.T) {
	tests := []struct {
		from, domain, problem string
	}{
		{from: "a@Example.TEST", domain: "example.test"},
		{from: "John Q. Public <jqp@example.test>", domain: "example.test"},
		{from: "jqp@example.test (John)", domain: "example.test"},
		{from: "=?windows-1252?Q?J=E9r=F4me?= <j@example.test>", domain: "example.test"},
		{from: "=?x-unknown?B?AAAA?= <j@example.test>", domain: "example.test"},
		{from: "Jérôme <jérôme@exämple.test>", domain: "xn--exmple-cua.test"},
		{from: `"a@evil.test" <b@example.test>`, domain: "example.test"}, // the display name is not the address
		{from: `"odd@local"@example.test`, domain: "example.test"},
		{from: "team: a@example.test;", domain: "example.test"},
		{from: "a@example.test, b@example.test", problem: "From with 2 addresses"},
		{from: "a@x.test, b@y.test, c@z.test", problem: "From with 3 addresses"},
		{from: "undisclosed-recipients:;", problem: "From with no address"},
		{from: "root", problem: "From address has no domain"},
		{from: "<>", problem: "From address has no domain"},
		{from: "a@", problem: "unparsable From"},
		{from: "a@example.test.", problem: "unparsable From"},
		{from: "<a@b.test>>", problem: "unparsable From"},
		{from: `"unterminated <a@b.test>`, problem: "unparsable From"},
		{from: "a@[192.0.2.1]", problem: "From domain is an address literal"},
		{from: "a@exa\u200bmple.test", domain: "example.test"}, // judged as what a reader sees
		{from: "a@b\u2488.test", problem: `From domain "b\u2488.test" is not a valid domain name`},
	}
	for _, tt := range tests {
		a, problem := headerInfo{froms: []string{tt.from}}.author()
		if a.domain != tt.domain || problem != tt.problem {
			t.Errorf("From: %s: got %q, %q; want %q, %q", tt.from, a.domain, problem, tt.domain, tt.problem)
		}
	}
}
