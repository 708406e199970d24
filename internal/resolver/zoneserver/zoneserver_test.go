package zoneserver

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testdataZones = "../../../testdata/zones"

// start serves zones on a loopback port for the duration of the test.
func start(t *testing.T, zones ...Zone) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", zones...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func startTestdata(t *testing.T) *Server {
	t.Helper()
	zones, err := LoadZoneDir(testdataZones)
	if err != nil {
		t.Fatal(err)
	}
	return start(t, zones...)
}

// ask sends one query; edns 0 means no OPT record.
func ask(t *testing.T, s *Server, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, s.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

// rdata renders the answer section as "owner TYPE rdata" lines, sorted.
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		f := strings.SplitN(rr.String(), "\t", 5)
		out = append(out, strings.ToLower(h.Name)+" "+dns.TypeToString[h.Rrtype]+" "+f[len(f)-1])
	}
	slices.Sort(out)
	return out
}

const miniZone = `$ORIGIN mini.test.
$TTL 60
@        SOA  ns.mini.test. hm.mini.test. 1 7200 900 1209600 30
@        NS   ns.mini.test.
ns       A    127.0.0.53
host     A    127.0.0.1
host     TXT  "hello"
*.wc     A    127.0.0.9
*.wc     MX   10 mx.mini.test.
x.wc     TXT  "explicit"
deep.e.n.t A  127.0.0.3
cname    CNAME host.mini.test.
chain    CNAME cname.mini.test.
away     CNAME host.example.test.
loop1    CNAME loop2.mini.test.
loop2    CNAME loop1.mini.test.
MiXeD    A    127.0.0.4
`

func TestAuthoritativeAnswers(t *testing.T) {
	s := start(t, Zone{Text: miniZone})
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		soa    bool // negative answer: SOA in authority
	}{
		{"host.mini.test", dns.TypeA, dns.RcodeSuccess, []string{"host.mini.test. A 127.0.0.1"}, false},
		{"HOST.Mini.Test", dns.TypeTXT, dns.RcodeSuccess, []string{`host.mini.test. TXT "hello"`}, false},
		{"mixed.mini.test", dns.TypeA, dns.RcodeSuccess, []string{"mixed.mini.test. A 127.0.0.4"}, false},
		{"host.mini.test", dns.TypeMX, dns.RcodeSuccess, nil, true},  // NODATA
		{"nope.mini.test", dns.TypeA, dns.RcodeNameError, nil, true}, // NXDOMAIN
		{"e.n.t.mini.test", dns.TypeA, dns.RcodeSuccess, nil, true},  // empty non-terminal
		{"t.mini.test", dns.TypeTXT, dns.RcodeSuccess, nil, true},    // ENT higher up
		{"below.deep.e.n.t.mini.test", dns.TypeA, dns.RcodeNameError, nil, true},
		{"a.wc.mini.test", dns.TypeA, dns.RcodeSuccess, []string{"a.wc.mini.test. A 127.0.0.9"}, false},
		{"b.c.wc.mini.test", dns.TypeMX, dns.RcodeSuccess, []string{"b.c.wc.mini.test. MX 10 mx.mini.test."}, false},
		{"a.wc.mini.test", dns.TypeTXT, dns.RcodeSuccess, nil, true},                                    // wildcard NODATA
		{"x.wc.mini.test", dns.TypeA, dns.RcodeSuccess, nil, true},                                      // existing name blocks the wildcard
		{"y.x.wc.mini.test", dns.TypeA, dns.RcodeNameError, nil, true},                                  // closest encloser x.wc has no wildcard
		{"wc.mini.test", dns.TypeA, dns.RcodeSuccess, nil, true},                                        // parent of the wildcard: ENT
		{"*.wc.mini.test", dns.TypeA, dns.RcodeSuccess, []string{"*.wc.mini.test. A 127.0.0.9"}, false}, // asked literally
		{"cname.mini.test", dns.TypeA, dns.RcodeSuccess, []string{
			"cname.mini.test. CNAME host.mini.test.", "host.mini.test. A 127.0.0.1"}, false},
		{"chain.mini.test", dns.TypeTXT, dns.RcodeSuccess, []string{
			"chain.mini.test. CNAME cname.mini.test.", "cname.mini.test. CNAME host.mini.test.", `host.mini.test. TXT "hello"`}, false},
		{"cname.mini.test", dns.TypeCNAME, dns.RcodeSuccess, []string{"cname.mini.test. CNAME host.mini.test."}, false},
		{"cname.mini.test", dns.TypeMX, dns.RcodeSuccess, []string{"cname.mini.test. CNAME host.mini.test."}, true},
		{"away.mini.test", dns.TypeA, dns.RcodeSuccess, []string{"away.mini.test. CNAME host.example.test."}, false},
		{"loop1.mini.test", dns.TypeA, dns.RcodeServerFailure, nil, false},
		{"example.test", dns.TypeA, dns.RcodeRefused, nil, false},
		{"mini.test.example", dns.TypeA, dns.RcodeRefused, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
			r := ask(t, s, "udp", tt.name, tt.qtype, 0)
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			want := slices.Clone(tt.answer)
			slices.Sort(want)
			if got := rdata(r.Answer); !slices.Equal(got, want) {
				t.Errorf("answer\n got %q\nwant %q", got, want)
			}
			gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if gotSOA != tt.soa {
				t.Errorf("authority %v, want SOA: %v", r.Ns, tt.soa)
			}
			if gotSOA && r.Ns[0].Header().Ttl != 30 {
				t.Errorf("negative SOA TTL %d, want min(60, MINIMUM 30) = 30", r.Ns[0].Header().Ttl)
			}
			inZone := tt.rcode != dns.RcodeRefused
			if r.Authoritative != inZone {
				t.Errorf("AA = %v, want %v", r.Authoritative, inZone)
			}
			if r.Id == 0 || !r.Response {
				t.Errorf("not a proper reply: %v", r.MsgHdr)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	s := startTestdata(t)
	tests := []struct {
		network   string
		edns      uint16
		truncated bool
	}{
		{"udp", 0, true},    // 512 bytes without EDNS0
		{"udp", 1232, true}, // still too small for ~2.5 KB
		{"udp", 4096, false},
		{"tcp", 0, false},
		{"tcp", 1232, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.network, tt.edns), func(t *testing.T) {
			r := ask(t, s, tt.network, "big.example.test", dns.TypeTXT, tt.edns)
			if r.Truncated != tt.truncated {
				t.Fatalf("TC = %v, want %v", r.Truncated, tt.truncated)
			}
			if tt.truncated && len(r.Answer) >= 12 {
				t.Errorf("TC set but %d answers", len(r.Answer))
			}
			if !tt.truncated && len(r.Answer) != 12 {
				t.Errorf("%d answers, want 12", len(r.Answer))
			}
			if (r.IsEdns0() != nil) != (tt.edns > 0) {
				t.Errorf("OPT in reply: %v, want %v", r.IsEdns0() != nil, tt.edns > 0)
			}
			if b, err := r.Pack(); err == nil && tt.network == "udp" && len(b) > max(int(tt.edns), 512) {
				t.Errorf("UDP reply of %d bytes exceeds %d", len(b), max(tt.edns, 512))
			}
		})
	}
}

func TestFaults(t *testing.T) {
	s := start(t, Zone{Text: miniZone})
	before := s.Queries()

	s.SetServFail("Host.Mini.Test", true) // any spelling
	if r := ask(t, s, "udp", "host.mini.test.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("SetServFail: rcode %s", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, s, "tcp", "host.mini.test.", dns.TypeTXT, 0); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("SetServFail over TCP: rcode %s", dns.RcodeToString[r.Rcode])
	}
	s.SetServFail("host.mini.test", false)
	if r := ask(t, s, "udp", "host.mini.test", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after SetServFail off: rcode %s", dns.RcodeToString[r.Rcode])
	}

	s.SetDrop("host.mini.test", true)
	q := new(dns.Msg).SetQuestion("host.mini.test.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	if _, _, err := c.Exchange(q, s.Addr()); err == nil {
		t.Error("SetDrop: got an answer")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("SetDrop: %v, want a timeout", err)
	}
	s.SetDrop("host.mini.test", false)

	s.SetDelay("host.mini.test", 150*time.Millisecond)
	t0 := time.Now()
	ask(t, s, "udp", "host.mini.test", dns.TypeA, 0)
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Errorf("SetDelay 150ms: answered in %v", d)
	}
	s.SetDelay("host.mini.test", 0)

	if got := s.Queries() - before; got != 5 {
		t.Errorf("Queries counted %d, want 5 (dropped ones included)", got)
	}
}

func TestCloseEndsDelayedAnswers(t *testing.T) {
	s, err := Start("127.0.0.1:0", Zone{Text: miniZone})
	if err != nil {
		t.Fatal(err)
	}
	s.SetDelay("host.mini.test", time.Hour)
	go func() {
		q := new(dns.Msg).SetQuestion("host.mini.test.", dns.TypeA)
		(&dns.Client{Timeout: time.Second}).Exchange(q, s.Addr())
	}()
	for s.Queries() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a delayed answer")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		zone Zone
		want string
	}{
		{"no origin", Zone{Text: "@ SOA a. b. 1 2 3 4 5\n"}, "without Origin"},
		{"no SOA", Zone{Origin: "x.test", Text: "a A 127.0.0.1\n"}, "no SOA"},
		{"two SOA", Zone{Origin: "x.test", Text: "@ SOA a. b. 1 2 3 4 5\n@ SOA a. b. 2 2 3 4 5\n"}, "SOA must appear once"},
		{"SOA below apex", Zone{Origin: "x.test", Text: "@ SOA a. b. 1 2 3 4 5\nsub SOA a. b. 1 2 3 4 5\n"}, "SOA must appear once"},
		{"out of zone", Zone{Origin: "x.test", Text: "@ SOA a. b. 1 2 3 4 5\ny.test. A 127.0.0.1\n"}, "outside the zone"},
		{"CNAME and data", Zone{Origin: "x.test", Text: "@ SOA a. b. 1 2 3 4 5\nc CNAME x.test.\nc A 127.0.0.1\n"}, "CNAME and other data"},
		{"syntax", Zone{Origin: "x.test", Text: "@ SOA a. b. 1 2 3 4 5\nc A not-an-ip\n"}, "bad A"},
		{"include", Zone{Origin: "x.test", Text: "$INCLUDE /etc/passwd\n"}, "$INCLUDE"},
		{"chaos", Zone{Origin: "x.test", Text: "@ SOA a. b. 1 2 3 4 5\nc CH TXT \"x\"\n"}, "want IN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start("127.0.0.1:0", tt.zone)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("duplicate zone", func(t *testing.T) {
		z := Zone{Text: miniZone}
		if s, err := Start("127.0.0.1:0", z, z); err == nil {
			s.Close()
			t.Fatal("Start succeeded")
		}
	})
	t.Run("port in use", func(t *testing.T) {
		s := start(t, Zone{Text: miniZone})
		if s2, err := Start(s.Addr(), Zone{Text: miniZone}); err == nil {
			s2.Close()
			t.Fatal("Start on a busy port succeeded")
		}
	})
}

func TestMostSpecificZoneAnswers(t *testing.T) {
	parent := Zone{Origin: "p.test", Text: "@ SOA a. b. 1 2 3 4 5\nx.child A 127.0.0.1\n"}
	child := Zone{Origin: "child.p.test", Text: "@ SOA a. b. 1 2 3 4 5\ny A 127.0.0.2\n"}
	s := start(t, parent, child)
	if r := ask(t, s, "udp", "y.child.p.test", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("child zone name: %v", r)
	}
	// The child zone owns the name space below it.
	if r := ask(t, s, "udp", "x.child.p.test", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Errorf("shadowed parent data: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestLoadZoneFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		file, text, origin string
	}{
		{"named.test.zone", "@ SOA a. b. 1 2 3 4 5\n", "named.test."},
		{"other.zone", "; comment\n$ORIGIN Directive.Test.\n@ SOA a. b. 1 2 3 4 5\n", "Directive.Test."},
		{"1.0.10.in-addr.arpa.zone", "@ SOA a. b. 1 2 3 4 5\n", "1.0.10.in-addr.arpa."},
	}
	for _, tt := range tests {
		z, err := LoadZoneFile(write(tt.file, tt.text))
		if err != nil {
			t.Fatal(err)
		}
		if z.Origin != tt.origin {
			t.Errorf("%s: origin %q, want %q", tt.file, z.Origin, tt.origin)
		}
	}
	if _, err := LoadZoneFile(filepath.Join(dir, "missing.zone")); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := LoadZoneDir(t.TempDir()); err == nil {
		t.Error("empty directory: no error")
	}
}

// TestSharedZones pins what other packages' tests rely on in
// testdata/zones.
func TestSharedZones(t *testing.T) {
	s := startTestdata(t)
	rev := func(ip, zone string) string {
		arpa, err := dns.ReverseAddr(ip)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(arpa, "in-addr.arpa.") + zone
	}
	// v6 builds the nibble name itself: dns.ReverseAddr turns an
	// IPv4-mapped address into its in-addr.arpa name, which is not how
	// RFC 5782 lists ::FFFF:7F00:2.
	v6 := func(ip, zone string) string {
		b := netip.MustParseAddr(ip).As16()
		var sb strings.Builder
		for i := 15; i >= 0; i-- {
			fmt.Fprintf(&sb, "%x.%x.", b[i]&0xf, b[i]>>4)
		}
		return sb.String() + zone
	}
	tests := []struct {
		name  string
		qtype uint16
		want  []string // rdata only; nil = NXDOMAIN or NODATA
	}{
		{"example.test", dns.TypeTXT, []string{`"v=spf1 ip4:127.0.0.0/8" " -all"`}},
		{"example.test", dns.TypeMX, []string{"10 mail.example.test.", "20 backup.example.test."}},
		{"mail.example.test", dns.TypeA, []string{"127.0.0.5"}},
		{"mail.example.test", dns.TypeAAAA, []string{"2001:db8::5"}},
		{"forged.example.test", dns.TypeA, []string{"127.0.0.99"}},
		{"nxdomain.example.test", dns.TypeA, nil},
		{"5.0.0.127.in-addr.arpa", dns.TypePTR, []string{"mail.example.test."}},
		{"6.0.0.127.in-addr.arpa", dns.TypePTR, []string{"forged.example.test."}},
		{"7.0.0.127.in-addr.arpa", dns.TypePTR, nil},
		{v6("2001:db8::5", "ip6.arpa."), dns.TypePTR, []string{"mail.example.test."}},
		{rev("127.0.0.2", "bl.test."), dns.TypeA, []string{"127.0.0.2"}},
		{rev("127.0.0.2", "bl.test."), dns.TypeTXT, []string{`"Listed in bl.test: 127.0.0.2"`}},
		{rev("127.0.0.1", "bl.test."), dns.TypeA, nil},
		{rev("127.0.0.10", "bl.test."), dns.TypeA, []string{"127.0.0.10"}},
		{rev("127.0.0.254", "bl.test."), dns.TypeA, []string{"127.255.255.254"}},
		{v6("::ffff:7f00:2", "bl.test."), dns.TypeA, []string{"127.0.0.2"}},
		{v6("::ffff:7f00:1", "bl.test."), dns.TypeA, nil},
		{rev("127.0.0.5", "wl.test."), dns.TypeA, []string{"127.0.0.2"}},
		{rev("127.0.0.2", "wl.test."), dns.TypeA, []string{"127.0.0.2"}},
		{rev("127.0.0.1", "wl.test."), dns.TypeA, nil},
		{"spammer.test.dbl.test", dns.TypeA, []string{"127.0.1.2"}},
		{"test.dbl.test", dns.TypeA, []string{"127.0.1.2"}},
		{"invalid.dbl.test", dns.TypeA, nil},
	}
	for _, tt := range tests {
		r := ask(t, s, "tcp", tt.name, tt.qtype, 0)
		var got []string
		for _, rr := range r.Answer {
			f := strings.SplitN(rr.String(), "\t", 5)
			got = append(got, f[4])
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %s = %q, want %q", tt.name, dns.TypeToString[tt.qtype], got, tt.want)
		}
		if tt.want == nil && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s: negative answer without SOA: %v", tt.name, r.Ns)
		}
	}
}

// FuzzZoneServer parses arbitrary zone text and answers an arbitrary
// question from it: no panic, and every reply packs within the size the
// client allowed.
func FuzzZoneServer(f *testing.F) {
	f.Add(miniZone, "chain.mini.test.", uint16(dns.TypeA), uint16(0))
	f.Add(miniZone, "q.r.wc.mini.test.", uint16(dns.TypeMX), uint16(1232))
	f.Add("$ORIGIN z.\n@ SOA a. b. 1 2 3 4 5\n* CNAME a.*\n", "x.z.", uint16(dns.TypeANY), uint16(512))
	f.Fuzz(func(t *testing.T, text, qname string, qtype, edns uint16) {
		if strings.Contains(strings.ToUpper(text), "$GENERATE") {
			return // miekg/dns's, and one line can make 65536 records: slow, not interesting
		}
		z, err := parseZone(Zone{Origin: "fuzz.test", Text: text})
		if err != nil {
			z, err = parseZone(Zone{Text: text})
			if err != nil {
				return
			}
		}
		if _, ok := dns.IsDomainName(qname); !ok {
			return
		}
		s := &Server{zones: []*zone{z}, closing: make(chan struct{})}
		req := new(dns.Msg).SetQuestion(dns.Fqdn(qname), qtype)
		if edns > 0 {
			req.SetEdns0(edns, false)
		}
		m := s.respond(req, true)
		b, err := m.Pack()
		if err != nil {
			return // names or rdata that parse but cannot be packed
		}
		if limit := max(int(edns), dns.MinMsgSize); edns > 0 && len(b) > limit || edns == 0 && len(b) > dns.MinMsgSize {
			t.Errorf("reply of %d bytes over UDP, limit %d", len(b), limit)
		}
	})
}
