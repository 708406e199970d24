package dnsbl

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/testutil"
)

// The zones served by rbldnsd: RFC 5782 §5 test points, a range with its
// own answer, an address answered the way Spamhaus refuses a public
// resolver, IPv6 entries and a domain list.
var rbldnsdZones = map[string]string{
	"bl.ip4set": `$SOA 300 ns.bl.test. hostmaster.bl.test. 0 600 300 86400 60
$NS 300 ns.bl.test.
:127.0.0.2:Listed in bl.test: $
127.0.0.2
192.0.2.0/24 :127.0.0.4:TEST-NET-1 $ listed with code 4
198.51.100.7 :127.0.0.10:policy listing
127.0.0.254 :127.255.255.254:query refused
`,
	"bl6.ip6trie": `:127.0.0.2:Listed in bl6.test
::ffff:7f00:2
2001:db8:25::/48 :127.0.0.3:IPv6 range
`,
	"dbl.dnset": `$SOA 300 ns.bl.test. hostmaster.bl.test. 0 600 300 86400 60
$NS 300 ns.bl.test.
:127.0.1.2:Domain $ listed
test
spammer.test
*.spammer.test
refused.test :127.255.255.254:query refused
`,
}

// startRbldnsd runs rbldnsd on a free loopback UDP port and returns its
// address; t.Cleanup kills exactly that process.
func startRbldnsd(t *testing.T) string {
	bin := testutil.Need(t, "rbldnsd", "rbldnsd")
	dir := t.TempDir()
	// rbldnsd drops root before it reads the zones: it needs to reach
	// them through the test's (0700) temporary root too.
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range rbldnsdZones {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeUDPAddr(t)
	ap := netip.MustParseAddrPort(addr)
	args := []string{"-n", "-b", fmt.Sprintf("%s/%d", ap.Addr(), ap.Port()), "-t", "300", "-c", "0", "-a"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "rbldns") // it refuses to run as root
	}
	args = append(args,
		"bl.test:ip4set:"+filepath.Join(dir, "bl.ip4set"),
		"bl6.test:ip6trie:"+filepath.Join(dir, "bl6.ip6trie"),
		"dbl.test:dnset:"+filepath.Join(dir, "dbl.dnset"))
	cmd := exec.Command(bin, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("rbldnsd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// It binds before it loads the zones: wait for an answer.
	r := newTestResolver(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := r.LookupIP(ctx, "ip4", "2.0.0.127.bl.test.")
		cancel()
		if err == nil {
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("rbldnsd exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rbldnsd did not answer in 10s (%v): %s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeUDPAddr returns a loopback UDP address nothing listens on now.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func newTestResolver(t *testing.T, addr string) *resolver.Client {
	t.Helper()
	r, err := resolver.New(resolver.Config{Servers: []string{addr}, Timeout: time.Second, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRbldnsd runs the checks against a real DNSBL server through the
// real resolver.
func TestRbldnsd(t *testing.T) {
	addr := startRbldnsd(t)
	log, buf := testLog()
	d := mustNew(t, newTestResolver(t, addr), Options{
		Zones: []Zone{
			{Zone: "bl.test", Name: "bl", Weight: 5, Answers: []Answer{
				ans("127.0.0.2", nil, ""),
				ans("127.0.0.4", wp(3), "TEST-NET-1 is listed"),
			}},
			{Zone: "bl6.test", Name: "bl6", Weight: 2},
			{Zone: "nosuch.test", Name: "missing", Weight: 1}, // not served: REFUSED
		},
		Domains: []DomainZone{{Zone: Zone{Zone: "dbl.test", Name: "dbl", Weight: 4}, On: []string{"helo", "mail_from"}}},
		Log:     log,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Start(ctx)

	wantHealth := []ZoneHealth{
		{Name: "bl", Healthy: true},
		{Name: "bl6", Healthy: true},
		{Name: "missing", Healthy: true}, // no answer: keeps its state
		{Name: "dbl", Healthy: true},
	}
	got := d.Health()
	for i := range got {
		if i < len(wantHealth) && (got[i].Name != wantHealth[i].Name || got[i].Healthy != wantHealth[i].Healthy || got[i].Reason != "") {
			t.Errorf("health[%d] = %+v, want %+v", i, got[i], wantHealth[i])
		}
	}
	if got[2].Errors == 0 || !got[2].Checked.IsZero() || got[0].Checked.IsZero() {
		t.Errorf("probe bookkeeping: %+v", got)
	}

	for _, tc := range []struct {
		ip     string
		result string
		score  float64
		listed []string
		reason string
		detail string
	}{
		{"127.0.0.2", "listed", 5, []string{"bl"}, "listed by bl (127.0.0.2)", "bl: 127.0.0.2; bl6: not listed; missing: REFUSED"},
		{"127.0.0.1", "temperror", 0, []string{}, "", "bl: not listed; bl6: not listed; missing: REFUSED"},
		{"192.0.2.77", "listed", 3, []string{"bl"}, "TEST-NET-1 is listed", ""},
		{"198.51.100.7", "temperror", 0, []string{}, "", "bl: not listed (127.0.0.10 not counted); bl6: not listed; missing: REFUSED"},
		{"127.0.0.254", "temperror", 0, []string{}, "", "bl: refused (127.255.255.254); bl6: not listed; missing: REFUSED"},
		{"2001:db8:25::1", "listed", 2, []string{"bl6"}, "listed by bl6 (127.0.0.3)", "bl: not listed; bl6: 127.0.0.3; missing: REFUSED"},
		{"::ffff:192.0.2.1", "listed", 3, []string{"bl"}, "TEST-NET-1 is listed", ""},
	} {
		r := d.IP().Run(ctx, checks.Input{IP: netip.MustParseAddr(tc.ip)})
		want := map[string]any{"dnsbl.score": tc.score, "dnsbl.listed": tc.listed, "dnsbl.reason": tc.reason}
		if r.Result != tc.result || !reflect.DeepEqual(r.Facts, want) || tc.detail != "" && r.Detail != tc.detail {
			t.Errorf("%s: %s %v %q; want %s %v %q", tc.ip, r.Result, r.Facts, r.Detail, tc.result, want, tc.detail)
		}
	}

	for _, tc := range []struct {
		helo, mail string
		helo1      []string
		mailListed []string
		score      float64
		result     string
	}{
		{"mx.spammer.test", "example.org", []string{"dbl"}, []string{}, 4, "listed"},
		{"mx.example.org", "SPAMMER.test", []string{}, []string{"dbl"}, 4, "listed"},
		{"a.spammer.test", "b.spammer.test", []string{"dbl"}, []string{"dbl"}, 8, "listed"},
		{"[127.0.0.1]", "refused.test", []string{}, []string{}, 0, "temperror"},
		{"mx.example.org", "", []string{}, []string{}, 0, "clean"},
	} {
		in := checks.Input{Helo: tc.helo, MailDomain: tc.mail}
		h := d.Helo().Run(ctx, in)
		m := d.MailFrom().Run(ctx, in)
		if !reflect.DeepEqual(h.Facts["rhsbl.helo.listed"], tc.helo1) ||
			!reflect.DeepEqual(m.Facts, map[string]any{"rhsbl.mail_from.listed": tc.mailListed, "rhsbl.score": tc.score}) || m.Result != tc.result {
			t.Errorf("helo %s, mail %s: %v / %s %v (%q)", tc.helo, tc.mail, h.Facts, m.Result, m.Facts, m.Detail)
		}
	}

	if out := buf.String(); !strings.Contains(out, "list=bl answer=127.255.255.254") {
		t.Errorf("no warning for the refused answer:\n%s", out)
	}
}

// TestRbldnsdRefusedZone: a list answering its test point the way
// Spamhaus refuses a public resolver is switched off, and its (otherwise
// listing) answers are not used.
func TestRbldnsdRefusedZone(t *testing.T) {
	addr := startRbldnsd(t)
	// The test point gets the refusal, as from a list refusing us.
	f := &refusingResolver{Resolver: newTestResolver(t, addr), refuse: "2.0.0.127.bl.test."}
	log, buf := testLog()
	d := mustNew(t, f, Options{Zones: []Zone{{Zone: "bl.test", Name: "bl", Weight: 5}}, Log: log})
	d.Start(context.Background())
	if h := d.Health()[0]; h.Healthy || h.Reason != reasonRefused {
		t.Fatalf("health %+v", h)
	}
	r := d.IP().Run(context.Background(), checks.Input{IP: netip.MustParseAddr("192.0.2.1")})
	if r.Result != "clean" || r.Detail != "bl: skipped (unhealthy: "+reasonRefused+")" {
		t.Errorf("%s %q", r.Result, r.Detail)
	}
	if !strings.Contains(buf.String(), "level=WARN") {
		t.Errorf("no warning:\n%s", buf.String())
	}
}

// refusingResolver asks rbldnsd for 127.0.0.254, which it answers with
// 127.255.255.254, instead of one name.
type refusingResolver struct {
	resolver.Resolver
	refuse string
}

func (r *refusingResolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	if host == r.refuse {
		host = "254.0.0.127.bl.test."
	}
	return r.Resolver.LookupIP(ctx, network, host)
}
