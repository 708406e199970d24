package e2e

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"
)

// TestReloadOnSIGHUP: the real binary picks up a changed configuration on
// SIGHUP, keeps running on its old configuration when the new file is bad
// (and says why in its log), and exits cleanly on SIGTERM.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	sinkBin := testutil.Need(t, "smtp-sink", "postfix")
	swaks := testutil.Need(t, "swaks", "swaks")
	sinkAddr := loopback(testutil.FreePort(t))
	startSink(t, sinkBin, sinkAddr, newDumpDir(t))
	g := startGateway(t, sinkAddr)
	_, port, _ := net.SplitHostPort(g.addr)
	msg := t.TempDir() + "/m.eml"
	os.WriteFile(msg, []byte("From: sender@example.test\r\nSubject: reload\r\n\r\nhello\r\n"), 0o644)

	send := func(rcpt string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return runSwaks(ctx, swaks, port, rcpt, msg)
	}
	// until waits for the gateway to answer rcpt as wanted (a reload is
	// asynchronous to the signal).
	until := func(rcpt string, accepted bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := send(rcpt)
			if (err == nil) == accepted {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: accepted=%v, want %v\n%s", rcpt, err == nil, accepted, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	out, err := send("someone@new.test")
	if err == nil || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("new.test before the reload: %v\n%s", err, out)
	}

	cfg, _ := os.ReadFile(g.config)
	good := strings.Replace(string(cfg), "domains: [dest.test]", "domains: [dest.test, new.test]", 1)
	os.WriteFile(g.config, []byte(good), 0o644)
	g.proc.cmd.Process.Signal(syscall.SIGHUP)
	until("someone@new.test", true)

	bad := strings.Replace(good, "domains: [dest.test, new.test]", "domains: [dest.test]\nbogus_key: 1", 1)
	os.WriteFile(g.config, []byte(bad), 0o644)
	g.proc.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.proc.out.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the failed reload:\n%s", g.proc.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(g.proc.out.String(), "bogus_key: unknown key") {
		t.Errorf("the log does not say what is wrong with the file:\n%s", g.proc.out.String())
	}
	until("someone@new.test", true) // the running configuration stayed
	g.stop(t)
	g.checkSpoolEmpty(t)
}
