package greystore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/greystore/greystoretest"
	"github.com/mxgate/mxgate/internal/testutil"
	"github.com/redis/go-redis/v9"
)

// patient returns opt with timeouts far above the defaults. Tests that are
// not about timeouts use it: on a loaded CI machine the server (or this
// process, under -race) can be starved for over a second, the default
// ReadTimeout, and a semantic test must not fail for that.
func patient(opt greystore.RedisOptions) greystore.RedisOptions {
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 10*time.Second, 10*time.Second, 10*time.Second
	return opt
}

func openRedis(t *testing.T, url string, opt greystore.RedisOptions) *greystore.Redis {
	t.Helper()
	r, err := greystore.OpenRedis(url, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// warmUp writes a key through s, trying for 10 s: tests that use the
// default timeouts, being about them, would otherwise fail before they
// begin on a machine loaded enough to stall a command for a second.
func warmUp(t *testing.T, s greystore.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Update(context.Background(), "k", incr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("warming up: %v", err)
		}
	}
}

// rawClient is a plain go-redis client, to look behind the store.
func rawClient(t *testing.T, s *testutil.RedisServer) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisConformance(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	srv := testutil.StartRedis(t)
	n := 0
	greystoretest.Run(t, func(t *testing.T) greystore.Store {
		// One server for the suite; a prefix per subtest keeps each
		// store empty.
		n++
		return openRedis(t, srv.URL("", 0), patient(greystore.RedisOptions{Prefix: fmt.Sprintf("mxgate:test:%d:", n)}))
	})
}

// incr adds one to a decimal counter.
func incr(old []byte) ([]byte, time.Duration, error) {
	c := 0
	if old != nil {
		var err error
		if c, err = strconv.Atoi(string(old)); err != nil {
			return nil, 0, err
		}
	}
	return strconv.AppendInt(nil, int64(c+1), 10), time.Hour, nil
}

// TestRedisTwoClients is the two-gateway property: two separate stores on
// one server, incrementing one key at the same time, lose no update.
func TestRedisTwoClients(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	srv := testutil.StartRedis(t)
	// Far more retries than the default: this is all contention, every
	// goroutine on one key, and the test is about lost updates, not about
	// giving up.
	opt := patient(greystore.RedisOptions{MaxRetries: 1000})
	stores := []greystore.Store{openRedis(t, srv.URL("", 0), opt), openRedis(t, srv.URL("", 0), opt)}
	const perStore, each = 8, 25
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	start := make(chan struct{})
	for _, s := range stores {
		for range perStore {
			wg.Go(func() {
				<-start
				for range each {
					calls := 0
					err := s.Update(context.Background(), "shared", func(old []byte) ([]byte, time.Duration, error) {
						calls++
						return incr(old)
					})
					if err != nil {
						t.Errorf("Update: %v", err)
						return
					}
					conflicts.Add(int64(calls - 1))
				}
			})
		}
	}
	close(start)
	wg.Wait()
	wantTotal := []byte(strconv.Itoa(len(stores) * perStore * each))
	for i, s := range stores {
		v, ok, err := s.Get(context.Background(), "shared")
		if err != nil || !ok || string(v) != string(wantTotal) {
			t.Errorf("store %d: Get = %q, %v, %v; want %s", i, v, ok, err, wantTotal)
		}
	}
	t.Logf("%s increments, %d retried after a conflict", wantTotal, conflicts.Load())
	if conflicts.Load() == 0 {
		t.Log("no conflict at all: the test did not exercise WATCH")
	}
}

// TestRedisConflictExhausted: when the key changes under every attempt,
// Update gives up with ErrConflict after 1+MaxRetries calls of f, and
// leaves the other writer's value.
func TestRedisConflictExhausted(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	srv := testutil.StartRedis(t)
	s := openRedis(t, srv.URL("", 0), patient(greystore.RedisOptions{Prefix: "p:", MaxRetries: 3}))
	other := rawClient(t, srv)
	ctx := context.Background()
	calls := 0
	err := s.Update(ctx, "k", func(old []byte) ([]byte, time.Duration, error) {
		calls++
		// Another gateway writes between our GET and EXEC. (f with a side
		// effect: only a test may do this.)
		if err := other.Set(ctx, "p:k", "theirs"+strconv.Itoa(calls), 0).Err(); err != nil {
			t.Fatal(err)
		}
		return []byte("ours"), time.Hour, nil
	})
	if !errors.Is(err, greystore.ErrConflict) || calls != 4 {
		t.Errorf("Update: %v after %d calls; want ErrConflict after 4", err, calls)
	}
	if v, _, _ := s.Get(ctx, "k"); string(v) != "theirs4" {
		t.Errorf("value %q, want the other writer's theirs4", v)
	}
}

// TestRedisLayout: keys are Prefix+key, and expiry is Redis's own.
func TestRedisLayout(t *testing.T) {
	srv := testutil.StartRedis(t)
	s := openRedis(t, srv.URL("", 0), patient(greystore.RedisOptions{}))
	raw := rawClient(t, srv)
	ctx := context.Background()
	err := s.Update(ctx, "192.0.2.1|a@example.org|b@example.net", func([]byte) ([]byte, time.Duration, error) {
		return []byte("v"), 90 * time.Second, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	key := "mxgate:gl:192.0.2.1|a@example.org|b@example.net"
	if v, err := raw.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Errorf("raw GET %s = %q, %v", key, v, err)
	}
	if ttl, err := raw.PTTL(ctx, key).Result(); err != nil || ttl <= 89*time.Second || ttl > 90*time.Second {
		t.Errorf("PTTL %s = %v, %v; want about 90s", key, ttl, err)
	}
	// A sub-millisecond TTL still expires rather than being refused.
	err = s.Update(ctx, "tiny", func([]byte) ([]byte, time.Duration, error) { return []byte("v"), time.Microsecond, nil })
	if err != nil {
		t.Errorf("Update with a 1µs TTL: %v", err)
	}
}

// TestRedisPrefixIsolation: stores with different prefixes on one server
// (and data of other applications) do not see each other's keys.
func TestRedisPrefixIsolation(t *testing.T) {
	srv := testutil.StartRedis(t)
	ctx := context.Background()
	a := openRedis(t, srv.URL("", 0), patient(greystore.RedisOptions{Prefix: "a:"}))
	b := openRedis(t, srv.URL("", 0), patient(greystore.RedisOptions{Prefix: "b:"}))
	raw := rawClient(t, srv)
	if err := raw.Set(ctx, "unrelated", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Set(ctx, "a", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]greystore.Store{"a": a, "b": b} {
		for _, k := range []string{"k", "only-" + name} {
			err := s.Update(ctx, k, func([]byte) ([]byte, time.Duration, error) { return []byte(name), time.Hour, nil })
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, s := range map[string]greystore.Store{"a": a, "b": b} {
		got := map[string]string{}
		if err := s.Scan(ctx, "", func(k string, v []byte) bool { got[k] = string(v); return true }); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"k": name, "only-" + name: name}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("store %s: Scan = %v, want %v", name, got, want)
		}
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.Get(ctx, "k"); err != nil || !ok || string(v) != "b" {
		t.Errorf("b's k after a deleted its own: %q, %v, %v", v, ok, err)
	}
}

// TestRedisDown: with the server gone, operations fail within about two
// seconds instead of hanging, and work again once it is back.
func TestRedisDown(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	srv := testutil.StartRedis(t)
	s := openRedis(t, srv.URL("", 0), greystore.RedisOptions{})
	ctx := context.Background()
	warmUp(t, s)
	srv.Signal(t, syscall.SIGKILL)
	time.Sleep(50 * time.Millisecond)
	ops := []struct {
		name string
		do   func() error
	}{
		{"Get", func() error { _, _, err := s.Get(ctx, "k"); return err }},
		{"Update", func() error { return s.Update(ctx, "k", incr) }},
		{"Delete", func() error { return s.Delete(ctx, "k") }},
		{"Scan", func() error { return s.Scan(ctx, "", func(string, []byte) bool { return true }) }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.do()
		d := time.Since(start)
		if err == nil {
			t.Errorf("%s with the server down succeeded", op.name)
		} else if d > 2500*time.Millisecond {
			t.Errorf("%s took %v to fail: %v", op.name, d, err)
		} else {
			t.Logf("%s: %v (after %v)", op.name, err, d.Round(time.Millisecond))
		}
	}
}

// TestRedisStalled: a server that accepts but does not answer (stopped)
// is bounded by the caller's deadline, not only by ReadTimeout.
func TestRedisStalled(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	srv := testutil.StartRedis(t)
	s := openRedis(t, srv.URL("", 0), greystore.RedisOptions{})
	warmUp(t, s)
	srv.Signal(t, syscall.SIGSTOP)
	defer srv.Signal(t, syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := s.Get(ctx, "k")
	if d := time.Since(start); err == nil || d > 1500*time.Millisecond {
		t.Errorf("Get on a stopped server: %v after %v; want an error soon after the 300ms deadline", err, d)
	}
	// Without a deadline, ReadTimeout (and one retry) bounds it.
	start = time.Now()
	_, _, err = s.Get(context.Background(), "k")
	if d := time.Since(start); err == nil || d > 5*time.Second {
		t.Errorf("Get on a stopped server: %v after %v; want an error within ReadTimeout", err, d)
	}
}

// TestRedisOpenErrors: a store that cannot work fails at open, quickly,
// saying why, and never with the password in the message.
func TestRedisOpenErrors(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	const secret = "hunter2-s3cret"
	srv := testutil.StartRedis(t)
	authSrv := testutil.StartRedis(t, "--requirepass", "right-"+secret)
	refused := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	tests := []struct {
		name, url, want string
	}{
		{"connection refused", "redis://:" + secret + "@" + refused + "/0", "refused"},
		{"no such database", srv.URL("", 99), "DB index"},
		{"database not a number", srv.URL("", 0)[:len(srv.URL("", 0))-1] + "zero", "invalid database"},
		{"wrong password", authSrv.URL(":"+secret, 0), "password"},
		{"wrong user and password", authSrv.URL("bob:"+secret, 0), "password"},
		{"password missing", authSrv.URL("", 0), "NOAUTH"},
		{"unparseable URL", "redis://u:" + secret + "@127.0.0.1:notaport/0", "port"},
		{"escaped password", "redis://u:" + secret + "%2F@127.0.0.1:notaport/0", "port"},
		{"unknown option", srv.URL(":"+secret, 0) + "?bogus=1", "bogus"},
		{"wrong scheme", "http://u:" + secret + "@127.0.0.1/0", "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r, err := greystore.OpenRedis(tt.url, patient(greystore.RedisOptions{}))
			d := time.Since(start)
			if err == nil {
				r.Close()
				t.Fatal("OpenRedis succeeded")
			}
			msg := err.Error()
			t.Logf("%v (after %v)", msg, d.Round(time.Millisecond))
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, "s3cret") {
				t.Errorf("the error shows the password: %s", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q should contain %q", msg, tt.want)
			}
			if d > 5*time.Second {
				t.Errorf("OpenRedis took %v to fail", d)
			}
		})
	}
	// And the right password works.
	r := openRedis(t, authSrv.URL(":right-"+secret, 0), patient(greystore.RedisOptions{}))
	if err := r.Update(context.Background(), "k", incr); err != nil {
		t.Error(err)
	}
}
