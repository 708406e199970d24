package greylist

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNormalizeSender: never panics, is idempotent, leaves no ASCII
// upper case and never lengthens its input.
func FuzzNormalizeSender(f *testing.F) {
	for _, s := range []string{
		"", "<>", "User@Example.COM", "prvs=1234abcdef=user@example.com", "prvs=user=1234abcdef@example.com",
		"btv1==760cdc7c545==u@x", "msprvs1=19260wV5hT3DE=bounces-1898-1322@x",
		"SRS0=HHH=TT=example.com=user@fwd", "SRS1=HHH=fwd1==HHH=TT=example.com=user@fwd2",
		"user+tag@x", "bounces-123-456@x", "0100018f2a3b4c5d-1c2d3e4f-5a6b@amazonses.com",
		"\"quoted+x\"@x", "a@b@c", "srs0=a=bb=c=srs0=a=bb=d=e@f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeSender(s)
		if again := NormalizeSender(n); again != n {
			t.Fatalf("NormalizeSender(%q) = %q, then %q", s, n, again)
		}
		if strings.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("NormalizeSender(%q) = %q has upper case", s, n)
		}
		if len(n) > len(s) {
			t.Fatalf("NormalizeSender(%q) = %q is longer", s, n)
		}
		if utf8.ValidString(s) && !utf8.ValidString(n) {
			t.Fatalf("NormalizeSender(%q) = %q broke UTF-8", s, n)
		}
	})
}

// FuzzAllowKeys: whatever an operator types, Allow's parser never panics
// and either refuses it or yields at most 256 distinct client keys of the
// forms Check looks up, which Delete accepts back.
func FuzzAllowKeys(f *testing.F) {
	for _, s := range []string{
		"192.0.2.7", "::ffff:192.0.2.7", "192.0.2.0/23", "2001:db8::/56", "10.0.0.0/8", "::/0",
		"example.com", "@Example.com.", "org:a.b.co.uk", "ptr:mta.example.net", "net:192.0.2.1", "bücher.example", "",
	} {
		f.Add(s)
	}
	g := New(newMemStore(), Options{})
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := g.allowKeys(s)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > 256 {
			t.Fatalf("allowKeys(%q): %d keys", s, len(keys))
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Fatalf("allowKeys(%q): %q twice", s, k)
			}
			seen[k] = true
			if !strings.HasPrefix(k, netKey) && !strings.HasPrefix(k, orgKey) && !strings.HasPrefix(k, ptrKey) || strings.Contains(k, "|") {
				t.Fatalf("allowKeys(%q): bad key %q", s, k)
			}
			if again, err := g.allowKeys(k); err != nil || len(again) != 1 || again[0] != k {
				t.Fatalf("allowKeys(%q) = %q, err %v; want the key itself", k, again, err)
			}
		}
	})
}

// FuzzTripletKey: a key always has exactly two separators and decodes
// back to its fields, so distinct triplets never share a key.
func FuzzTripletKey(f *testing.F) {
	f.Add("org:example.com", "a|b@x", "c%7C@y")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, c, s, r string) {
		k := Triplet{c, s, r}.Key()
		parts := strings.Split(k, "|")
		if len(parts) != 3 {
			t.Fatalf("%q: %d fields", k, len(parts))
		}
		for i, want := range []string{c, s, r} {
			if got := unescapeField(parts[i]); got != want {
				t.Fatalf("%q: field %d decodes to %q, want %q", k, i, got, want)
			}
		}
	})
}

// unescapeField inverts escapeField.
func unescapeField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) byte {
	if c >= 'A' {
		return c - 'A' + 10
	}
	return c - '0'
}
