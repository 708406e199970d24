package policy

import (
	"net/netip"
	"testing"
)

func TestFixedRepliesAgreeInClass(t *testing.T) {
	seen := map[*Reply]bool{}
	for _, r := range All() {
		if err := r.Valid(); err != nil {
			t.Errorf("%s: %v", r.Reason, err)
		}
		if seen[r] {
			t.Errorf("%v listed twice", r)
		}
		seen[r] = true
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		r  Reply
		ok bool
	}{
		{Reply{Code: 250, Enhanced: [3]int{2, 0, 0}}, true},
		{Reply{Code: 451, Enhanced: [3]int{4, 4, 1}}, true},
		{Reply{Code: 550, Enhanced: [3]int{4, 7, 1}}, false},
		{Reply{Code: 451, Enhanced: [3]int{5, 0, 0}}, false},
		{Reply{Code: 354, Enhanced: [3]int{3, 0, 0}}, false},
		{Reply{Code: 650, Enhanced: [3]int{6, 0, 0}}, false},
		{Reply{Code: 550, Enhanced: [3]int{5, 1000, 0}}, false},
	}
	for _, tt := range tests {
		if err := tt.r.Valid(); (err == nil) != tt.ok {
			t.Errorf("%v.Valid() = %v, want ok=%v", tt.r, err, tt.ok)
		}
	}
}

func TestPassthrough(t *testing.T) {
	tests := []struct {
		code     int
		enh      [3]int
		text     string
		wantCode int
		wantEnh  [3]int
		wantText string
	}{
		{550, [3]int{5, 1, 1}, "User unknown", 550, [3]int{5, 1, 1}, "User unknown"},
		{550, [3]int{0, 0, 0}, "no enhanced code", 550, [3]int{5, 0, 0}, "no enhanced code"},
		{452, [3]int{5, 2, 2}, "class mismatch", 452, [3]int{4, 0, 0}, "class mismatch"},
		{421, [3]int{4, 3, 2}, "closing", 451, [3]int{4, 3, 2}, "closing"},
		{550, [3]int{5, 7, 1}, "line one\nline\x07two\r\n", 550, [3]int{5, 7, 1}, "line one\nlinetwo"},
		{550, [3]int{5, 0, 0}, "", 550, [3]int{5, 0, 0}, "Backend replied without text"},
	}
	for _, tt := range tests {
		r := Passthrough(tt.code, tt.enh, tt.text, ReasonBackendRcpt)
		if r.Code != tt.wantCode || r.Enhanced != tt.wantEnh || r.Text != tt.wantText || r.Valid() != nil {
			t.Errorf("Passthrough(%d, %v, %q) = %d %v %q", tt.code, tt.enh, tt.text, r.Code, r.Enhanced, r.Text)
		}
	}
	if r := Passthrough(354, [3]int{3, 0, 0}, "go ahead", ReasonBackendData); r != ErrInternal {
		t.Errorf("a 354 as a final reply must become ErrInternal, got %v", r)
	}
}

func TestExpandPlaceholders(t *testing.T) {
	v := NewValues()
	v.Set("client.ip", netip.MustParseAddr("192.0.2.7"))
	v.Set("subject", "evil\r\n{x} \x00text")
	r := &Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "Blocked: client {client.ip}; {subject}; {helo}"}
	got := r.Expand(v)
	if got.Text != "Blocked: client 192.0.2.7; evilx text; " {
		t.Fatalf("expanded %q", got.Text)
	}
	if r.Text != "Blocked: client {client.ip}; {subject}; {helo}" {
		t.Fatal("Expand changed the shared reply")
	}
	for text, bad := range map[string]bool{"ok {client.ip}": false, "bad {nosuch.fact}": true, "brace {": true, "plain": false} {
		if msg := placeholderProblem(text); (msg != "") != bad {
			t.Errorf("placeholderProblem(%q) = %q", text, msg)
		}
	}
}
