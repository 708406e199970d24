package dkim

import (
	"bufio"
	"bytes"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/emersion/go-msgauth/dkim"
)

// FuzzSignatures: Signatures never panics, gives values without white
// space and a lower-case domain, and lists the same signatures as
// go-msgauth, in the same order: the check zips the two lists, so a
// disagreement would put one signature's result on another's domain.
func FuzzSignatures(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzSignatures.
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=Example.TEST; s=sel1;\r\n\th=from; bh=x; b=y\r\n\r\n"))
	notFound := func(name string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		// Complete the header as the check does, so both read the same.
		msg := append(header[:len(header):len(header)], "\r\n\r\n"...)
		sigs := Signatures(msg)
		for _, s := range sigs {
			for _, v := range []string{s.Domain, s.Selector, s.Algorithm, s.Identifier} {
				if strings.ContainsFunc(v, unicode.IsSpace) {
					t.Fatalf("white space in %+v", s)
				}
			}
			if s.Domain != strings.ToLower(s.Domain) || s.Result != "" || s.Reason != "" {
				t.Fatalf("Signatures gave %+v", s)
			}
		}
		verifs, err := dkim.VerifyWithOptions(strings.NewReader(string(msg)), &dkim.VerifyOptions{LookupTXT: notFound})
		if err != nil {
			return // not a DKIM result: the check reports permerror for the message
		}
		if len(verifs) != len(sigs) {
			t.Fatalf("Signatures found %d, go-msgauth %d", len(sigs), len(verifs))
		}
		for i, v := range verifs {
			if v.Domain != "" && strings.ToLower(v.Domain) != sigs[i].Domain {
				t.Fatalf("signature %d: d=%q, go-msgauth %q", i, sigs[i].Domain, v.Domain)
			}
			// go-msgauth's default i= is "@" + d= as written; ours has
			// the domain lower-cased.
			defaulted := v.Identifier == "@"+v.Domain && sigs[i].Identifier == "@"+sigs[i].Domain
			if v.Identifier != "" && v.Identifier != sigs[i].Identifier && !defaulted {
				t.Fatalf("signature %d: i=%q, go-msgauth %q", i, sigs[i].Identifier, v.Identifier)
			}
		}
	})
}

// textprotoFields is fields as it was written first, over net/textproto:
// the reference FuzzFields holds the in-place scanner to.
func textprotoFields(header []byte) []string {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(header)))
	var out []string
	for {
		line, err := tr.ReadLine()
		if err != nil || line == "" {
			return out
		}
		if len(out) > 0 && (line[0] == ' ' || line[0] == '\t') {
			out[len(out)-1] += line + "\r\n"
		} else {
			out = append(out, line+"\r\n")
		}
	}
}

// FuzzFields: fields cuts any input into exactly the fields textproto's
// line reading gives.
func FuzzFields(f *testing.F) {
	for _, s := range []string{
		"", "\r\n", "a: b\r\n\r\nbody", " lead\r\n\tfold\r\nX: y", "a: b\n c\nd: e\n\n",
		"a: b\r", "a: b\r\r\n", "\ra\r\n", "a\r\n \r\n\t\r\nb", "x\n\r\ny",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		got, want := fields(header), textprotoFields(header)
		if !slices.Equal(got, want) {
			t.Fatalf("fields(%q) = %q, textproto reading gives %q", header, got, want)
		}
	})
}
