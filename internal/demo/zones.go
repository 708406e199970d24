package demo

import (
	"strings"

	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

// The demo's DNS: a DNS block list with the RFC 5782 test points (so the
// tour's client on 127.0.0.2 is listed and list health passes), reverse
// DNS for the loopback clients, and their forward names. Served by an
// in-process DNS server on loopback; the gateway sends DNS nowhere else.
//
// sender.test publishes SPF for loopback, a DKIM key (made fresh at every
// start: {{dkim}}) and DMARC p=reject; bank.test publishes SPF that no
// loopback client passes and DMARC p=reject, so mail claiming to be from it
// is refused with 5.7.26.
func demoZones(dkimKey string) []zoneserver.Zone {
	zs := append([]zoneserver.Zone(nil), baseZones...)
	for i, z := range zs {
		zs[i].Text = strings.ReplaceAll(z.Text, "{{dkim}}", dkimKey)
	}
	return zs
}

var baseZones = []zoneserver.Zone{
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
@	TXT	"v=spf1 ip4:127.0.0.0/8 -all"
_dmarc	TXT	"v=DMARC1; p=reject; adkim=r; aspf=r"
demo._domainkey	TXT	"v=DKIM1; k=ed25519; p={{dkim}}"
client	A	127.0.0.1
`},
	{Origin: "newsletter.test.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
@	TXT	"v=spf1 ip4:127.0.0.0/8 -all"
`},
	{Origin: "bank.test.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
@	TXT	"v=spf1 ip4:192.0.2.0/24 -all"
_dmarc	TXT	"v=DMARC1; p=reject"
`},
	{Origin: "partner.test.", Text: `$TTL 300
@	SOA ns.demo.test. hostmaster.demo.test. 1 3600 600 86400 60
@	NS ns.demo.test.
mail	A	127.0.0.3
`},
}
