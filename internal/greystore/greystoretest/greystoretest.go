// Package greystoretest is the conformance suite of greystore: the
// behaviour every Store must share, so that greylisting, written once on
// top of the interface, means the same thing whichever store holds its
// state. Each implementation's test calls Run with a function that opens a
// fresh, empty store; behaviour particular to one store (persistence,
// locking, a shared server) is tested next to it.
//
// The suite uses real time: expiry is checked with TTLs of a few hundred
// milliseconds and sleeps a little longer, so it takes a few seconds.
package greystoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
)

// shortTTL is the TTL of entries meant to expire during a test, and
// expireWait how long a test sleeps for them to: long enough over shortTTL
// for a loaded CI machine, and for Redis's millisecond expiry.
const (
	shortTTL   = 200 * time.Millisecond
	expireWait = 400 * time.Millisecond
	longTTL    = time.Hour
)

// Run runs the suite. open must return a new, empty store each time it is
// called (Redis: a fresh prefix); Run closes it at the end of each subtest,
// so Close must tolerate a second call.
func Run(t *testing.T, open func(t *testing.T) greystore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s greystore.Store)
	}{
		{"GetMissing", testGetMissing},
		{"EmptyKey", testEmptyKey},
		{"CreateReplaceDelete", testCreateReplaceDelete},
		{"EmptyValueIsNotAbsent", testEmptyValue},
		{"Expiry", testExpiry},
		{"UpdateRenewsTTL", testRenewTTL},
		{"UpdateSeesCurrentValue", testSeesCurrent},
		{"ErrorAborts", testErrorAborts},
		{"NonPositiveTTL", testNonPositiveTTL},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"ScanPrefix", testScanPrefix},
		{"ScanStops", testScanStops},
		{"ScanMany", testScanMany},
		{"ScanCallbackUsesStore", testScanReentrant},
		{"OddKeys", testOddKeys},
		{"Values", testValues},
		{"ValuesAreCopies", testCopies},
		{"DeleteMissing", testDeleteMissing},
		{"CanceledContext", testCanceled},
		{"AfterClose", testAfterClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

// CheckGoroutines fails t if, once t and its other cleanups are done, more
// goroutines are running than when it was called (waiting up to 5 s for
// them to end). Call it first, so that its cleanup runs last.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines still running, %d before the test:\n%s", n, before, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// set stores value under key for ttl, failing the test on error.
func set(t *testing.T, s greystore.Store, key string, value []byte, ttl time.Duration) {
	t.Helper()
	err := s.Update(context.Background(), key, func([]byte) ([]byte, time.Duration, error) {
		return value, ttl, nil
	})
	if err != nil {
		t.Fatalf("Update(%q): %v", key, err)
	}
}

// want checks that key holds value, or is absent when value is nil.
func want(t *testing.T, s greystore.Store, key string, value []byte) {
	t.Helper()
	got, ok, err := s.Get(context.Background(), key)
	switch {
	case err != nil:
		t.Fatalf("Get(%q): %v", key, err)
	case value == nil && ok:
		t.Fatalf("Get(%q) = %q, want absent", key, got)
	case value != nil && !ok:
		t.Fatalf("Get(%q) absent, want %q", key, value)
	case value != nil && !bytes.Equal(got, value):
		t.Fatalf("Get(%q) = %q, want %q", key, got, value)
	case ok && got == nil:
		t.Fatalf("Get(%q) ok with a nil value; an existing value is never nil", key)
	}
}

// scan returns what Scan(prefix) reports, failing on a key reported twice.
func scan(t *testing.T, s greystore.Store, prefix string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := s.Scan(context.Background(), prefix, func(k string, v []byte) bool {
		if _, dup := got[k]; dup {
			t.Errorf("Scan(%q) reported %q twice", prefix, k)
		}
		got[k] = string(v)
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return got
}

func wantScan(t *testing.T, s greystore.Store, prefix string, want map[string]string) {
	t.Helper()
	got := scan(t, s, prefix)
	if len(got) != len(want) {
		t.Errorf("Scan(%q) found %d keys, want %d: %q", prefix, len(got), len(want), sortedKeys(got))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("Scan(%q) missed %q", prefix, k)
		} else if g != v {
			t.Errorf("Scan(%q): %q = %q, want %q", prefix, k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("Scan(%q) reported %q, which it should not", prefix, k)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func testGetMissing(t *testing.T, s greystore.Store) {
	want(t, s, "missing", nil)
	wantScan(t, s, "", map[string]string{})
}

func testEmptyKey(t *testing.T, s greystore.Store) {
	ctx := context.Background()
	if _, _, err := s.Get(ctx, ""); err == nil {
		t.Error(`Get("") succeeded, want an error`)
	}
	called := false
	err := s.Update(ctx, "", func([]byte) ([]byte, time.Duration, error) {
		called = true
		return []byte("x"), longTTL, nil
	})
	if err == nil || called {
		t.Errorf(`Update(""): err %v, f called %v; want an error before f`, err, called)
	}
	if err := s.Delete(ctx, ""); err == nil {
		t.Error(`Delete("") succeeded, want an error`)
	}
}

func testCreateReplaceDelete(t *testing.T, s greystore.Store) {
	steps := []struct {
		name  string
		value []byte // nil: delete
		old   []byte // what f must see
	}{
		{"create", []byte("one"), nil},
		{"replace", []byte("two"), []byte("one")},
		{"replace again", []byte("three"), []byte("two")},
		{"delete", nil, []byte("three")},
		{"delete absent", nil, nil},
		{"create after delete", []byte("four"), nil},
	}
	for _, st := range steps {
		var sawOld []byte
		err := s.Update(context.Background(), "k", func(old []byte) ([]byte, time.Duration, error) {
			sawOld = old
			return st.value, longTTL, nil
		})
		if err != nil {
			t.Fatalf("%s: Update: %v", st.name, err)
		}
		if !bytes.Equal(sawOld, st.old) || (sawOld == nil) != (st.old == nil) {
			t.Fatalf("%s: f saw %q, want %q", st.name, sawOld, st.old)
		}
		want(t, s, "k", st.value)
	}
}

func testEmptyValue(t *testing.T, s greystore.Store) {
	set(t, s, "empty", []byte{}, longTTL)
	want(t, s, "empty", []byte{})
	err := s.Update(context.Background(), "empty", func(old []byte) ([]byte, time.Duration, error) {
		if old == nil {
			t.Error("f saw nil for a stored empty value; nil means absent")
		}
		return old, longTTL, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantScan(t, s, "", map[string]string{"empty": ""})
}

func testExpiry(t *testing.T, s greystore.Store) {
	start := time.Now()
	set(t, s, "short", []byte("s"), shortTTL)
	set(t, s, "long", []byte("l"), longTTL)
	_, ok, err := s.Get(context.Background(), "short")
	// Absent is a failure only if shortTTL has not passed: a loaded
	// machine may take that long to get here.
	if err != nil || (!ok && time.Since(start) < shortTTL) {
		t.Fatalf("Get(short) just after Update: ok %v, err %v; want present", ok, err)
	}
	time.Sleep(expireWait)
	want(t, s, "short", nil)
	want(t, s, "long", []byte("l"))
	wantScan(t, s, "", map[string]string{"long": "l"})
	err = s.Update(context.Background(), "short", func(old []byte) ([]byte, time.Duration, error) {
		if old != nil {
			t.Errorf("f saw expired value %q, want nil", old)
		}
		return nil, 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testRenewTTL: the TTL f returns counts from this Update, in both
// directions.
func testRenewTTL(t *testing.T, s greystore.Store) {
	set(t, s, "renewed", []byte("1"), shortTTL)
	set(t, s, "shortened", []byte("1"), longTTL)
	set(t, s, "renewed", []byte("2"), longTTL)
	set(t, s, "shortened", []byte("2"), shortTTL)
	time.Sleep(expireWait)
	want(t, s, "renewed", []byte("2"))
	want(t, s, "shortened", nil)
}

func testSeesCurrent(t *testing.T, s greystore.Store) {
	for i := range 5 {
		wantOld := bytes.Repeat([]byte("x"), i)
		err := s.Update(context.Background(), "grow", func(old []byte) ([]byte, time.Duration, error) {
			if !bytes.Equal(old, wantOld) {
				return nil, 0, fmt.Errorf("f saw %q, want %q", old, wantOld)
			}
			return append(old, 'x'), longTTL, nil
		})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want(t, s, "grow", []byte("xxxxx"))
}

func testErrorAborts(t *testing.T, s greystore.Store) {
	errNo := errors.New("no, thanks")
	set(t, s, "kept", []byte("v1"), longTTL)
	for _, key := range []string{"kept", "absent"} {
		err := s.Update(context.Background(), key, func(old []byte) ([]byte, time.Duration, error) {
			if old != nil {
				old[0] = 'X' // must not reach the store
			}
			return []byte("v2"), longTTL, errNo
		})
		if !errors.Is(err, errNo) {
			t.Errorf("Update(%q) = %v, want f's error", key, err)
		}
	}
	want(t, s, "kept", []byte("v1"))
	want(t, s, "absent", nil)
}

func testNonPositiveTTL(t *testing.T, s greystore.Store) {
	set(t, s, "kept", []byte("v1"), longTTL)
	for _, ttl := range []time.Duration{0, -time.Second} {
		err := s.Update(context.Background(), "kept", func([]byte) ([]byte, time.Duration, error) {
			return []byte("v2"), ttl, nil
		})
		if err == nil {
			t.Errorf("Update with ttl %v succeeded, want an error", ttl)
		}
	}
	want(t, s, "kept", []byte("v1"))
}

// testConcurrentIncrements is atomicity: 20 goroutines add one each to a
// decimal counter at the same moment; any lost update shows in the total.
func testConcurrentIncrements(t *testing.T, s greystore.Store) {
	const n = 20
	var calls atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			<-start
			errs <- s.Update(context.Background(), "counter", func(old []byte) ([]byte, time.Duration, error) {
				calls.Add(1)
				c := 0
				if old != nil {
					var err error
					if c, err = strconv.Atoi(string(old)); err != nil {
						return nil, 0, err
					}
				}
				return strconv.AppendInt(nil, int64(c+1), 10), longTTL, nil
			})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Update: %v", err)
		}
	}
	want(t, s, "counter", []byte(strconv.Itoa(n)))
	t.Logf("%d increments took %d calls of f", n, calls.Load())
}

func testScanPrefix(t *testing.T, s greystore.Store) {
	live := map[string]string{
		"a|1":     "v1",
		"a|2":     "v2",
		"a|3 x":   "v3",
		"ab|1":    "w1",
		"b|1":     "x1",
		"a":       "short",
		"a|ünï|4": "v4",
	}
	for k, v := range live {
		set(t, s, k, []byte(v), longTTL)
	}
	set(t, s, "a|dead", []byte("gone"), shortTTL)
	time.Sleep(expireWait)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"a|", []string{"a|1", "a|2", "a|3 x", "a|ünï|4"}},
		{"a", []string{"a", "a|1", "a|2", "a|3 x", "a|ünï|4", "ab|1"}},
		{"ab", []string{"ab|1"}},
		{"a|1", []string{"a|1"}},
		{"b|1|", nil},
		{"zzz", nil},
		{"", sortedKeys(live)},
	}
	for _, tt := range tests {
		w := map[string]string{}
		for _, k := range tt.want {
			w[k] = live[k]
		}
		wantScan(t, s, tt.prefix, w)
	}
}

func testScanStops(t *testing.T, s greystore.Store) {
	for i := range 10 {
		set(t, s, fmt.Sprintf("k%d", i), []byte("v"), longTTL)
	}
	calls := 0
	err := s.Scan(context.Background(), "k", func(string, []byte) bool {
		calls++
		return calls < 3
	})
	if err != nil || calls != 3 {
		t.Errorf("Scan: err %v after %d calls; want nil after 3 (fn returned false)", err, calls)
	}
}

// testScanMany crosses the batch sizes of the stores (bbolt's per
// transaction, Redis's per SCAN page).
func testScanMany(t *testing.T, s greystore.Store) {
	const n = 1500
	w := map[string]string{}
	for i := range n {
		k := fmt.Sprintf("many|%05d", i)
		w[k] = strconv.Itoa(i)
		set(t, s, k, []byte(w[k]), longTTL)
	}
	set(t, s, "other", []byte("x"), longTTL)
	wantScan(t, s, "many|", w)
}

// testScanReentrant: fn may use the store, here deleting what it is shown
// (a clean-up loop), without deadlock.
func testScanReentrant(t *testing.T, s greystore.Store) {
	for i := range 20 {
		set(t, s, fmt.Sprintf("del|%02d", i), []byte("v"), longTTL)
	}
	set(t, s, "keep", []byte("v"), longTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Scan(ctx, "del|", func(k string, _ []byte) bool {
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q) inside Scan: %v", k, err)
			return false
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	wantScan(t, s, "", map[string]string{"keep": "v"})
}

func testOddKeys(t *testing.T, s greystore.Store) {
	keys := []string{
		"with space",
		"a|b|c",
		"192.0.2.1|<>|postmaster@example.org",
		"ünïcödé ✉ 郵便",
		"tab\tnew\nline\r",
		`glob*?[a-z]\`,
		"\x00nul\x00",
		"\xff\xfe not UTF-8",
		string(bytes.Repeat([]byte("long"), 128)),
	}
	for i, k := range keys {
		set(t, s, k, []byte(strconv.Itoa(i)), longTTL)
	}
	for i, k := range keys {
		want(t, s, k, []byte(strconv.Itoa(i)))
		// Scan by the key itself: only it (no other key extends it).
		wantScan(t, s, k, map[string]string{k: strconv.Itoa(i)})
	}
	// A prefix with glob characters matches literally, not as a pattern.
	wantScan(t, s, "glob*", map[string]string{keys[5]: "5"})
	wantScan(t, s, "g*", map[string]string{})
	wantScan(t, s, "?", map[string]string{})
}

func testValues(t *testing.T, s greystore.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	values := map[string][]byte{
		"one byte":    {0},
		"every byte":  all,
		"64 KiB":      big,
		"text":        []byte("greylisted 2024-01-01T00:00:00Z passes=1"),
		"trailing NL": []byte("x\r\n"),
	}
	for k, v := range values {
		set(t, s, k, v, longTTL)
	}
	for k, v := range values {
		want(t, s, k, v)
	}
	got := scan(t, s, "")
	for k, v := range values {
		if got[k] != string(v) {
			t.Errorf("Scan: value of %q differs (%d bytes, want %d)", k, len(got[k]), len(v))
		}
	}
}

// testCopies: what the store hands out is the caller's; changing it does
// not change what is stored.
func testCopies(t *testing.T, s greystore.Store) {
	in := []byte("original")
	set(t, s, "k", in, longTTL)
	in[0] = 'X'
	got, _, _ := s.Get(context.Background(), "k")
	if len(got) > 0 {
		got[0] = 'Y'
	}
	want(t, s, "k", []byte("original"))
	s.Scan(context.Background(), "", func(_ string, v []byte) bool {
		if len(v) > 0 {
			v[0] = 'Z'
		}
		return true
	})
	want(t, s, "k", []byte("original"))
}

func testDeleteMissing(t *testing.T, s greystore.Store) {
	ctx := context.Background()
	if err := s.Delete(ctx, "never"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	set(t, s, "k", []byte("v"), longTTL)
	set(t, s, "other", []byte("v"), longTTL)
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	want(t, s, "k", nil)
	want(t, s, "other", []byte("v"))
	if err := s.Delete(ctx, "k"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

// testCanceled: an operation with a canceled context fails (with the
// context's error somewhere in the chain) and changes nothing.
func testCanceled(t *testing.T, s greystore.Store) {
	set(t, s, "k", []byte("v"), longTTL)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v, want context.Canceled", err)
	}
	err := s.Update(ctx, "k", func([]byte) ([]byte, time.Duration, error) {
		return []byte("changed"), longTTL, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update: %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v, want context.Canceled", err)
	}
	err = s.Scan(ctx, "", func(string, []byte) bool { return true })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Scan: %v, want context.Canceled", err)
	}
	want(t, s, "k", []byte("v"))
}

// testAfterClose: every operation after Close returns ErrClosed (and f is
// not called); a second Close does not panic.
func testAfterClose(t *testing.T, s greystore.Store) {
	set(t, s, "k", []byte("v"), longTTL)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := context.Background()
	if _, _, err := s.Get(ctx, "k"); !errors.Is(err, greystore.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	err := s.Update(ctx, "k", func([]byte) ([]byte, time.Duration, error) {
		t.Error("f called after Close")
		return nil, 0, nil
	})
	if !errors.Is(err, greystore.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, greystore.ErrClosed) {
		t.Errorf("Delete after Close: %v, want ErrClosed", err)
	}
	err = s.Scan(ctx, "", func(string, []byte) bool {
		t.Error("Scan's fn called after Close")
		return true
	})
	if !errors.Is(err, greystore.ErrClosed) {
		t.Errorf("Scan after Close: %v, want ErrClosed", err)
	}
	s.Close()
}
