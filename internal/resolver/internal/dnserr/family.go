package dnserr

import "net"

// Families says which address families a LookupIP network asks for
// ("ip", "ip4", "ip6"), with the error both the client and the fake give
// for any other network.
func Families(network, host string) (v4, v6 bool, err error) {
	switch network {
	case "ip":
		return true, true, nil
	case "ip4":
		return true, false, nil
	case "ip6":
		return false, true, nil
	}
	return false, false, Invalid(host, "unknown network "+network)
}

// IPAddrs converts LookupIP's answer to LookupIPAddr's.
func IPAddrs(ips []net.IP) []net.IPAddr {
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out
}
