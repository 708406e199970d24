// Package testutil holds helpers shared by tests that run real programs:
// the gateway binary itself and third-party mail tools.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// sbinDirs are searched after PATH: tools such as Postfix's smtp-sink live
// in /usr/sbin, which is not in an unprivileged user's PATH.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// InCI reports whether the CI environment variable is set to something
// other than "", "0" or "false". In CI nothing may skip silently.
func InCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// Need returns the path of an external program the test needs. When it is
// missing: t.Skip with a message naming the Debian package to install —
// unless the CI environment variable is set (CI=true), then t.Fatal: in CI
// nothing skips silently.
func Need(t testing.TB, prog, debPackage string) string {
	t.Helper()
	if path, err := lookPath(prog); err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found in PATH or %s; install the Debian package %q (apt-get install %s)",
		prog, strings.Join(sbinDirs, ", "), debPackage, debPackage)
	if InCI() {
		t.Fatalf("%s [CI is set, so a missing program is a failure, not a skip]", msg)
	}
	t.Skip(msg)
	return ""
}

// Have reports whether prog is installed (in PATH or an sbin directory),
// for benchmarks: they skip without it, in CI too, since CI runs no
// benchmarks and a missing peer must not fail one run by hand.
func Have(prog string) bool {
	_, err := lookPath(prog)
	return err == nil
}

func lookPath(prog string) (string, error) {
	if strings.ContainsRune(prog, os.PathSeparator) {
		return exec.LookPath(prog)
	}
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		if p, err := exec.LookPath(filepath.Join(dir, prog)); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// FreePort returns a free 127.0.0.1 TCP port (listen on :0, close). Another
// process may take it before the caller binds it; on a test machine that is
// rare enough to accept.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("FreePort: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// BuildGateway builds ./cmd/gateway once per test binary (sync.Once) into a
// temp dir and returns its path; uses `go env GOMOD` to find the module
// root. Call RemoveBuilds from TestMain to delete the temp dir afterwards.
func BuildGateway(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.path, build.err = buildGateway()
	})
	if build.err != nil {
		t.Fatalf("building the gateway: %v", build.err)
	}
	return build.path
}

func buildGateway() (string, error) {
	goBin, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	dir, err := os.MkdirTemp("", "mxgate-gateway-bin-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "gateway")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/gateway")
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gateway in %s: %v\n%s", cmd.Dir, err, stderr.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		fmt.Fprintf(os.Stderr, "testutil: building the gateway took %v\n", d.Round(time.Millisecond))
	}
	return bin, nil
}

// goTool finds the go command. `go test` puts its own GOROOT/bin first in
// the PATH of the test binaries it runs, so this is the same toolchain.
func goTool() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is not in PATH: %w", err)
	}
	return p, nil
}

// RemoveBuilds deletes what BuildGateway built. Call it from TestMain after
// m.Run; the binary cannot be used afterwards.
func RemoveBuilds() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// WaitTCP waits until addr accepts connections (or fails the test after
// timeout).
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not accept connections within %v: %v", addr, timeout, err)
}
