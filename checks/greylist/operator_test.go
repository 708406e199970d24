package greylist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
)

func TestAllowKeys(t *testing.T) {
	g, _, _ := newTest(Options{})
	tests := []struct {
		what string
		want []string // nil: an error
		n    int      // when want has one element and n > 1: the count, with want[0] first
	}{
		{what: "192.0.2.7", want: []string{"net:192.0.2.7/32"}},
		{what: " ::FFFF:192.0.2.7 ", want: []string{"net:192.0.2.7/32"}},
		{what: "2001:DB8::1", want: []string{"net:2001:db8::1/128"}},
		{what: "192.0.2.0/24", want: []string{"net:192.0.2.0/24"}},
		{what: "192.0.2.77/24", want: []string{"net:192.0.2.0/24"}},
		{what: "net:192.0.2.0/24", want: []string{"net:192.0.2.0/24"}},
		{what: "net:192.0.2.1", want: []string{"net:192.0.2.1/32"}},
		{what: "::ffff:192.0.2.0/120", want: []string{"net:192.0.2.0/24"}},
		{what: "192.0.2.0/23", want: []string{"net:192.0.2.0/24", "net:192.0.3.0/24"}},
		{what: "192.0.2.252/30", want: []string{"net:192.0.2.252/32", "net:192.0.2.253/32", "net:192.0.2.254/32", "net:192.0.2.255/32"}},
		{what: "10.0.0.0/16", want: []string{"net:10.0.0.0/24"}, n: 256},
		{what: "2001:db8::/63", want: []string{"net:2001:db8::/64", "net:2001:db8:0:1::/64"}},
		{what: "2001:db8:0:ff00::/56", want: []string{"net:2001:db8:0:ff00::/64"}, n: 256},
		{what: "10.0.0.0/15"},
		{what: "0.0.0.0/0"},
		{what: "::/0"},
		{what: "2001:db8::/48"},
		{what: "2001:db8::/119"},
		{what: "2001:db8::ff00/120", want: []string{"net:2001:db8::ff00/128"}, n: 256},
		{what: "Example.COM", want: []string{"org:example.com"}},
		{what: "mail.example.co.uk.", want: []string{"org:example.co.uk"}},
		{what: "@example.com", want: []string{"org:example.com"}},
		{what: "org:news.example.com", want: []string{"org:example.com"}},
		{what: "ptr:mta1.out.example.net", want: []string{"ptr:example.net"}},
		{what: "bücher.example", want: []string{"org:xn--bcher-kva.example"}},
		{what: "_spf.example.com", want: []string{"org:example.com"}},
		{what: "net:example.com"},
		{what: "org:192.0.2.1"},
		{what: "examplecom"},
		{what: "192.0.2"},
		{what: "192.0.2.0/33"},
		{what: "ex ample.com"},
		{what: ""},
	}
	for _, tt := range tests {
		got, err := g.allowKeys(tt.what)
		switch {
		case tt.want == nil:
			if err == nil {
				t.Errorf("allowKeys(%q) = %q, want an error", tt.what, got)
			}
		case err != nil:
			t.Errorf("allowKeys(%q): %v", tt.what, err)
		case tt.n > 1:
			if len(got) != tt.n || got[0] != tt.want[0] || len(slices.Compact(slices.Clone(got))) != tt.n {
				t.Errorf("allowKeys(%q): %d keys from %q, want %d distinct from %q", tt.what, len(got), got[0], tt.n, tt.want[0])
			}
		case !slices.Equal(got, tt.want):
			t.Errorf("allowKeys(%q) = %q, want %q", tt.what, got, tt.want)
		}
	}
}

// TestOperator: allow, list, release and delete, as the CLI uses them.
func TestOperator(t *testing.T) {
	t.Run("map", func(t *testing.T) { testOperator(t, newMemStore()) })
	t.Run("greystore", func(t *testing.T) { testOperator(t, greystore.NewMemory(1000)) })
}

func testOperator(t *testing.T, st greystore.Store) {
	clk := newClock()
	g := New(st, Options{Now: clk.Now})
	ctx := context.Background()
	for _, what := range []string{"192.0.2.7", "198.51.100.0/23", "news.example.org"} {
		if err := g.Allow(ctx, what, 7*day); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Allow(ctx, "example.net", 0); err == nil {
		t.Error("Allow with no lifetime succeeded")
	}
	c := Client{IP: netip.MustParseAddr("203.0.113.5")}
	// One message to two recipients: one ref, two triplets.
	for _, rcpt := range []string{"a@rcpt.example", "b@rcpt.example"} {
		if d, err := g.Check(ctx, c, "s@sender.example", rcpt, "q1"); err != nil || d.State != StateNew {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	clk.at(1 * minute)
	if ok, err := g.Release(ctx, "q1"); !ok || err != nil {
		t.Fatalf("Release(q1) = %v, %v", ok, err)
	}
	for _, ref := range []string{"q2", ""} {
		if ok, err := g.Release(ctx, ref); ok || err != nil {
			t.Errorf("Release(%q) = %v, %v", ref, ok, err)
		}
	}
	list, err := g.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		got = append(got, fmt.Sprintf("%s %s %s released=%v passes=%d expires=+%v", e.Kind, e.Key, e.Source, e.Released, e.Passes, e.Expires.Sub(t0)))
	}
	want := []string{
		"allow net:192.0.2.7/32 operator released=false passes=0 expires=+168h0m0s",
		"allow net:198.51.100.0/24 operator released=false passes=0 expires=+168h0m0s",
		"allow net:198.51.101.0/24 operator released=false passes=0 expires=+168h0m0s",
		"allow org:example.org operator released=false passes=0 expires=+168h0m0s",
		"triplet net:203.0.113.0/24|s@sender.example|a@rcpt.example  released=true passes=0 expires=+48h0m0s",
		"triplet net:203.0.113.0/24|s@sender.example|b@rcpt.example  released=true passes=0 expires=+48h0m0s",
	}
	if !slices.Equal(got, want) {
		t.Errorf("List:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if e := list[4]; e.Ref != "q1" || !e.FirstSeen.Equal(t0) || !e.PassAt.Equal(t0.Add(5*minute)) {
		t.Errorf("triplet entry %+v", e)
	}

	deletes := []struct {
		key  string
		want bool
	}{
		{list[4].Key, true},
		{list[4].Key, false},
		{"198.51.100.0/23", true}, // undoes the Allow of the same range
		{"org:example.org", true},
		{"192.0.2.8", false},
	}
	for _, d := range deletes {
		if ok, err := g.Delete(ctx, d.key); ok != d.want || err != nil {
			t.Errorf("Delete(%q) = %v, %v; want %v", d.key, ok, err, d.want)
		}
	}
	if _, err := g.Delete(ctx, "not a key"); err == nil {
		t.Error("Delete of garbage succeeded")
	}
	list, _ = g.List(ctx)
	if len(list) != 2 || list[0].Key != "net:192.0.2.7/32" || list[1].Key != "net:203.0.113.0/24|s@sender.example|b@rcpt.example" {
		t.Errorf("after deletes: %+v", list)
	}

	// Expired records are not listed and cannot be released.
	clk.at(49 * hour)
	if ok, _ := g.Release(ctx, "q1"); ok {
		t.Error("released an expired triplet")
	}
	clk.at(8 * day)
	if list, _ := g.List(ctx); len(list) != 0 {
		t.Errorf("expired records listed: %+v", list)
	}
}

// TestDeleteVerbatim: an entry made under another prefix size is deleted
// by the key List shows.
func TestDeleteVerbatim(t *testing.T) {
	g, st, _ := newTest(Options{PrefixV4: 22})
	st.set("a:net:192.0.2.0/24", `{"v":1,"first":"2026-03-01T12:00:00Z","expires":"2026-04-01T12:00:00Z","source":"pass"}`, day)
	if ok, err := g.Delete(context.Background(), "net:192.0.2.0/24"); !ok || err != nil {
		t.Errorf("Delete = %v, %v", ok, err)
	}
	if _, _, ok := st.value("a:net:192.0.2.0/24"); ok {
		t.Error("entry still there")
	}
}

func TestOperatorStoreErrors(t *testing.T) {
	ctx := context.Background()
	ops := map[string]func(g *Greylist) error{
		"allow":   func(g *Greylist) error { return g.Allow(ctx, "192.0.2.1", day) },
		"release": func(g *Greylist) error { _, err := g.Release(ctx, "q"); return err },
		"delete":  func(g *Greylist) error { _, err := g.Delete(ctx, "192.0.2.1"); return err },
		"list":    func(g *Greylist) error { _, err := g.List(ctx); return err },
	}
	for name, op := range ops {
		g, st, _ := newTest(Options{})
		st.fail = map[string]error{"get": errBroken, "update": errBroken, "scan": errBroken, "delete": errBroken}
		if err := op(g); !errors.Is(err, errBroken) {
			t.Errorf("%s: %v, want the store's error", name, err)
		}
	}
}

// TestRecordSchema pins the documented JSON, which other gateways read.
func TestRecordSchema(t *testing.T) {
	at := t0.Add(90 * time.Second)
	b, _, _ := encode(tripletRec{V: 1, First: t0, PassAt: at, Expires: at, Ref: "q", Released: true, Passes: 2}, at, t0)
	want := `{"v":1,"first":"2026-03-01T12:00:00Z","pass_at":"2026-03-01T12:01:30Z","expires":"2026-03-01T12:01:30Z","ref":"q","released":true,"passes":2}`
	if string(b) != want {
		t.Errorf("triplet:\n%s\nwant\n%s", b, want)
	}
	b, _, _ = encode(tripletRec{V: 1, First: t0, PassAt: at, Expires: at}, at, t0)
	want = `{"v":1,"first":"2026-03-01T12:00:00Z","pass_at":"2026-03-01T12:01:30Z","expires":"2026-03-01T12:01:30Z"}`
	if string(b) != want {
		t.Errorf("bare triplet:\n%s\nwant\n%s", b, want)
	}
	b, _, _ = encode(allowRec{V: 1, First: t0, Expires: at, Passes: 1, Source: sourcePass}, at, t0)
	want = `{"v":1,"first":"2026-03-01T12:00:00Z","expires":"2026-03-01T12:01:30Z","passes":1,"source":"pass"}`
	if string(b) != want {
		t.Errorf("allow:\n%s\nwant\n%s", b, want)
	}
	// Unknown fields of the same version are ignored.
	r, ok, err := decodeAllow([]byte(`{"v":1,"first":"2026-03-01T12:00:00Z","expires":"2026-03-01T12:01:30Z","source":"operator","note":"x"}`))
	if !ok || err != nil || r.Source != sourceOperator || !r.Expires.Equal(at) {
		t.Errorf("decode with an extra field: %+v, %v, %v", r, ok, err)
	}
}
