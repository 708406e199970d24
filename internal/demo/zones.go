package demo

import "github.com/mxgate/mxgate/internal/resolver/zoneserver"

// The demo's DNS: a DNS block list with the RFC 5782 test points (so the
// tour's client on 127.0.0.2 is listed and list health passes), reverse
// DNS for the loopback clients, and their forward names. Served by an
// in-process DNS server on loopback; the gateway sends DNS nowhere else.
var demoZones = []zoneserver.Zone{
	{Origin: "bl.demo.test.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
; RFC 5782 section 5: 127.0.0.2 is listed, 127.0.0.1 is not.
2.0.0.127	A	127.0.0.2
2.0.0.127	TXT	"127.0.0.2 is listed in the demo block list"
`},
	{Origin: "0.0.127.in-addr.arpa.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
1	PTR	client.sender.test.
2	PTR	dialup-2.isp.test.
3	PTR	mail.partner.test.
`},
	{Origin: "sender.test.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
client	A	127.0.0.1
`},
	{Origin: "partner.test.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
mail	A	127.0.0.3
`},
}
