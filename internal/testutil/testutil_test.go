package testutil

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes TestNeedHelper do its work; it is set only in the
// subprocesses TestNeedCI starts.
const helperEnv = "MXGATE_TESTUTIL_NEED_HELPER"

const (
	missingProg = "mxgate-no-such-program-7f3a"
	missingPkg  = "mxgate-imaginary-package"
)

// TestNeedHelper is run as a subprocess by TestNeedCI; on its own it does
// nothing.
func TestNeedHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper for TestNeedCI")
	}
	Need(t, missingProg, missingPkg)
	t.Log("NEED RETURNED") // never reached: Need skips or fails
}

// runHelper runs TestNeedHelper in a copy of this test binary with CI set
// to ci ("" removes it from the environment).
func runHelper(t *testing.T, ci string) (string, error) {
	t.Helper()
	var env []string
	gorace := "atexit_sleep_ms=0" // a -race binary otherwise idles 1 s on exit
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "CI="):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	env = append(env, helperEnv+"=1", "GORACE="+gorace)
	if ci != "" {
		env = append(env, "CI="+ci)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNeedHelper$", "-test.v", "-test.count=1")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestNeedCI(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("inside the helper")
	}
	t.Parallel()

	t.Run("CI=true fails", func(t *testing.T) {
		t.Parallel()
		out, err := runHelper(t, "true")
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("want a non-zero exit, got err=%v\n%s", err, out)
		}
		for _, want := range []string{"--- FAIL: TestNeedHelper", missingProg, missingPkg} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "--- SKIP") || strings.Contains(out, "NEED RETURNED") {
			t.Errorf("helper skipped or carried on:\n%s", out)
		}
	})

	t.Run("no CI skips", func(t *testing.T) {
		t.Parallel()
		for _, ci := range []string{"", "false"} {
			out, err := runHelper(t, ci)
			if err != nil {
				t.Fatalf("CI=%q: want exit 0, got %v\n%s", ci, err, out)
			}
			for _, want := range []string{"--- SKIP: TestNeedHelper", missingProg, "Debian package", missingPkg} {
				if !strings.Contains(out, want) {
					t.Errorf("CI=%q: output lacks %q:\n%s", ci, want, out)
				}
			}
			if strings.Contains(out, "NEED RETURNED") {
				t.Errorf("CI=%q: helper carried on after Need:\n%s", ci, out)
			}
		}
	})
}

func TestNeedFound(t *testing.T) {
	sh := Need(t, "sh", "dash")
	if fi, err := os.Stat(sh); err != nil || fi.IsDir() {
		t.Fatalf("Need(sh) = %q: %v", sh, err)
	}
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "FALSE": false, "true": true, "1": true, "yes": true} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}

func TestFreePortAndWaitTCP(t *testing.T) {
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreePort gave %d, which cannot be bound: %v", port, err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	WaitTCP(t, addr, 2*time.Second)
}
