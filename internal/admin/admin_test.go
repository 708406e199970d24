package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/metrics"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

// get does one request on a connection of its own (no keep-alive), so no
// client goroutine outlives it.
func get(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestHealthz(t *testing.T) {
	s := start(t, Options{})
	code, h, body := get(t, "GET", "http://"+s.Addr()+"/healthz")
	if code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	if code, _, body := get(t, "HEAD", "http://"+s.Addr()+"/healthz"); code != 200 || body != "" {
		t.Errorf("HEAD /healthz = %d %q", code, body)
	}
}

func TestReadyz(t *testing.T) {
	var fail atomic.Pointer[error]
	s := start(t, Options{Ready: func(ctx context.Context) error {
		if err := fail.Load(); err != nil {
			return *err
		}
		return ctx.Err()
	}})
	url := "http://" + s.Addr() + "/readyz"
	if code, _, body := get(t, "GET", url); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("ready: /readyz = %d %q", code, body)
	}
	err := errors.New("no backend reachable: 127.0.0.1:10025: connection refused")
	fail.Store(&err)
	code, h, body := get(t, "GET", url)
	if code != 503 || !strings.Contains(body, err.Error()) {
		t.Fatalf("not ready: /readyz = %d %q, want 503 with %q", code, body, err)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	fail.Store(nil)
	if code, _, _ := get(t, "GET", url); code != 200 {
		t.Fatalf("ready again: /readyz = %d", code)
	}
}

func TestReadyzNil(t *testing.T) {
	s := start(t, Options{})
	if code, _, _ := get(t, "GET", "http://"+s.Addr()+"/readyz"); code != 200 {
		t.Fatalf("nil Ready: /readyz = %d, want 200", code)
	}
}

func TestMetrics(t *testing.T) {
	metrics.Record(&verdict.Record{Action: policy.ActionAccept, Reason: policy.ReasonAccepted})
	s := start(t, Options{
		DNSStats:   func() (uint64, uint64, uint64) { return 7, 5, 2 },
		RelayStats: func() (int, int, int) { return 3, 1, 2 },
	})
	code, _, body := get(t, "GET", "http://"+s.Addr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`gateway_transactions_total{action="accept",reason="accepted"}`,
		"go_goroutines ",
		"gateway_dns_queries_total 7",
		"gateway_dns_cache_hits_total 5",
		"gateway_dns_cache_misses_total 2",
		`gateway_relay_connections{state="open"} 3`,
		`gateway_relay_connections{state="idle"} 1`,
		`gateway_relay_connections{state="in_use"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if runtime.GOOS == "linux" && !strings.Contains(body, "process_resident_memory_bytes ") {
		t.Errorf("/metrics lacks the process collector")
	}
}

// A second listener in the same process (a restart in tests) registers
// nothing twice and exports its own stats.
func TestStartTwice(t *testing.T) {
	a := start(t, Options{DNSStats: func() (uint64, uint64, uint64) { return 1, 1, 1 }})
	a.Close(context.Background())
	b := start(t, Options{DNSStats: func() (uint64, uint64, uint64) { return 9, 9, 9 }})
	_, _, body := get(t, "GET", "http://"+b.Addr()+"/metrics")
	if !strings.Contains(body, "gateway_dns_queries_total 9") {
		t.Errorf("second server: /metrics lacks its own DNS stats")
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	s := start(t, Options{})
	base := "http://" + s.Addr()
	for _, p := range []string{"/", "/metricsx", "/healthz/", "/debug/pprof/"} {
		if code, _, _ := get(t, "GET", base+p); code != 404 {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
			code, h, _ := get(t, m, base+p)
			if code != 405 {
				t.Errorf("%s %s = %d, want 405", m, p, code)
			}
			if a := h.Get("Allow"); a != "GET, HEAD" {
				t.Errorf("%s %s: Allow = %q", m, p, a)
			}
		}
	}
}

func TestAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if s, err := Start(Options{Listen: ln.Addr().String()}); err == nil {
		s.Close(context.Background())
		t.Fatal("Start on a taken address: no error")
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		get(t, "GET", "http://"+addr+p)
	}
	// A client that keeps its connection open: Close must end it.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting after Close")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPprof: /debug/pprof/ is served only with Pprof set.
func TestPprof(t *testing.T) {
	s := start(t, Options{Pprof: true})
	base := "http://" + s.Addr()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if code, _, body := get(t, "GET", base+p); code != 200 || body == "" {
			t.Errorf("GET %s = %d (%d bytes), want 200 and a body", p, code, len(body))
		}
	}
	if code, _, body := get(t, "GET", base+"/debug/pprof/profile?seconds=1"); code != 200 || len(body) == 0 {
		t.Errorf("GET CPU profile = %d, %d bytes", code, len(body))
	}
}
