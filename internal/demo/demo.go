// Package demo runs `gateway demo`: the real gateway on loopback with
// embedded stand-ins for everything outside it (an in-process backend MTA
// that saves accepted messages as .eml files), a guided tour of example
// transactions sent through real SMTP, and then the gateway keeps serving
// until interrupted so a person can try their own client. It needs no
// network, no root and no configuration file.
package demo

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"

	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"github.com/emersion/go-msgauth/dkim"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
	"github.com/mxgate/mxgate/internal/sink"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/server"
)

// Options configure the demo.
type Options struct {
	Listen string // gateway address, e.g. 127.0.0.1:2525
	Tour   bool   // send the guided tour
	Exit   bool   // return after the tour instead of serving until ctx is done
	Out    io.Writer
	Err    io.Writer
	Dir    string // where messages and verdicts go; "" = a new temp dir
}

// The demo's names: all under .test (RFC 2606), so nothing can leak out.
const (
	hostname = "mx.demo.test"
	domain   = "demo.test"
	unknown  = "nobody@demo.test" // the backend refuses this one
)

// Run starts everything, runs the tour, and serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "mxgate-demo-")
		if err != nil {
			return err
		}
		dir = d
	}
	be, err := sink.Start(sink.Config{
		Hostname: "backend.demo.test",
		Dir:      filepath.Join(dir, "mail"),
		OnRcpt: func(rcpt, _ string) *sink.Reply {
			if strings.EqualFold(rcpt, unknown) {
				return &sink.Reply{Code: 550, Text: "5.1.1 <" + rcpt + ">: Recipient address rejected: User unknown in virtual mailbox table"}
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("starting the demo backend: %w", err)
	}
	defer be.Close()
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o755); err != nil {
		return err
	}

	signer, dkimKey, err := newSigner()
	if err != nil {
		return err
	}
	dns, err := zoneserver.Start("127.0.0.1:0", demoZones(dkimKey)...)
	if err != nil {
		return fmt.Errorf("starting the demo DNS server: %w", err)
	}
	defer dns.Close()

	cfg, err := Config(o.Listen, be.Addr(), dns.Addr())
	if err != nil {
		return err
	}
	vf, err := os.OpenFile(filepath.Join(dir, "verdicts.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer vf.Close()
	tap := newTap()
	log := slog.New(slog.NewJSONHandler(o.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(cfg, verdict.NewWriter(io.MultiWriter(vf, tap)), log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("%w (use --listen to pick another address)", err)
	}
	addr := srv.Addrs()[0].String()
	fmt.Fprintf(o.Out, "mxgate demo\n\n")
	fmt.Fprintf(o.Out, "  gateway    %s  (hostname %s; accepts mail for %s)\n", addr, hostname, domain)
	fmt.Fprintf(o.Out, "  backend    %s  (in-process MTA; refuses %s)\n", be.Addr(), unknown)
	fmt.Fprintf(o.Out, "  dns        %s  (in-process; the block list bl.demo.test lists 127.0.0.2)\n", dns.Addr())
	fmt.Fprintf(o.Out, "  messages   %s\n", filepath.Join(dir, "mail"))
	fmt.Fprintf(o.Out, "  verdicts   %s\n\n", filepath.Join(dir, "verdicts.jsonl"))

	if o.Tour {
		runTour(o.Out, addr, tap, signer)
		if msgs := be.Accepted(); len(msgs) > 0 {
			fmt.Fprintf(o.Out, "The Authentication-Results header the backend got with example 1:\n\n%s\n", authResultsOf(msgs[0].Data))
		}
	}
	if !o.Exit {
		fmt.Fprintf(o.Out, "The gateway keeps serving until Ctrl-C. Try it yourself:\n\n")
		fmt.Fprintf(o.Out, "  swaks --server %s --from you@example.org --to postmaster@%s\n", addr, domain)
		fmt.Fprintf(o.Out, "  swaks --server %s --from you@example.org --to someone@elsewhere.test\n\n", addr)
		fmt.Fprintf(o.Out, "Each transaction appends a verdict record to the verdicts file.\n")
		<-ctx.Done()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

//go:embed demo.yaml
var demoYAML string

// Config is the demo's configuration (demo.yaml), loaded by the real loader
// so its rules are checked exactly like an operator's.
func Config(listen, backend, dns string) (*config.Config, error) {
	y := strings.NewReplacer("{{backend}}", backend, "{{dns}}", dns).Replace(demoYAML)
	cfg, err := config.Parse("demo.yaml (built in)", []byte(y))
	if err != nil {
		return nil, err
	}
	// Set after validation, which rightly refuses port 0 in a configuration
	// file; the demo's tests ask for any free port.
	cfg.Listen = []config.Listener{{Address: listen}}
	return cfg, nil
}

// tap receives the verdict JSON lines and hands the records to the tour.
type tap struct {
	mu   sync.Mutex
	buf  []byte
	recs map[string]verdict.Record
	cond *sync.Cond
}

func newTap() *tap {
	t := &tap{recs: map[string]verdict.Record{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	for {
		i := strings.IndexByte(string(t.buf), '\n')
		if i < 0 {
			break
		}
		var r verdict.Record
		if json.Unmarshal(t.buf[:i], &r) == nil {
			t.recs[r.Ref] = r
		}
		t.buf = t.buf[i+1:]
	}
	t.cond.Broadcast()
	return len(p), nil
}

// wait returns the record with the given ref, waiting up to 5 s.
func (t *tap) wait(ref string) (verdict.Record, bool) {
	deadline := time.Now().Add(5 * time.Second)
	go func() { time.Sleep(5 * time.Second); t.cond.Broadcast() }()
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if r, ok := t.recs[ref]; ok {
			return r, true
		}
		if time.Now().After(deadline) {
			return verdict.Record{}, false
		}
		t.cond.Wait()
	}
}

// newSigner makes a fresh Ed25519 DKIM key (RFC 8463) for sender.test,
// selector "demo", and returns a signer and the key for the DNS record.
func newSigner() (func(string) string, string, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, "", err
	}
	sign := func(msg string) string {
		var out bytes.Buffer
		err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
			Domain: "sender.test", Selector: "demo", Signer: priv,
			HeaderKeys: []string{"From", "To", "Subject", "Message-ID"},
		})
		if err != nil {
			return msg
		}
		return out.String()
	}
	return sign, base64.StdEncoding.EncodeToString(pub), nil
}

// authResultsOf returns a message's Authentication-Results field, unfolded
// lines kept, for printing.
func authResultsOf(data []byte) string {
	var lines []string
	in := false
	for _, l := range strings.Split(string(data), "\r\n") {
		switch {
		case strings.HasPrefix(l, "Authentication-Results:"):
			in = true
		case in && (strings.HasPrefix(l, "\t") || strings.HasPrefix(l, " ")):
		default:
			in = false
		}
		if in {
			lines = append(lines, "  "+l)
		}
		if l == "" {
			break
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// dial opens a raw SMTP dialogue with the gateway.
func dial(addr, from string) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		// Any 127/8 address is this host's on loopback, so the tour can
		// be a client listed in the demo DNSBL.
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c), nil
}
