package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/sink"
)

// syncBuffer collects Serve's log for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readyz(addr string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestServeAdmin runs the whole daemon with an admin listener: ready while
// the backend answers, not ready once it is gone, and gone when Serve ends.
func TestServeAdmin(t *testing.T) {
	backend, err := sink.Start(sink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	dir := t.TempDir()
	adminAddr := freePort(t)
	cfg := fmt.Sprintf(`hostname: mx.example.test
listen:
  - address: %q
domains: [example.test]
backend:
  servers: [%q]
admin:
  listen: %q
dns:
  servers: ["127.0.0.1:1"]
checks:
  greylist:
    store: memory
verdict_log:
  path: %q
data_dir: %q
shutdown_grace: 2s
`, freePort(t), backend.Addr(), adminAddr, filepath.Join(dir, "verdicts.jsonl"), dir)
	path := filepath.Join(dir, "mxgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, &log) }()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", log.String())
		}
	}()

	waitFor := func(what string, d time.Duration, ok func(code int, body string, err error) bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			code, body, err := readyz(adminAddr)
			if ok(code, body, err) {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("%s: Serve returned %v", what, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last /readyz = %d %q, %v", what, code, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("ready", 5*time.Second, func(code int, _ string, err error) bool { return err == nil && code == 200 })

	backend.Close()
	stopped := time.Now()
	waitFor("backend gone", 8*time.Second, func(code int, body string, err error) bool {
		return err == nil && code == 503 && strings.Contains(body, "no backend reachable")
	})
	if d := time.Since(stopped); d > 6500*time.Millisecond {
		t.Errorf("/readyz took %v to notice the backend was gone", d)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, _, err := readyz(adminAddr); err == nil {
		t.Error("admin listener still answering after Serve returned")
	}
}

// TestServeAdminTaken: an admin address already in use fails the start,
// and the SMTP listeners opened before it are closed again.
func TestServeAdminTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	smtpAddr := freePort(t)
	cfg := fmt.Sprintf(`hostname: mx.example.test
listen:
  - address: %q
domains: [example.test]
backend:
  servers: ["127.0.0.1:1"]
admin:
  listen: %q
dns:
  servers: ["127.0.0.1:1"]
checks:
  greylist:
    store: memory
verdict_log:
  path: %q
data_dir: %q
shutdown_grace: 2s
`, smtpAddr, taken.Addr().String(), filepath.Join(dir, "verdicts.jsonl"), dir)
	path := filepath.Join(dir, "mxgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Serve(ctx, path, io.Discard); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("Serve = %v, want the admin listen error", err)
	}
	ln, err := net.Listen("tcp", smtpAddr)
	if err != nil {
		t.Fatalf("SMTP address still held after the failed start: %v", err)
	}
	ln.Close()
}
