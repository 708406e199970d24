package refid

import (
	"strings"
	"testing"
	"time"
)

func TestEncodeKnown(t *testing.T) {
	var max [16]byte
	for i := range max {
		max[i] = 0xff
	}
	if got := encode(max); got != "7ZZZZZZZZZZZZZZZZZZZZZZZZZ" {
		t.Errorf("max = %s", got)
	}
	if got := encode([16]byte{}); got != strings.Repeat("0", 26) {
		t.Errorf("zero = %s", got)
	}
	var one [16]byte
	one[15] = 1
	if got := encode(one); got != strings.Repeat("0", 25)+"1" {
		t.Errorf("one = %s", got)
	}
}

func TestSortsByTimeAndIsUnique(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	a, b := New(t0), New(t0.Add(time.Millisecond))
	if len(a) != 26 || !(a < b) {
		t.Fatalf("ids do not sort by time: %s !< %s", a, b)
	}
	seen := map[string]bool{}
	for range 10000 {
		id := New(t0)
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		for _, c := range id {
			if !strings.ContainsRune(alphabet, c) {
				t.Fatalf("id %s has %q outside the alphabet", id, c)
			}
		}
	}
}
