package resolver

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// maxNameservers is MAXNS of resolv.conf(5): glibc and Go's resolver use
// only the first three nameserver lines, and so do we.
const maxNameservers = 3

// readResolvConf returns the nameservers of a resolv.conf file as
// "ip:53". Only nameserver lines are read: search, domain and ndots are
// ignored on purpose, since every query name is absolute.
func readResolvConf(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	servers := parseResolvConf(data)
	if len(servers) == 0 {
		// resolv.conf(5) would fall back to a local server; failing here
		// names the problem at startup instead of at the first timeout.
		return nil, fmt.Errorf("%s lists no usable nameserver", path)
	}
	return servers, nil
}

// parseResolvConf extracts up to maxNameservers "nameserver" addresses.
// Lines whose first non-blank character is '#' or ';' are comments
// (resolv.conf(5)); text after the address is ignored, as glibc does.
// Entries that are not IP literals are skipped: a resolver named by a
// host name cannot be found without a resolver.
func parseResolvConf(data []byte) []string {
	var servers []string
	for line := range bytes.Lines(data) {
		if len(servers) == maxNameservers {
			break
		}
		f := strings.Fields(string(line))
		if len(f) < 2 || f[0] != "nameserver" {
			continue // includes comment lines: their first field starts with # or ;
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		servers = append(servers, net.JoinHostPort(ip.String(), "53"))
	}
	return servers
}
