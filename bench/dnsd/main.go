// Command dnsd serves a directory of zone files with the project's
// in-process authoritative DNS server (internal/resolver/zoneserver), for
// the benchmark harness (bench/run.sh): one DNS server for the gateway and
// the peers it is compared with.
//
//	dnsd -zones bench/zones -addr 127.0.0.53:53
//	dnsd -zones bench/zones -addr 127.0.0.53:53,127.0.0.1:5300
//
// Every *.zone file of the directory is one zone, its origin the file name
// minus ".zone" (or its $ORIGIN). Names outside the zones are answered
// REFUSED, so nothing is ever forwarded anywhere. Every address must be a
// loopback address. It serves UDP and TCP on each address until SIGTERM or
// SIGINT, and then prints how many queries it answered.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

func main() {
	zonesDir := flag.String("zones", "bench/zones", "directory of *.zone master files")
	addrs := flag.String("addr", "127.0.0.1:5300", "comma-separated loopback ip:port addresses to serve on (UDP and TCP)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "dnsd: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	os.Exit(run(*zonesDir, *addrs))
}

func run(dir, addrList string) int {
	var addrs []string
	for a := range strings.SplitSeq(addrList, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if err := loopback(a); err != nil {
			fmt.Fprintln(os.Stderr, "dnsd:", err)
			return 2
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "dnsd: no -addr given")
		return 2
	}
	zones, err := zoneserver.LoadZoneDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsd:", err)
		return 1
	}
	// Ask for the signals before serving, so a SIGTERM that arrives right
	// after the "serving" line is not lost.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	var servers []*zoneserver.Server
	closeAll := func() error {
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.Close())
		}
		return errors.Join(errs...)
	}
	for _, a := range addrs {
		s, err := zoneserver.Start(a, zones...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dnsd:", err)
			closeAll()
			return 1
		}
		servers = append(servers, s)
		fmt.Printf("dnsd: serving %d zones on %s (udp+tcp)\n", len(zones), s.Addr())
	}
	for _, z := range zones {
		fmt.Printf("dnsd: zone %s\n", z.Origin)
	}

	s := <-sig
	queries := 0
	for _, srv := range servers {
		queries += srv.Queries()
	}
	err = closeAll()
	fmt.Printf("dnsd: %v: stopped after %d queries\n", s, queries)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsd:", err)
		return 1
	}
	return 0
}

// loopback accepts only "ip:port" with a literal loopback IP (127.0.0.0/8
// or ::1): no names, no wildcard address, no other interface.
func loopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("-addr %q: the host must be a loopback IP address, not %q", addr, host)
	}
	if !ip.Unmap().IsLoopback() {
		return fmt.Errorf("-addr %q: %s is not a loopback address (127.0.0.0/8, ::1)", addr, ip)
	}
	if port == "" {
		return fmt.Errorf("-addr %q: no port", addr)
	}
	return nil
}
