package address

import "testing"

// TestToASCII pins the IDNA mapping the relay decision depends on.
func TestToASCII(t *testing.T) {
	tests := []struct{ in, want string }{
		{"bücher.test", "xn--bcher-kva.test"},
		{"BÜCHER.TEST", "xn--bcher-kva.test"},
		{"bücher", "xn--bcher-kva"},
		{"müller-lüdenscheidt.de", "xn--mller-ldenscheidt-22bg.de"},
		{"ñandú.test", "xn--and-6ma2c.test"},
		{"ÆØÅ.no", "xn--5cab8c.no"},
		{"straße.test", "xn--strae-oqa.test"}, // non-transitional: ß stays
		{"пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f"},
		{"ПРИМЕР.рф", "xn--e1afmkfd.xn--p1ai"},
		{"παράδειγμα.δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp"},
		{"ΣΊΣΥΦΟΣ.test", "xn--kxa6akbbkh.test"}, // Σ maps to σ, not final ς
		{"ours。test", "ours.test"},
		{"ours．test", "ours.test"},
		{"ours｡test", "ours.test"},
		{"ｏｕｒｓ.test", "ours.test"}, // full-width letters map to ASCII
		{"例え.テスト", "xn--r8jz45g.xn--zckzah"},
	}
	for _, tt := range tests {
		if got, err := toASCII(tt.in); got != tt.want || err != nil {
			t.Errorf("toASCII(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestToASCIIRefuses(t *testing.T) {
	for _, in := range []string{
		"ab--ü.test", "-ü.test", "ü-.test", "ü_x.test", "ü x.test", "ü%x.test", "ü@x.test",
		"ü.test\x00", "ü\u200d.test", "üא.test",
	} {
		if got, err := toASCII(in); err == nil {
			t.Errorf("toASCII(%q) = %q, want an error", in, got)
		}
	}
}
