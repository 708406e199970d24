// Package all links every check into a program, so the facts each check
// registers in its init function are known wherever rules are validated
// (the configuration loader imports it). It holds no logic.
package all

import (
	_ "github.com/mxgate/mxgate/checks/dkim"     // dkim, dkim.domains
	_ "github.com/mxgate/mxgate/checks/dmarc"    // dmarc, dmarc.policy, dmarc.domain
	_ "github.com/mxgate/mxgate/checks/dnsbl"    // dnsbl.*, rhsbl.*
	_ "github.com/mxgate/mxgate/checks/fcrdns"   // client.ptr, client.fcrdns
	_ "github.com/mxgate/mxgate/checks/greylist" // greylist
	_ "github.com/mxgate/mxgate/checks/helo"     // helo.bare_ip, helo.literal_mismatch, helo.ours, helo.dotless
	_ "github.com/mxgate/mxgate/checks/iplist"   // client.iplists
	_ "github.com/mxgate/mxgate/checks/spf"      // spf, spf.helo, spf.domain
)
