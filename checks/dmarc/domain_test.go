package dmarc

import "testing"

func TestOrgDomain(t *testing.T) {
	tests := []struct{ in, norm, org string }{
		{"example.test", "example.test", "example.test"},
		{"a.b.example.test", "a.b.example.test", "example.test"},
		{"a.example.co.uk", "a.example.co.uk", "example.co.uk"},
		{"co.uk", "co.uk", "co.uk"}, // a public suffix is its own org
		{"com", "com", "com"},
		{"localhost", "localhost", "localhost"},
		{"foo.blogspot.com", "foo.blogspot.com", "foo.blogspot.com"}, // private suffix
		{"blogspot.com", "blogspot.com", "blogspot.com"},
		{"x.y.github.io", "x.y.github.io", "y.github.io"},
		{"News.Mail.Example.CO.UK.", "news.mail.example.co.uk", "example.co.uk"}, // case and trailing dot
		{"münchen.de", "xn--mnchen-3ya.de", "xn--mnchen-3ya.de"},
		{"mail.MÜNCHEN.de.", "mail.xn--mnchen-3ya.de", "xn--mnchen-3ya.de"},
		{"a_b.example.test", "a_b.example.test", "example.test"}, // ASCII skips IDNA's STD3 rules
		{"exa\u200bmple.test", "example.test", "example.test"},   // UTS #46 drops the zero-width space
	}
	for _, tt := range tests {
		norm, ok := normDomain(tt.in)
		if !ok || norm != tt.norm {
			t.Errorf("normDomain(%q) = %q, %v; want %q", tt.in, norm, ok, tt.norm)
			continue
		}
		if org := orgDomain(norm); org != tt.org {
			t.Errorf("orgDomain(%q) = %q, want %q", norm, org, tt.org)
		}
	}
}

func TestNormDomainRejects(t *testing.T) {
	for _, in := range []string{"", ".", "a..b", ".a.b", "a b.test", "a@b.test", "[192.0.2.1]", "exa\u00admple\u0000.test", "a.\u2488.test", string(make([]byte, 64)) + ".test", "a.\xff.test"} {
		if d, ok := normDomain(in); ok {
			t.Errorf("normDomain(%q) = %q, accepted", in, d)
		}
	}
	long := ""
	for range 64 {
		long += "abcd."
	}
	if _, ok := normDomain(long + "test"); ok {
		t.Errorf("a %d-octet name was accepted", len(long)+4)
	}
}

func TestAligned(t *testing.T) {
	tests := []struct {
		auth, from string
		strict     bool
		want       bool
	}{
		{"example.test", "example.test", false, true},
		{"mail.example.test", "example.test", false, true},
		{"example.test", "news.example.test", false, true},
		{"a.example.test", "b.example.test", false, true},
		{"a.example.test", "b.example.test", true, false},
		{"mail.example.test", "example.test", true, false},
		{"Example.TEST.", "example.test", true, true},
		{"example.co.uk", "other.co.uk", false, false},
		{"co.uk", "example.co.uk", false, false},
		{"bar.blogspot.com", "foo.blogspot.com", false, false},
		{"y.github.io", "x.y.github.io", false, true},
		{"exämple.test", "xn--exmple-cua.test", true, true},
		{"", "example.test", false, false},
		{"a..test", "example.test", false, false},
	}
	for _, tt := range tests {
		if got := aligned(tt.auth, tt.from, tt.strict); got != tt.want {
			t.Errorf("aligned(%q, %q, strict %v) = %v, want %v", tt.auth, tt.from, tt.strict, got, tt.want)
		}
	}
}
