package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a redis-server child process on 127.0.0.1, for one test.
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
	Log  string
}

// URL returns the server's redis:// URL, with userinfo (user:pass, or
// empty) and database db.
func (s *RedisServer) URL(userinfo string, db int) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return fmt.Sprintf("redis://%s%s/%d", userinfo, s.Addr, db)
}

// Signal sends sig to the server, failing the test if it cannot.
func (s *RedisServer) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to redis-server: %v", sig, err)
	}
}

// StartRedis starts a redis-server that saves nothing to disk, with extra
// arguments appended, and waits until it answers PING. It is stopped when
// the test ends: SIGTERM, then SIGKILL if it has not exited within 5 s.
func StartRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	bin := Need(t, "redis-server", "redis-server")
	dir := t.TempDir()
	var lastErr error
	// A free port may be taken before the server binds it; try again then.
	for range 3 {
		s, err := tryStartRedis(t, bin, dir, extra)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return nil
}

func tryStartRedis(t testing.TB, bin, dir string, extra []string) (*RedisServer, error) {
	port := FreePort(t)
	logPath := filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "yes", "--dir", dir,
	}, extra...)
	cmd := exec.Command(bin, args...)
	// An *os.File, not a buffer: exec then needs no copying goroutine,
	// which CheckGoroutines would count.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	stop := func() {
		// SIGCONT first: a stopped process (TestRedisStalled) only acts
		// on SIGTERM once it runs again.
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, Log: logPath}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pingRedis(s.Addr); err == nil {
			t.Cleanup(stop)
			return s, nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("redis-server exited at start: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("redis-server on %s did not answer PING within 10s: %s", s.Addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pingRedis sends an inline PING and expects +PONG, or an error about
// authentication, which also means the server is up.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING answered %q", line)
}
