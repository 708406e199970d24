// Package zoneserver is an in-process authoritative DNS server for master
// files: the stand-in for the Internet's DNS in tests and in the demo.
//
// It answers as an authoritative server does (RFC 1034 §4.3.2, without
// delegations): AA set; records of the asked type; a CNAME for a name that
// is one, followed by the target's records when the target is in a zone
// served here; NXDOMAIN for a name that does not exist and NODATA
// (NOERROR, empty answer) for one that does, including empty non-terminals
// (RFC 8020), both with the zone's SOA in the authority section, its TTL
// lowered to the SOA MINIMUM (RFC 2308 §3); wildcards synthesized from the
// closest encloser (RFC 4592 §3.3); REFUSED for names outside every zone.
//
// UDP answers are truncated to the client's EDNS0 payload size, or 512
// bytes without EDNS0 (RFC 1035 §4.2.1, RFC 6891 §6.2.3), with TC set, so
// clients must retry over TCP on the same port (RFC 7766). RFC 5782 DNSBL
// zones are ordinary zones here.
//
// Faults can be injected per name: SERVFAIL, silence (the client times
// out) and delay.
package zoneserver

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// maxChain bounds CNAME chasing, so a loop in the zones is a SERVFAIL and
// not a hang.
const maxChain = 8

// Server serves zones over UDP and TCP on one address until Close.
type Server struct {
	zones []*zone // longest origin first, so the most specific zone answers
	udp   *dns.Server
	tcp   *dns.Server
	addr  string

	mu       sync.RWMutex
	servfail map[string]bool
	drop     map[string]bool
	delay    map[string]time.Duration

	queries   atomic.Int64
	closing   chan struct{} // closed by Close: ends injected delays
	closeOnce sync.Once
	closeErr  error
	serving   sync.WaitGroup
}

// Start serves the zones on addr ("127.0.0.1:0" for any free port) over
// UDP and TCP on the same port, until Close. It returns once both are
// accepting queries.
func Start(addr string, zones ...Zone) (*Server, error) {
	s := &Server{
		servfail: make(map[string]bool),
		drop:     make(map[string]bool),
		delay:    make(map[string]time.Duration),
		closing:  make(chan struct{}),
	}
	seen := make(map[string]bool)
	for _, z := range zones {
		pz, err := parseZone(z)
		if err != nil {
			return nil, err
		}
		if seen[pz.origin] {
			return nil, fmt.Errorf("zoneserver: zone %s given twice", pz.origin)
		}
		seen[pz.origin] = true
		s.zones = append(s.zones, pz)
	}
	// Most labels first, so the most specific zone holding a name answers
	// for it ("a.b.test." is inside "b.test." whatever the label lengths).
	slices.SortStableFunc(s.zones, func(a, b *zone) int {
		return dns.CountLabel(b.origin) - dns.CountLabel(a.origin)
	})

	pc, ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	if err := s.activate(); err != nil {
		pc.Close()
		ln.Close()
		return nil, err
	}
	return s, nil
}

// listen binds UDP and TCP to the same port. For port 0 the kernel picks
// the UDP port, which may be taken for TCP: try again a few times.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("zoneserver: %w", err)
	}
	tries := 1
	if port == "0" {
		tries = 10
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("zoneserver: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 == tries {
			return nil, nil, fmt.Errorf("zoneserver: %w", err)
		}
	}
}

// activate starts both servers and waits until each is serving or failed.
func (s *Server) activate() error {
	type event struct {
		srv *dns.Server
		err error
	}
	events := make(chan event, 4)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { events <- event{srv: srv} }
		s.serving.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				events <- event{srv: srv, err: err}
			}
		})
	}
	var started []*dns.Server
	var errs []error
	for range 2 {
		e := <-events
		if e.err != nil {
			errs = append(errs, e.err)
		} else {
			started = append(started, e.srv)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	for _, srv := range started {
		srv.Shutdown()
	}
	s.serving.Wait()
	return fmt.Errorf("zoneserver: %w", errors.Join(errs...))
}

// Addr returns the address served, "ip:port", for UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Close stops serving and waits for the serving goroutines and any
// injected delays to end. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.closeErr = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
		s.serving.Wait()
	})
	return s.closeErr
}

// SetServFail makes queries for name (any type, exact name) answer
// SERVFAIL while on.
func (s *Server) SetServFail(name string, on bool) { s.setFault(s.servfail, name, on) }

// SetDrop makes queries for name go unanswered while on, so clients time
// out.
func (s *Server) SetDrop(name string, on bool) { s.setFault(s.drop, name, on) }

// SetDelay holds answers for name back by d (0 removes the delay): for
// tests of timeouts that must not fire, and of queries in flight.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.delay, canonical(name))
	} else {
		s.delay[canonical(name)] = d
	}
}

func (s *Server) setFault(m map[string]bool, name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		m[canonical(name)] = true
	} else {
		delete(m, canonical(name))
	}
}

// Queries returns how many queries arrived, over UDP and TCP, answered or
// not.
func (s *Server) Queries() int { return int(s.queries.Load()) }

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := s.respond(req, w.RemoteAddr().Network() == "udp")
	if m != nil {
		_ = w.WriteMsg(m) // a client that went away is not our problem
	}
}

// respond builds the answer to req, or returns nil to stay silent.
func (s *Server) respond(req *dns.Msg, udp bool) *dns.Msg {
	m := new(dns.Msg)
	switch {
	case len(req.Question) != 1:
		return m.SetRcode(req, dns.RcodeFormatError)
	case req.Opcode != dns.OpcodeQuery:
		return m.SetRcode(req, dns.RcodeNotImplemented)
	}
	q := req.Question[0]
	name := canonical(q.Name)
	s.mu.RLock()
	drop, servfail, delay := s.drop[name], s.servfail[name], s.delay[name]
	s.mu.RUnlock()
	if drop {
		return nil
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.closing:
			return nil
		}
	}
	m.SetReply(req)
	switch {
	case servfail:
		m.Rcode = dns.RcodeServerFailure
	case q.Qclass != dns.ClassINET || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		m.Rcode = dns.RcodeRefused
	default:
		s.answer(m, name, q.Qtype)
	}
	size := dns.MaxMsgSize
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(max(o.UDPSize(), dns.MinMsgSize), false)
		if udp {
			size = int(max(o.UDPSize(), dns.MinMsgSize))
		}
	} else if udp {
		size = dns.MinMsgSize
	}
	m.Truncate(size) // sets TC when records had to go
	return m
}

// answer fills m from the zones, chasing CNAMEs through every zone served
// here (RFC 1034 §4.3.2 step 3a).
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	for i := range maxChain {
		z := s.zoneFor(name)
		if z == nil {
			if i == 0 {
				m.Rcode = dns.RcodeRefused
			}
			return // a target elsewhere is the resolver's to chase
		}
		if i == 0 {
			m.Authoritative = true
		}
		rrs, res := z.lookup(name, qtype)
		m.Answer = append(m.Answer, rrs...)
		switch res {
		case found:
			return
		case nodata:
			m.Ns = append(m.Ns, z.negativeSOA())
			return
		case nxdomain:
			// RFC 6604 §3: the rcode describes the last name of the chain.
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, z.negativeSOA())
			return
		}
		name = strings.ToLower(rrs[0].(*dns.CNAME).Target)
	}
	m.Answer, m.Ns = nil, nil
	m.Rcode = dns.RcodeServerFailure // a CNAME loop
}

func (s *Server) zoneFor(name string) *zone {
	for _, z := range s.zones {
		if dns.IsSubDomain(z.origin, name) {
			return z
		}
	}
	return nil
}
