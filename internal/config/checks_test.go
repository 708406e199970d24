package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checksBase is a valid configuration that cases of TestValidateChecks
// extend with their own sections.
const checksBase = validBase + "backend:\n  servers: [\"127.0.0.1:10025\"]\n"

func TestValidateChecks(t *testing.T) {
	tests := []struct {
		name string
		in   string // appended to checksBase
		want []string
	}{
		// listen[].proxy_protocol
		{"proxy ok", "listen:\n  - address: \":25\"\n    proxy_protocol: {trusted: [10.0.0.0/8, 192.0.2.1, \"2001:db8::/32\"], timeout: 3s}\n", nil},
		{"proxy bad cidr", "listen:\n  - address: \":25\"\n    proxy_protocol:\n      trusted: [10.0.0.0/8, 10.0.0/8, 192.0.2.1/24]\n",
			[]string{`t.yaml:8: listen[0].proxy_protocol.trusted[1]: "10.0.0/8" is not an address or CIDR`,
				`t.yaml:8: listen[0].proxy_protocol.trusted[2]: "192.0.2.1/24" has bits set after the prefix length (did you mean 192.0.2.0/24?)`}},
		{"proxy zone", "listen:\n  - address: \":25\"\n    proxy_protocol: {trusted: [\"fe80::1%eth0\"]}\n", []string{"has an IPv6 zone"}},
		{"proxy negative timeout", "listen:\n  - address: \":25\"\n    proxy_protocol: {timeout: -1s}\n",
			[]string{"listen[0].proxy_protocol.timeout: must not be negative, got -1s (0s means the default, 5s)"}},

		// dns
		{"dns ok", "dns: {attempts: 10, cache: {size: 1, min_ttl: 0s, max_ttl: 1s}}\n", nil},
		{"dns attempts", "dns: {attempts: 0}\n", []string{"t.yaml:5: dns.attempts: must be from 1 to 10, got 0"}},
		{"dns attempts high", "dns: {attempts: 11}\n", []string{"dns.attempts: must be from 1 to 10, got 11"}},
		{"dns cache", "dns:\n  cache:\n    size: 0\n    min_ttl: -1s\n    max_ttl: 0s\n",
			[]string{"t.yaml:7: dns.cache.size: must be at least 1, got 0", "t.yaml:8: dns.cache.min_ttl: must not be negative, got -1s",
				"t.yaml:9: dns.cache.max_ttl: must be more than 0, got 0s"}},
		{"dns min over max", "dns:\n  cache:\n    min_ttl: 2h\n",
			[]string{"t.yaml:7: dns.cache.min_ttl: 2h is more than dns.cache.max_ttl (1h)"}},
		{"dns max under default min", "dns:\n  cache:\n    max_ttl: 5s\n",
			[]string{"t.yaml:7: dns.cache.min_ttl: 10s is more than dns.cache.max_ttl (5s)"}},

		// checks.timeout
		{"timeout max", "checks: {timeout: 60s}\n", nil},
		{"timeout zero", "checks: {timeout: 0s}\n", []string{"t.yaml:5: checks.timeout: must be more than 0s and at most 1m, got 0s"}},
		{"timeout long", "checks: {timeout: 61s}\n", []string{"checks.timeout: must be more than 0s and at most 1m, got 61s"}},

		// checks.dnsbl.zones
		{"zones ok", "checks:\n  dnsbl:\n    zones:\n" +
			"      - {zone: zen.spamhaus.org, name: spamhaus-zen, weight: 10, answers: [{match: 127.0.0.2, weight: 8, text: Listed by SBL}, {match: 127.0.0.4/30}]}\n" +
			"      - {zone: list.dnswl.org., weight: -5.5}\n" +
			"      - {zone: abcdefgh1234567890abcdefgh.zen.dq.spamhaus.net, name: dqs, weight: 10}\n", nil},
		{"zone missing", "checks:\n  dnsbl:\n    zones:\n      - weight: 1\n",
			[]string{"t.yaml:8: checks.dnsbl.zones[0].zone: required"}},
		{"zone bad", "checks:\n  dnsbl:\n    zones:\n      - {zone: \"bl..example\", weight: 1}\n      - {zone: 192.0.2.1, weight: 1}\n" +
			"      - {zone: example, weight: 1}\n      - {zone: \"bl_x.example\", weight: 1}\n      - {zone: \"bl.123\", weight: 1}\n      - {zone: \"-bl.example\", weight: 1}\n",
			[]string{"zones[0].zone: is not a valid DNS zone: empty label", "zones[1].zone: is an IP address",
				"zones[2].zone: want a DNS zone of two or more labels", "zones[3].zone: is not a valid DNS zone: '_' is not a letter",
				"zones[4].zone: is not a valid DNS zone: the last label is all digits", "zones[5].zone: is not a valid DNS zone: label 1 starts or ends with a hyphen"}},
		{"zone duplicate", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, name: a, weight: 1}\n      - {zone: BL.example.net., name: b, weight: 1}\n",
			[]string{"t.yaml:9: checks.dnsbl.zones[1].zone: the same zone as checks.dnsbl.zones[0].zone"}},
		{"zone key needs name", "checks:\n  dnsbl:\n    zones:\n      - {zone: abcdefgh1234567890abcdefgh.zen.dq.spamhaus.net, weight: 10}\n",
			[]string{"t.yaml:8: checks.dnsbl.zones[0].name: required: the zone holds an access key"}},
		{"key-like label needs name", "checks:\n  dnsbl:\n    zones:\n      - {zone: k3y0123456789abcdef.bl.example.net, weight: 10}\n",
			[]string{"zones[0].name: required: the zone holds an access key"}},
		{"name holds key", "checks:\n  dnsbl:\n    zones:\n      - {zone: abcdefgh1234567890abcdefgh.zen.dq.spamhaus.net, name: abcdefgh1234567890abcdefgh-zen, weight: 10}\n",
			[]string{"zones[0].name: must not contain the zone's access key"}},
		{"name bad", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, name: \"my list\", weight: 1}\n      - {zone: bl.example.org, name: \"-x\", weight: 1}\n",
			[]string{`zones[0].name: "my list": want lower-case letters`, `zones[1].name: "-x": want`}},
		{"name duplicate across zones and domains", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, name: Shared, weight: 1}\n" +
			"    domains:\n      - {zone: dbl.example.net, name: shared, weight: 1, on: [helo]}\n",
			[]string{`t.yaml:10: checks.dnsbl.domains[0].name: "shared" is also the name of checks.dnsbl.zones[0]; list names must be unique`}},
		{"defaulted name duplicate", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, name: bl.example.org, weight: 1}\n      - {zone: bl.example.org, weight: 1}\n",
			[]string{`t.yaml:9: checks.dnsbl.zones[1].name: "bl.example.org" is also the name of checks.dnsbl.zones[0] (a list without a name is named after its zone)`}},
		{"zone too long for a name", "checks:\n  dnsbl:\n    zones:\n      - {zone: " + strings.Repeat("a", 60) + ".example.net, weight: 1}\n",
			[]string{"zones[0].name: required: the zone is longer than 64 characters"}},
		{"weight zero", "checks:\n  dnsbl:\n    zones:\n      - zone: bl.example.net\n",
			[]string{"t.yaml:8: checks.dnsbl.zones[0].weight: required, and not 0: a list with weight 0 adds nothing to the score"}},
		{"weight zero with some answers weighted", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, weight: 0, answers: [{match: 127.0.0.2, weight: 1}, {match: 127.0.0.3}]}\n",
			[]string{"t.yaml:8: checks.dnsbl.zones[0].weight: required, and not 0"}},
		{"weight zero with every answer weighted", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, answers: [{match: 127.0.0.2, weight: 1}, {match: 127.0.0.3, weight: -1}]}\n", nil},
		{"answers bad", "checks:\n  dnsbl:\n    zones:\n      - zone: bl.example.net\n        weight: 1\n        answers:\n" +
			"          - match: 10.0.0.2\n          - match: 127.255.255.254\n          - match: 127.255.255.0/24\n          - match: \"126.0.0.0/7\"\n" +
			"          - match: \"::1\"\n          - match: 127.0.0.2\n          - match: \"127.0.0.2/32\"\n          - match: x\n          - weight: 2\n",
			[]string{`t.yaml:11: checks.dnsbl.zones[0].answers[0].match: "10.0.0.2" is outside 127.0.0.0/8`,
				`t.yaml:12: checks.dnsbl.zones[0].answers[1].match: "127.255.255.254" is in 127.255.255.0/24, the answers with which lists refuse a query`,
				`answers[2].match: "127.255.255.0/24" is in 127.255.255.0/24`,
				`answers[3].match: "126.0.0.0/7" is outside 127.0.0.0/8`,
				`answers[4].match: "::1" is outside 127.0.0.0/8`,
				`answers[6].match: "127.0.0.2/32" is the same as checks.dnsbl.zones[0].answers[5].match`,
				`answers[7].match: "x" is not an address or CIDR`,
				`t.yaml:19: checks.dnsbl.zones[0].answers[8].match: required`}},
		{"answer covering refusals", "checks:\n  dnsbl:\n    zones:\n      - {zone: bl.example.net, weight: 1, answers: [{match: 127.0.0.0/8}]}\n", nil},
		{"answer text", "checks:\n  dnsbl:\n    zones:\n      - zone: bl.example.net\n        weight: 1\n        answers:\n" +
			"          - {match: 127.0.0.2, text: \"tab\\there\"}\n          - {match: 127.0.0.3, text: \"" + strings.Repeat("x", 201) + "\"}\n" +
			"          - {match: 127.0.0.4, text: \"" + strings.Repeat("x", 200) + "\"}\n          - {match: 127.0.0.5, text: \"Bücher\"}\n",
			[]string{"answers[0].text: only printable ASCII is allowed (it may go into a reply), got '\\t'",
				"answers[1].text: longer than 200 characters", "answers[3].text: only printable ASCII"}},

		// checks.dnsbl.domains
		{"domains ok", "checks:\n  dnsbl:\n    domains:\n      - {zone: dbl.spamhaus.org, name: spamhaus-dbl, weight: 5, on: [helo, mail_from], answers: [{match: 127.0.1.0/24}]}\n" +
			"    zones:\n      - {zone: dbl.spamhaus.org, name: same-zone-other-kind, weight: 1}\n", nil},
		{"domains on", "checks:\n  dnsbl:\n    domains:\n      - {zone: a.example.net, weight: 1}\n      - {zone: b.example.net, weight: 1, on: [helo, rcpt, helo]}\n",
			[]string{"t.yaml:8: checks.dnsbl.domains[0].on: required", `domains[1].on[1]: want "helo" or "mail_from", got "rcpt"`,
				`domains[1].on[2]: "helo" is listed twice`}},
		{"domains duplicate zone", "checks:\n  dnsbl:\n    domains:\n      - {zone: a.example.net, name: a, weight: 1, on: [helo]}\n      - {zone: a.example.net, name: b, weight: 1, on: [mail_from]}\n",
			[]string{"checks.dnsbl.domains[1].zone: the same zone as checks.dnsbl.domains[0].zone"}},

		// checks.dnsbl.health_interval
		{"health zero", "checks:\n  dnsbl: {health_interval: 0s}\n", nil},
		{"health 30s", "checks:\n  dnsbl: {health_interval: 30s}\n", nil},
		{"health short", "checks:\n  dnsbl: {health_interval: 10s}\n",
			[]string{"t.yaml:6: checks.dnsbl.health_interval: must be 0s (probe only at start) or at least 30s, got 10s"}},
		{"health negative", "checks:\n  dnsbl: {health_interval: -1s}\n", []string{"checks.dnsbl.health_interval: must not be negative"}},

		// checks.pregreet and checks.protocol
		{"pregreet ok", "checks:\n  pregreet: {wait: 6s, action: drop, teaser: true}\n  protocol: {non_smtp: ignore, early_pipelining: drop}\n", nil},
		{"pregreet bad", "checks:\n  pregreet:\n    wait: 7s\n    action: reject\n",
			[]string{"t.yaml:7: checks.pregreet.wait: must be from 0s to 6s (postscreen's range), got 7s",
				`t.yaml:8: checks.pregreet.action: want "ignore", "enforce" or "drop", got "reject"`}},
		{"pregreet negative", "checks:\n  pregreet: {wait: -1s}\n", []string{"checks.pregreet.wait: must be from 0s to 6s"}},
		{"teaser without wait", "checks:\n  pregreet:\n    teaser: true\n",
			[]string{"t.yaml:7: checks.pregreet.teaser: true needs checks.pregreet.wait above 0s"}},
		{"protocol bad", "checks:\n  protocol: {non_smtp: enforce, early_pipelining: reject}\n",
			[]string{`checks.protocol.non_smtp: want "drop" or "ignore", got "enforce"`,
				`checks.protocol.early_pipelining: want "ignore", "enforce" or "drop", got "reject"`}},

		// checks.iplists
		{"iplists empty cidrs", "checks:\n  iplists:\n    - {name: partners, cidrs: [192.0.2.0/24, \"2001:db8::1\"]}\n    - {name: deny_2.x, cidrs: []}\n", []string{"checks.iplists[1]: needs cidrs, a file, or both"}},
		{"iplists names", "checks:\n  iplists:\n    - {cidrs: [192.0.2.0/24]}\n    - {name: Partners, cidrs: [192.0.2.0/24]}\n" +
			"    - {name: p, cidrs: [192.0.2.0/24]}\n    - {name: p, cidrs: [192.0.2.0/24]}\n",
			[]string{"t.yaml:7: checks.iplists[0].name: required", `t.yaml:8: checks.iplists[1].name: "Partners": want lower-case letters`,
				`t.yaml:10: checks.iplists[3].name: "p" is also the name of checks.iplists[2]`}},
		{"iplists cidrs", "checks:\n  iplists:\n    - name: p\n      cidrs:\n        - 192.0.2.0/24\n        - 192.0.2.1/24\n        - example.com\n",
			[]string{`t.yaml:10: checks.iplists[0].cidrs[1]: "192.0.2.1/24" has bits set`, `t.yaml:11: checks.iplists[0].cidrs[2]: "example.com" is not an address or CIDR`}},
		{"iplists missing file", "checks:\n  iplists:\n    - {name: p, file: /nonexistent/mxgate/deny.txt}\n",
			[]string{`t.yaml:7: checks.iplists[0].file: "/nonexistent/mxgate/deny.txt": no such file or directory`}},

		// checks.ratelimit
		{"ratelimit ok", "checks:\n  ratelimit:\n    connections: {limit: 30, per: 1s}\n    messages: {limit: 0, per: 0s}\n", nil},
		{"ratelimit bad", "checks:\n  ratelimit:\n    connections: {limit: -1}\n    messages: {limit: 10, per: 0s}\n    recipients: {limit: 10, per: 500ms}\n",
			[]string{"t.yaml:7: checks.ratelimit.connections.limit: must not be negative, got -1 (0 is no limit)",
				"t.yaml:8: checks.ratelimit.messages.per: must be at least 1s when a limit is set, got 0s",
				"t.yaml:9: checks.ratelimit.recipients.per: must be at least 1s when a limit is set, got 500ms"}},
		{"ratelimit negative per", "checks:\n  ratelimit:\n    messages: {per: -1m}\n", []string{"checks.ratelimit.messages.per: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, checksBase+tt.in, tt.want)
		})
	}
}

// TestChecksNormalised checks what the rest of the program relies on:
// prefixes in canonical form, zones and names lower-case, names defaulted,
// the PROXY timeout filled in.
func TestChecksNormalised(t *testing.T) {
	in := checksBase + `listen:
  - address: ":25"
    proxy_protocol: {trusted: [192.0.2.1, "::ffff:198.51.100.0/120", "2001:DB8::/32"]}
  - address: ":2525"
  - address: ":2526"
    proxy_protocol: {trusted: [10.0.0.0/8], timeout: 2s}
checks:
  dnsbl:
    zones:
      - {zone: ZEN.Spamhaus.ORG., weight: 10, answers: [{match: 127.0.0.2}, {match: "::ffff:127.0.0.0/120"}]}
      - {zone: abcdefgh1234567890abcdefgh.zen.dq.spamhaus.net, name: Spamhaus-DQS, weight: 10}
    domains:
      - {zone: dbl.example.net., weight: 5, on: [mail_from]}
  iplists:
    - {name: partners, cidrs: [192.0.2.7, "2001:db8::1", 198.51.100.0/24]}
`
	cfg, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Listen[0].ProxyProtocol, (ProxyProtocol{Trusted: []string{"192.0.2.1/32", "198.51.100.0/24", "2001:db8::/32"}, Timeout: 5 * time.Second}); !reflect.DeepEqual(got, want) {
		t.Errorf("listen[0].proxy_protocol = %+v, want %+v", got, want)
	}
	if got := cfg.Listen[1].ProxyProtocol; !reflect.DeepEqual(got, ProxyProtocol{}) {
		t.Errorf("listen[1].proxy_protocol = %+v, want it off with no timeout", got)
	}
	if got := cfg.Listen[2].ProxyProtocol.Timeout; got != 2*time.Second {
		t.Errorf("listen[2].proxy_protocol.timeout = %s, want 2s as given", got)
	}
	z := cfg.Checks.DNSBL.Zones
	if z[0].Zone != "zen.spamhaus.org" || z[0].Name != "zen.spamhaus.org" {
		t.Errorf("zones[0] = %q named %q, want the lower-case zone without its dot, named after it", z[0].Zone, z[0].Name)
	}
	if got := []string{z[0].Answers[0].Match, z[0].Answers[1].Match}; !reflect.DeepEqual(got, []string{"127.0.0.2/32", "127.0.0.0/24"}) {
		t.Errorf("answers = %q, want prefixes", got)
	}
	if z[1].Name != "spamhaus-dqs" {
		t.Errorf("zones[1].name = %q, want it lower-cased", z[1].Name)
	}
	if d := cfg.Checks.DNSBL.Domains[0]; d.Zone != "dbl.example.net" || d.Name != "dbl.example.net" {
		t.Errorf("domains[0] = %q named %q", d.Zone, d.Name)
	}
	if got, want := cfg.Checks.IPLists[0].CIDRs, []string{"192.0.2.7/32", "2001:db8::1/128", "198.51.100.0/24"}; !reflect.DeepEqual(got, want) {
		t.Errorf("iplists[0].cidrs = %q, want %q", got, want)
	}
}

// TestIPListFile covers checks.iplists[].file: read relative to the
// configuration file, comments and blank lines skipped, entries appended
// to cidrs, bad lines reported with the list file's name and line.
func TestIPListFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("deny.txt", "# spammers\n\n203.0.113.0/24   # a whole network\n  198.51.100.7\r\n2001:db8:bad::/48\n")
	cfgFile := write("c.yaml", checksBase+"checks:\n  iplists:\n    - {name: deny, cidrs: [192.0.2.1], file: deny.txt}\n")
	cfg, err := Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Checks.IPLists[0]
	if want := []string{"192.0.2.1/32", "203.0.113.0/24", "198.51.100.7/32", "2001:db8:bad::/48"}; !reflect.DeepEqual(l.CIDRs, want) {
		t.Errorf("cidrs = %q, want %q", l.CIDRs, want)
	}
	if l.File != "deny.txt" {
		t.Errorf("file = %q, want it as written", l.File)
	}

	t.Run("only a file", func(t *testing.T) {
		write("empty.txt", "# nothing yet\n")
		cfg, err := Load(write("e.yaml", checksBase+"checks:\n  iplists:\n    - {name: deny, file: empty.txt}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(cfg.Checks.IPLists[0].CIDRs); n != 0 {
			t.Errorf("%d cidrs from an empty file", n)
		}
	})

	t.Run("bad lines", func(t *testing.T) {
		bad := write("bad.txt", "10.0.0.0/8\n# ok\n10.0.0/8\n192.0.2.1/24\n")
		_, err := Load(write("b.yaml", checksBase+"checks:\n  iplists:\n    - {name: ok, cidrs: [192.0.2.0/24]}\n    - {name: deny, file: bad.txt}\n"))
		want := bad + `:3: checks.iplists[1].file: "10.0.0/8" is not an address or CIDR (want e.g. 192.0.2.1, 192.0.2.0/24 or 2001:db8::/32)` + "\n" +
			bad + `:4: checks.iplists[1].file: "192.0.2.1/24" has bits set after the prefix length (did you mean 192.0.2.0/24?)`
		if err == nil || err.Error() != want {
			t.Errorf("got\n%v\nwant\n%s", err, want)
		}
	})

	t.Run("many bad lines", func(t *testing.T) {
		write("many.txt", strings.Repeat("bad\n", 25))
		_, err := Load(write("m.yaml", checksBase+"checks:\n  iplists:\n    - {name: deny, file: many.txt}\n"))
		if err == nil {
			t.Fatal("no error")
		}
		es := err.(Errors)
		if len(es) != maxListFileErrors+1 || !strings.HasSuffix(es[len(es)-1].Error(), "many.txt:11: checks.iplists[0].file: 15 more bad lines from here on are not shown") {
			t.Errorf("got %d errors:\n%v", len(es), err)
		}
	})

	t.Run("missing and not a file", func(t *testing.T) {
		_, err := Load(write("n.yaml", checksBase+"checks:\n  iplists:\n    - {name: a, file: nope.txt}\n    - {name: b, file: .}\n"))
		cfgPath := filepath.Join(dir, "n.yaml")
		want := cfgPath + `:7: checks.iplists[0].file: "` + filepath.Join(dir, "nope.txt") + `": no such file or directory` + "\n" +
			cfgPath + `:8: checks.iplists[1].file: "` + dir + `" is not a regular file`
		if err == nil || err.Error() != want {
			t.Errorf("got\n%v\nwant\n%s", err, want)
		}
	})

	t.Run("absolute path", func(t *testing.T) {
		abs := write("abs.txt", "192.0.2.9\n")
		cfg, err := Parse("elsewhere/c.yaml", []byte(checksBase+"checks:\n  iplists:\n    - {name: a, file: "+abs+"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Checks.IPLists[0].CIDRs; !reflect.DeepEqual(got, []string{"192.0.2.9/32"}) {
			t.Errorf("cidrs = %q", got)
		}
	})
}

func TestParsePrefix(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{in: "192.0.2.1", want: "192.0.2.1/32"},
		{in: "192.0.2.0/24", want: "192.0.2.0/24"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "2001:DB8::1", want: "2001:db8::1/128"},
		{in: "2001:db8:0::/32", want: "2001:db8::/32"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "::ffff:192.0.2.0/120", want: "192.0.2.0/24"},
		{in: "::/0", want: "::/0"},
		{in: "192.0.2.1/24", wantErr: "has bits set after the prefix length (did you mean 192.0.2.0/24?)"},
		{in: "192.0.2.0/33", wantErr: "is not an address or CIDR"},
		{in: "10.0.0/8", wantErr: "is not an address or CIDR"},
		{in: "fe80::1%eth0", wantErr: "has an IPv6 zone"},
		{in: "", wantErr: "is not an address or CIDR"},
		{in: " 192.0.2.1", wantErr: "is not an address or CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := parsePrefix(tt.in)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, %v; want error containing %q", p, err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case p.String() != tt.want:
				t.Errorf("got %s, want %s", p, tt.want)
			}
		})
	}
}

func TestNormalizeZone(t *testing.T) {
	key := "abcdefgh1234567890abcdefgh"
	tests := []struct{ in, want, wantErr string }{
		{in: "zen.spamhaus.org", want: "zen.spamhaus.org"},
		{in: "ZEN.Spamhaus.org.", want: "zen.spamhaus.org"},
		{in: key + ".zen.dq.spamhaus.net", want: key + ".zen.dq.spamhaus.net"},
		{in: "b.barracudacentral.org", want: "b.barracudacentral.org"},
		{in: "singlelabel", wantErr: "two or more labels"},
		{in: ".zen.spamhaus.org", wantErr: "empty label"},
		{in: "zen..org", wantErr: "empty label"},
		{in: "10.0.0.1", wantErr: "is an IP address"},
		{in: "bl.10", wantErr: "the last label is all digits"},
		{in: "bl_x.example", wantErr: "'_' is not a letter"},
		{in: "bl-.example", wantErr: "label 1 starts or ends with a hyphen"},
		{in: strings.Repeat("a", 64) + ".example", wantErr: "label 1 is longer than 63 characters"},
		{in: strings.Repeat("a.", 127) + "com", wantErr: "longer than 253 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeZone(tt.in)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), strings.TrimSuffix(tt.in, ".")) {
					t.Errorf("error %q repeats the zone, which may hold a key", err)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case got != tt.want:
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestZoneKey(t *testing.T) {
	key := "abcdefgh1234567890abcdefgh"
	for zone, want := range map[string]string{
		"zen.spamhaus.org":                   "",
		"list.dnswl.org":                     "",
		"b.barracudacentral.org":             "",
		"bl.spamcop.net":                     "",
		"ix.dnsbl.manitu.net":                "",
		"dnsbl-1.uceprotect.net":             "",
		key + ".zen.dq.spamhaus.net":         key,
		"short.dbl.dq.spamhaus.net":          "short",
		key + ".combined.mail.abusix.zone":   key,
		"k3y0123456789abcdef.bl.example.net": "k3y0123456789abcdef",
		"abcdefghijklmnopqrstu.example.net":  "", // letters only: a name, not a key
	} {
		if got := zoneKey(zone); got != want {
			t.Errorf("zoneKey(%q) = %q, want %q", zone, got, want)
		}
	}
}
