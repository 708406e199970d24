package e2e

import (
	"bytes"
	"context"
	"fmt"
	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testutil"
)

// syncBuffer collects a child's output; os/exec copies into it from its
// own goroutine while the test may read it.
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

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[... %d lines left out ...]\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], ""))
}

// proc is a child process the test started. Only processes started here
// are ever signalled, and only through their *os.Process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, valid once done is closed
}

// startProc starts bin with args. Its stdout and stderr are kept and put in
// the test log if the test fails; cleanup stops it (SIGTERM, then SIGKILL
// after 5 s) if it is still running.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	setProcAttr(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.stop()
		}
		if t.Failed() {
			t.Logf("%s (%s) exited with %v; its output:\n%s", name, strings.Join(p.cmd.Args, " "), p.err, tail(p.out.String(), 200))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the process is still there after 5 s,
// and returns how it exited.
func (p *proc) stop() error {
	if p.exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for 5s and was killed: %v", p.name, p.err)
	}
	return p.err
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// waitListening waits until addr accepts connections, failing at once when
// the process exits instead of waiting out the timeout.
func (p *proc) waitListening(t *testing.T, addr string) {
	t.Helper()
	if p.listening(addr) {
		return
	}
	if p.exited() {
		t.Fatalf("%s exited before listening on %s: %v", p.name, addr, p.err)
	}
	testutil.WaitTCP(t, addr, time.Second) // reports the last dial error
}

// listening waits up to 15 s for addr to accept connections, and reports
// whether it does (false at once when the process exits).
func (p *proc) listening(addr string) bool {
	deadline := time.Now().Add(15 * time.Second)
	for !p.exited() && time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// keepEnv, set to 1, keeps smtp-sink's dumps of a failed test for a look.
const keepEnv = "MXGATE_E2E_KEEP"

// newDumpDir makes the directory smtp-sink writes one file per message
// into. smtp-sink drops root privileges to "nobody" (-u), so the directory
// is world-writable and created directly under the system temp directory,
// not under t.TempDir's private parent.
func newDumpDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxgate-e2e-sink-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if os.Getenv(keepEnv) == "1" {
				t.Logf("smtp-sink dumps kept in %s", dir)
				return
			}
			t.Logf("set %s=1 to keep smtp-sink's dumps of a failed test", keepEnv)
		}
		os.RemoveAll(dir)
	})
	return dir
}

// startSink starts Postfix's smtp-sink on addr, dumping every message
// transaction to its own file in dumpDir (-d; sinkDump describes the format).
func startSink(t *testing.T, bin, addr, dumpDir string) *proc {
	t.Helper()
	var args []string
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // required when run as root
	}
	// "m." is a strftime template without conversions; smtp-sink appends
	// a random hex number per message.
	args = append(args, "-d", filepath.Join(dumpDir, "m."), "-h", "sink.test", addr, "256")
	p := startProc(t, "smtp-sink", bin, args...)
	p.waitListening(t, addr)
	return p
}

// testDNS serves testdata/zones on loopback for the gateway's checks:
// example.test, the senders' domain, publishes SPF for loopback and DMARC.
func testDNS(t *testing.T) string {
	t.Helper()
	zones, err := zoneserver.LoadZoneDir("../testdata/zones")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := zoneserver.Start("127.0.0.1:0", zones...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Addr()
}

// gateway is one running `gateway serve`.
type gateway struct {
	bin      string
	addr     string // where clients connect
	dir      string // config and verdict log
	config   string
	verdicts string
	spool    string // message.temp_dir
	proc     *proc
}

const gatewayHostname = "mx.e2e.test"

// startGateway writes a configuration relaying to backend, checks it with
// `gateway check-config`, and starts `gateway serve` with it.
func startGateway(t *testing.T, backend string) *gateway {
	t.Helper()
	g := &gateway{bin: testutil.BuildGateway(t), addr: loopback(testutil.FreePort(t)), dir: t.TempDir()}
	g.config = filepath.Join(g.dir, "config.yaml")
	g.verdicts = filepath.Join(g.dir, "verdicts.jsonl")
	g.spool = filepath.Join(g.dir, "spool")
	if err := os.Mkdir(g.spool, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`# written by the e2e tests
hostname: %s
listen:
  - address: %q
domains: [dest.test]
backend:
  servers: [%q]
  timeouts:
    connect: 2s
    command: 5s
    data: 10s
    final: 10s
message:
  # Small, so that larger test messages go through a temporary file.
  memory_buffer: 64KiB
  temp_dir: %q
dns:
  servers: [%q]
data_dir: %q
verdict_log:
  path: %q
log:
  level: info
shutdown_grace: 3s
`, gatewayHostname, g.addr, backend, g.spool, testDNS(t), g.dir, g.verdicts)
	if err := os.WriteFile(g.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.bin, "check-config", "--config", g.config).CombinedOutput()
	if err != nil {
		t.Fatalf("gateway check-config --config %s: %v\n%s\nconfig:\n%s", g.config, err, out, cfg)
	}

	// FreePort's port can be taken by a test running in parallel before
	// the gateway binds it; then try another.
	for attempt := 1; ; attempt++ {
		g.proc = startProc(t, "gateway", g.bin, "serve", "--config", g.config)
		if g.proc.listening(g.addr) {
			return g
		}
		if attempt == 5 || !strings.Contains(g.proc.out.String(), "address already in use") {
			g.proc.waitListening(t, g.addr) // reports the failure
			return g
		}
		old := g.addr
		g.addr = loopback(testutil.FreePort(t))
		cfg = strings.Replace(cfg, old, g.addr, 1)
		if err := os.WriteFile(g.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stop shuts the gateway down with SIGTERM, as an operator would, and
// fails the test unless it exits cleanly. Afterwards every verdict record
// has been written.
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	if err := g.proc.stop(); err != nil {
		t.Errorf("gateway did not exit cleanly on SIGTERM: %v", err)
	}
}

// checkSpoolEmpty fails the test if the gateway left temporary files.
func (g *gateway) checkSpoolEmpty(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(g.spool)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("message.temp_dir %s holds %d files after the gateway stopped (leaked temporary files): %s",
			g.spool, len(ents), strings.Join(names, " "))
	}
}
