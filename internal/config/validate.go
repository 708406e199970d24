package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mxgate/mxgate/internal/yamldiag"
	"golang.org/x/net/idna"
)

// validator checks a decoded Config. It shares the walker's error list and
// line map so its problems come out with the decoding ones, sorted by line
// and pointing at the key that needs changing.
type validator struct{ *walker }

// fail records a problem with the value at path, on the line of its key
// or, for a key left out, of the nearest enclosing key in the file.
func (v *validator) fail(path, format string, args ...any) {
	line := 0
	for p := path; p != "" && line == 0; p = parentPath(p) {
		line = v.lines[p]
	}
	v.failAt(line, path, format, args...)
}

// parentPath returns the enclosing path: "a.b[1].c" -> "a.b[1]" -> "a.b"
// -> "a" -> "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// failAt is fail with the line chosen by the caller, for problems that
// involve two keys where only one of them may be in the file.
func (v *validator) failAt(line int, path, format string, args ...any) {
	if v.bad[path] {
		return // already reported as undecodable; its value is a leftover default
	}
	v.errorf(line, path, format, args...)
}

// lineOf returns the line of the first of paths that is in the file.
func (v *validator) lineOf(paths ...string) int {
	for _, p := range paths {
		if l := v.lines[p]; l > 0 {
			return l
		}
	}
	return 0
}

// config validates c and fills in what defaults to other keys: an empty
// backend.helo becomes hostname, and domains are normalised in place to
// lower-case ASCII (A-labels) without a trailing dot, the form the SMTP
// server compares recipient domains against. The checks' values are
// normalised in place too (see checks), so the rest of the program reads
// one canonical form.
func (v *validator) config(c *Config) {
	switch {
	case c.Hostname == "":
		v.fail("hostname", "required (the name of this gateway, e.g. mx.example.com)")
	default:
		if err := checkHostname(c.Hostname); err != nil {
			v.fail("hostname", "%v", err)
		}
	}
	v.listen(c.Listen)
	v.domains(c.Domains)
	v.backend(&c.Backend)
	if c.Backend.Helo == "" {
		c.Backend.Helo = c.Hostname
	}
	v.limits(&c.Limits)
	v.message(&c.Message)
	v.dns(&c.DNS)
	v.checks(&c.Checks)
	v.policy(&c.Policy)
	v.greylist(&c.Checks.Greylist)
	v.oneOf("backend.client_identity", c.Backend.ClientIdentity, "auto", "off")
	v.oneOf("backend.chunking", c.Backend.Chunking, "auto", "off")
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		v.fail("tls", "give both cert and key, or neither")
	}
	for _, f := range []struct{ path, file string }{{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}} {
		if f.file != "" {
			if _, err := os.Stat(f.file); err != nil {
				v.fail(f.path, "%v", err)
			}
		}
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			v.fail("admin.listen", "want host:port like \"127.0.0.1:9025\", got %q", c.Admin.Listen)
		}
	}
	if c.DataDir == "" {
		v.fail("data_dir", "required (the directory for the gateway's own files)")
	}
	if c.VerdictLog.Path == "" {
		v.fail("verdict_log.path", `required (a file, or "-" for standard output)`)
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.positive("shutdown_grace", c.ShutdownGrace)
}

func (v *validator) policy(p *Policy) {
	v.oneOf("policy.mode", p.Mode, "enforce", "shadow")
	t := p.Thresholds
	if t.Tag.Set && t.Reject.Set && t.Tag.Value >= t.Reject.Value {
		v.fail("policy.thresholds.tag", "%g is not below the reject threshold %g: nothing would ever be tagged", t.Tag.Value, t.Reject.Value)
	}
	if len(p.SubjectTag) > 64 {
		v.fail("policy.subject_tag", "longer than 64 characters")
	}
	for _, c := range p.SubjectTag {
		if c < ' ' || c > '~' {
			v.fail("policy.subject_tag", "only printable ASCII is allowed (it goes into a header)")
			break
		}
	}
}

func (v *validator) listen(ls []Listener) {
	if len(ls) == 0 {
		v.fail("listen", `at least one address is required, e.g. address: ":25"`)
		return
	}
	seen := map[string]string{}
	for i, l := range ls {
		v.proxyProtocol(fmt.Sprintf("listen[%d].proxy_protocol", i), &ls[i].ProxyProtocol)
		path := fmt.Sprintf("listen[%d].address", i)
		if l.Address == "" {
			v.fail(path, `required, e.g. ":25"`)
			continue
		}
		_, canon, err := hostPort(l.Address, "0.0.0.0:25")
		if err != nil {
			v.fail(path, "%v", err)
			continue
		}
		if first, dup := seen[canon]; dup {
			v.fail(path, "%q is listed twice (also %s)", l.Address, first)
			continue
		}
		seen[canon] = path
	}
}

func (v *validator) domains(ds []string) {
	if len(ds) == 0 {
		v.fail("domains", "at least one domain is required (the gateway accepts mail only for these)")
		return
	}
	seen := map[string]string{}
	for i, d := range ds {
		path := fmt.Sprintf("domains[%d]", i)
		norm, err := normalizeDomain(d)
		if err != nil {
			v.fail(path, "%v", err)
			continue
		}
		ds[i] = norm
		if first, dup := seen[norm]; dup {
			v.fail(path, "%q is a duplicate of %s (both are %q)", d, first, norm)
			continue
		}
		seen[norm] = path
	}
}

func (v *validator) backend(b *Backend) {
	if len(b.Servers) == 0 {
		v.fail("backend.servers", `at least one server is required, e.g. "127.0.0.1:10025"`)
	}
	seen := map[string]string{}
	for i, s := range b.Servers {
		path := fmt.Sprintf("backend.servers[%d]", i)
		_, canon, err := hostPort(s, "127.0.0.1:10025")
		if err != nil {
			v.fail(path, "%v", err)
			continue
		}
		if first, dup := seen[canon]; dup {
			v.fail(path, "%q is listed twice (also %s)", s, first)
			continue
		}
		seen[canon] = path
	}
	if b.Helo != "" {
		if err := checkHostname(b.Helo); err != nil {
			v.fail("backend.helo", "%v", err)
		}
	}
	v.backendTLS(&b.TLS)
	v.positive("backend.timeouts.connect", b.Timeouts.Connect)
	v.positive("backend.timeouts.command", b.Timeouts.Command)
	v.positive("backend.timeouts.data", b.Timeouts.Data)
	v.positive("backend.timeouts.final", b.Timeouts.Final)
	v.atLeast("backend.pool.max_idle", b.Pool.MaxIdle, 0)
	v.atLeast("backend.pool.max_open", b.Pool.MaxOpen, 1)
	v.positive("backend.pool.idle_timeout", b.Pool.IdleTimeout)
	v.atLeast("backend.pool.max_messages", b.Pool.MaxMessages, 1)
	if b.RetryDown < 0 {
		v.fail("backend.retry_down", "must not be negative, got %s", b.RetryDown)
	}
}

func (v *validator) backendTLS(t *BackendTLS) {
	if v.oneOf("backend.tls.mode", t.Mode, "none", "opportunistic", "required") && t.Mode == "none" && t.Verify {
		v.failAt(v.lineOf("backend.tls.verify", "backend.tls.mode"), "backend.tls.verify",
			`true contradicts mode "none", which never starts TLS; set mode to "opportunistic" or "required", or remove verify`)
	}
	if t.CAFile != "" {
		if err := checkCAFile(t.CAFile); err != nil {
			v.fail("backend.tls.ca_file", "%v", err)
		}
	}
	if t.ServerName != "" {
		if _, err := netip.ParseAddr(t.ServerName); err != nil {
			if err := checkHostname(t.ServerName); err != nil {
				v.fail("backend.tls.server_name", "%v", err)
			}
		}
	}
}

// checkCAFile reads the bundle now so that a typo in the path fails the
// load (and a SIGHUP keeps the old configuration) instead of failing every
// relay later. Only regular files are read: a device or FIFO would block.
func checkCAFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return unwrapPathErr(err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return unwrapPathErr(err)
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, maxCAFileSize))
	if err != nil {
		return unwrapPathErr(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%q holds no PEM certificates", path)
	}
	return nil
}

// unwrapPathErr keeps "open x: permission denied" but drops the operation
// name that os adds, which means nothing to an operator.
func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%q: %w", pe.Path, pe.Err)
	}
	return err
}

func (v *validator) limits(l *Limits) {
	if l.MaxMessageSize < 1<<10 {
		v.fail("limits.max_message_size", "must be at least 1KiB, got %d bytes", l.MaxMessageSize)
	}
	v.atLeast("limits.max_recipients", l.MaxRecipients, 1)
	if l.MaxLineLength < 1000 || l.MaxLineLength > 1<<20 {
		v.fail("limits.max_line_length", "must be from 1000 (the RFC 5321 minimum) to 1048576, got %d", l.MaxLineLength)
	}
	if l.MaxReceived < 1 || l.MaxReceived > 1000 {
		v.fail("limits.max_received", "must be from 1 to 1000, got %d", l.MaxReceived)
	}
	v.positive("limits.command_timeout", l.CommandTimeout)
	v.positive("limits.data_timeout", l.DataTimeout)
	v.positive("limits.session_timeout", l.SessionTimeout)
	v.atLeast("limits.max_connections", l.MaxConnections, 1)
	if v.atLeast("limits.max_connections_per_ip", l.MaxConnectionsPerIP, 1) &&
		l.MaxConnections >= 1 && l.MaxConnectionsPerIP > l.MaxConnections && !v.bad["limits.max_connections"] {
		v.failAt(v.lineOf("limits.max_connections_per_ip", "limits.max_connections"), "limits.max_connections_per_ip",
			"%d is more than limits.max_connections (%d)", l.MaxConnectionsPerIP, l.MaxConnections)
	}
}

func (v *validator) message(m *Message) {
	if m.MemoryBuffer < 0 {
		v.fail("message.memory_buffer", "must not be negative, got %d", m.MemoryBuffer)
	}
	if m.TempDir != "" {
		fi, err := os.Stat(m.TempDir)
		switch {
		case err != nil:
			v.fail("message.temp_dir", "%v", unwrapPathErr(err))
		case !fi.IsDir():
			v.fail("message.temp_dir", "%q is not a directory", m.TempDir)
		}
	}
	v.oneOf("message.bare_newline", m.BareNewline, "reject", "normalize")
	v.oneOf("message.nul", m.NUL, "reject", "strip")
}

func (v *validator) dns(d *DNS) {
	for i, s := range d.Servers {
		path := fmt.Sprintf("dns.servers[%d]", i)
		host, _, err := hostPort(s, "127.0.0.1:53")
		if err != nil {
			v.fail(path, "%v", err)
			continue
		}
		if _, err := netip.ParseAddr(host); err != nil {
			v.fail(path, `want an IP address and port like "127.0.0.1:53", got %q (a resolver cannot be looked up by name)`, s)
		}
	}
	v.positive("dns.timeout", d.Timeout)
	if d.Attempts < 1 || d.Attempts > 10 {
		v.fail("dns.attempts", "must be from 1 to 10, got %d", d.Attempts)
	}
	v.atLeast("dns.cache.size", d.Cache.Size, 1)
	minOK := d.Cache.MinTTL >= 0
	if !minOK {
		v.fail("dns.cache.min_ttl", "must not be negative, got %s", d.Cache.MinTTL)
	}
	v.positive("dns.cache.max_ttl", d.Cache.MaxTTL)
	if minOK && d.Cache.MaxTTL > 0 && d.Cache.MinTTL > d.Cache.MaxTTL && !v.bad["dns.cache.max_ttl"] {
		v.failAt(v.lineOf("dns.cache.min_ttl", "dns.cache.max_ttl"), "dns.cache.min_ttl",
			"%s is more than dns.cache.max_ttl (%s)", fmtDur(d.Cache.MinTTL), fmtDur(d.Cache.MaxTTL))
	}
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.fail(path, "must be more than 0, got %s", d)
	}
}

// atLeast reports whether n >= lo, recording a problem if not.
func (v *validator) atLeast(path string, n, lo int) bool {
	if n < lo {
		v.fail(path, "must be at least %d, got %d", lo, n)
		return false
	}
	return true
}

// oneOf reports whether s is one of allowed, recording a problem if not.
// Matching is exact: the code compares these strings as written.
func (v *validator) oneOf(path, s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	last := len(quoted) - 1
	v.fail(path, "want %s or %s, got %q", strings.Join(quoted[:last], ", "), quoted[last], s)
	return false
}

// hostPort checks a "host:port" address with a numeric port. The host may
// be empty, an IP address or a host name. canon identifies the address for
// duplicate detection: "[::1]:25" and "[0:0::1]:025" are the same. example
// is shown in the message when s is not host:port at all.
func hostPort(s, example string) (host, canon string, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return "", "", fmt.Errorf(`want host:port, got %q (write an IPv6 address in brackets: "[::1]:25")`, s)
		}
		return "", "", fmt.Errorf("want host:port like %q, got %q", example, s)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", "", fmt.Errorf("port %q in %q is not a number from 1 to 65535", p, s)
	}
	switch a, aerr := netip.ParseAddr(host); {
	case host == "":
		canon = ":" + strconv.FormatUint(port, 10)
	case aerr == nil:
		canon = netip.AddrPortFrom(a, uint16(port)).String()
	default:
		if err := checkHostname(host); err != nil {
			return "", "", fmt.Errorf("host in %q: %w", s, err)
		}
		canon = strings.ToLower(host) + ":" + strconv.FormatUint(port, 10)
	}
	return host, canon, nil
}

// checkHostname checks the syntax of an ASCII host name (RFC 1123 §2.1):
// dot-separated labels of letters, digits and hyphens, no hyphen at either
// end of a label, labels up to 63 and the name up to 253 characters. The
// last label may not be all digits, so "10.0.0" is not mistaken for a name.
func checkHostname(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return fmt.Errorf("%q is an IP address; want a domain name", s)
	}
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", yamldiag.Truncate(s))
	}
	if strings.HasSuffix(s, ".") {
		return fmt.Errorf("%q: leave out the trailing dot", s)
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return fmt.Errorf("%q is not a valid domain name: empty label", s)
		case len(l) > 63:
			return fmt.Errorf("%q is not a valid domain name: label longer than 63 characters", yamldiag.Truncate(s))
		case l[0] == '-' || l[len(l)-1] == '-':
			return fmt.Errorf("%q is not a valid domain name: label %q starts or ends with a hyphen", s, l)
		}
		for _, r := range l {
			if !isLDH(r) {
				return fmt.Errorf("%q is not a valid domain name: %q is not a letter, digit, hyphen or dot", s, r)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("%q is not a valid domain name: the last label is all digits", s)
	}
	return nil
}

func isLDH(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-'
}

// normalizeDomain returns d as the lower-case ASCII name without a
// trailing dot, converting internationalised labels to A-labels, or an
// error saying why d is not a mail domain.
func normalizeDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		return "", fmt.Errorf("%q is an address literal; want a domain name", d)
	}
	name := strings.TrimSuffix(d, ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("%q is an IP address; want a domain name", d)
	}
	if strings.HasPrefix(name, "*.") {
		return "", fmt.Errorf("%q: wildcards are not supported; list each domain", d)
	}
	ascii, err := toASCII(name)
	if err != nil {
		return "", fmt.Errorf("%q: %w", yamldiag.Truncate(d), err)
	}
	if err := checkHostname(ascii); err != nil {
		return "", err
	}
	return ascii, nil
}

// toASCII converts a domain to its lower-case A-label form with UTS #46
// lookup processing, the mapping resolvers and the address parser apply
// (internal/address), so "Bücher.TEST" and "xn--bcher-kva.test" are the
// same domain. ASCII names
// are only lower-cased here; checkHostname gives them clearer messages.
func toASCII(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", errors.New("not valid UTF-8")
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		ascii = ascii && name[i] < utf8.RuneSelf
	}
	if ascii {
		return strings.ToLower(name), nil
	}
	a, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return "", errors.New(strings.TrimPrefix(err.Error(), "idna: "))
	}
	return strings.ToLower(a), nil
}

// defaultProxyTimeout is what a proxy_protocol.timeout of 0 means once
// trusted is set. It is filled in here because a listen list in the file
// replaces the default list, so Default() cannot give list entries a value.
const defaultProxyTimeout = 5 * time.Second

// proxyProtocol checks one listener's PROXY protocol settings, rewrites
// each trusted entry as a prefix ("192.0.2.1" becomes "192.0.2.1/32") and
// fills in the default timeout when PROXY protocol is on.
func (v *validator) proxyProtocol(path string, p *ProxyProtocol) {
	for j, s := range p.Trusted {
		pfx, err := parsePrefix(s)
		if err != nil {
			v.fail(fmt.Sprintf("%s.trusted[%d]", path, j), "%v", err)
			continue
		}
		p.Trusted[j] = pfx.String()
	}
	switch {
	case p.Timeout < 0:
		v.fail(path+".timeout", "must not be negative, got %s (0s means the default, %s)", fmtDur(p.Timeout), fmtDur(defaultProxyTimeout))
	case p.Timeout == 0 && len(p.Trusted) > 0:
		p.Timeout = defaultProxyTimeout
	}
}

// maxChecksTimeout bounds checks.timeout: a client waits that long for a
// reply, and SMTP clients wait at most 5 minutes for the greeting.
const maxChecksTimeout = time.Minute

// checks validates the checks section and normalises it in place:
//
//   - every CIDR list (listen[].proxy_protocol.trusted, checks.iplists[].cidrs,
//     DNSBL answers[].match) holds canonical prefixes, a bare address as a
//     single-host prefix, IPv4-mapped IPv6 as IPv4;
//   - DNSBL zones are lower-case without a trailing dot, names lower-case,
//     and an empty name is the zone;
//   - checks.iplists[].file is read and its entries appended to cidrs.
func (v *validator) checks(c *Checks) {
	if c.DKIM.MaxSignatures < 1 || c.DKIM.MaxSignatures > 50 {
		v.fail("checks.dkim.max_signatures", "must be from 1 to 50, got %d", c.DKIM.MaxSignatures)
	}
	if c.Timeout <= 0 || c.Timeout > maxChecksTimeout {
		v.fail("checks.timeout", "must be more than 0s and at most %s, got %s", fmtDur(maxChecksTimeout), fmtDur(c.Timeout))
	}
	v.dnsbl(&c.DNSBL)
	v.pregreet(&c.Pregreet)
	v.oneOf("checks.protocol.non_smtp", c.Protocol.NonSMTP, "drop", "ignore")
	v.oneOf("checks.protocol.early_pipelining", c.Protocol.EarlyPipelining, "ignore", "enforce", "drop")
	v.iplists(c.IPLists)
	v.rate("checks.ratelimit.connections", c.RateLimit.Connections)
	v.rate("checks.ratelimit.messages", c.RateLimit.Messages)
	v.rate("checks.ratelimit.recipients", c.RateLimit.Recipients)
}

// fmtDur writes a duration as the docs and the example do: "2h", "1m",
// "90s" rather than "2h0m0s", "1m0s", "1m30s".
func fmtDur(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		unit string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d != 0 && d%u.d == 0 {
			return fmt.Sprintf("%d%s", d/u.d, u.unit)
		}
	}
	return d.String()
}

// minHealthInterval is the shortest interval between DNSBL health probes:
// probing more often only loads the lists.
const minHealthInterval = 30 * time.Second

func (v *validator) dnsbl(d *DNSBL) {
	names := map[string]string{} // list name -> path of the list that has it
	zones := map[string]string{}
	for i := range d.Zones {
		z := &d.Zones[i]
		v.dnsList(fmt.Sprintf("checks.dnsbl.zones[%d]", i), &z.Zone, &z.Name, z.Weight, z.Answers, zones, names)
	}
	zones = map[string]string{} // an IP list and a domain list may share a zone
	for i := range d.Domains {
		z := &d.Domains[i]
		path := fmt.Sprintf("checks.dnsbl.domains[%d]", i)
		v.dnsList(path, &z.Zone, &z.Name, z.Weight, z.Answers, zones, names)
		if len(z.On) == 0 {
			v.fail(path+".on", `required: which names to look up, "helo", "mail_from" or both`)
		}
		seen := map[string]bool{}
		for j, on := range z.On {
			p := fmt.Sprintf("%s.on[%d]", path, j)
			if !v.oneOf(p, on, "helo", "mail_from") {
				continue
			}
			if seen[on] {
				v.fail(p, "%q is listed twice", on)
			}
			seen[on] = true
		}
	}
	switch h := d.HealthInterval; {
	case h < 0:
		v.fail("checks.dnsbl.health_interval", "must not be negative, got %s (0s probes only at start)", fmtDur(h))
	case h > 0 && h < minHealthInterval:
		v.fail("checks.dnsbl.health_interval", "must be 0s (probe only at start) or at least %s, got %s: probing more often only loads the lists", fmtDur(minHealthInterval), fmtDur(h))
	}
}

// listNameRE is what a list name may be: it is a metric label and may
// appear in replies.
var listNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

const listNameRule = "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters (it is a metric label and may appear in replies)"

// loopbackNet holds every DNS list answer (RFC 5782 §2.1); refusalNet the
// answers with which lists refuse a query instead of answering it
// (Spamhaus: 127.255.255.252 typo in the zone, .254 query through a public
// resolver, .255 too many queries).
var (
	loopbackNet = netip.MustParsePrefix("127.0.0.0/8")
	refusalNet  = netip.MustParsePrefix("127.255.255.0/24")
)

// maxReplyText bounds a DNS list answer's text, which may go into a reply.
const maxReplyText = 200

// dnsList checks what IP lists (zones) and domain lists (domains) share.
// zones and names map what was seen so far to the path that has it. Zone
// problems are reported without the zone, which may hold an access key.
func (v *validator) dnsList(path string, zone, name *string, weight float64, answers []DNSBLAnswer, zones, names map[string]string) {
	zoneOK := false
	switch {
	case *zone == "":
		v.fail(path+".zone", "required: the list's DNS zone, e.g. zen.spamhaus.org")
	default:
		z, err := normalizeZone(*zone)
		if err != nil {
			v.fail(path+".zone", "%v", err)
			break
		}
		*zone = z
		if first, dup := zones[z]; dup {
			v.fail(path+".zone", "the same zone as %s.zone", first)
			break
		}
		zones[z] = path
		zoneOK = true
	}

	key := ""
	if zoneOK {
		key = zoneKey(*zone)
	}
	nameOK, defaulted := false, false
	switch n := strings.ToLower(*name); {
	case n == "" && !zoneOK:
		// Nothing to default to; the zone's problem is reported.
	case n == "" && key != "":
		v.fail(path+".name", `required: the zone holds an access key, which must never appear in replies, records or metrics; name the list, e.g. "spamhaus-zen"`)
	case n == "" && !listNameRE.MatchString(*zone):
		v.fail(path+".name", "required: the zone is longer than 64 characters, too long to name the list")
	case n == "":
		*name = *zone
		nameOK, defaulted = true, true
	case !listNameRE.MatchString(n):
		v.fail(path+".name", "%q: want %s", yamldiag.Truncate(*name), listNameRule)
	case key != "" && strings.Contains(n, key):
		v.fail(path+".name", "must not contain the zone's access key: the name appears in replies, records and metrics")
	default:
		*name = n
		nameOK = true
	}
	if nameOK {
		if first, dup := names[*name]; dup {
			how := ""
			if defaulted {
				how = " (a list without a name is named after its zone)"
			}
			v.fail(path+".name", "%q is also the name of %s%s; list names must be unique", *name, first, how)
		} else {
			names[*name] = path
		}
	}

	allWeighted := len(answers) > 0
	seen := map[netip.Prefix]string{}
	for j := range answers {
		a := &answers[j]
		apath := fmt.Sprintf("%s.answers[%d]", path, j)
		allWeighted = allWeighted && a.Weight.Set
		v.answer(apath, a, seen)
	}
	switch {
	case math.IsNaN(weight) || math.IsInf(weight, 0):
		v.fail(path+".weight", "must be a finite number, got %g", weight)
	case weight == 0 && !allWeighted:
		v.fail(path+".weight", "required, and not 0: a list with weight 0 adds nothing to the score "+
			"(give a block list a positive weight, an allow list a negative one)")
	}
}

// answer checks one answer of a DNS list and rewrites match as a prefix.
func (v *validator) answer(path string, a *DNSBLAnswer, seen map[netip.Prefix]string) {
	switch {
	case a.Match == "":
		v.fail(path+".match", "required: an answer address like 127.0.0.2, or a range like 127.0.0.0/24")
	default:
		p, err := parsePrefix(a.Match)
		switch {
		case err != nil:
			v.fail(path+".match", "%v", err)
		case !p.Addr().Is4() || p.Bits() < loopbackNet.Bits() || !loopbackNet.Contains(p.Addr()):
			v.fail(path+".match", "%q is outside 127.0.0.0/8, where DNS lists answer (RFC 5782 §2.1)", a.Match)
		case p.Bits() >= refusalNet.Bits() && refusalNet.Contains(p.Addr()):
			v.fail(path+".match", "%q is in 127.255.255.0/24, the answers with which lists refuse a query "+
				"(a public resolver, too many queries, a typo in the zone), never a listing: counting them would list every client", a.Match)
		default:
			if first, dup := seen[p]; dup {
				v.fail(path+".match", "%q is the same as %s.match", a.Match, first)
				break
			}
			seen[p] = path
			a.Match = p.String()
		}
	}
	if a.Weight.Set && (math.IsNaN(a.Weight.Value) || math.IsInf(a.Weight.Value, 0)) {
		v.fail(path+".weight", "must be a finite number, got %g", a.Weight.Value)
	}
	if len(a.Text) > maxReplyText {
		v.fail(path+".text", "longer than %d characters (it may go into a reply)", maxReplyText)
	}
	for _, c := range a.Text {
		if c < ' ' || c > '~' {
			v.fail(path+".text", "only printable ASCII is allowed (it may go into a reply), got %q", c)
			break
		}
	}
}

// normalizeZone checks a DNS list zone (dot-separated labels of letters,
// digits and hyphens, as checkHostname, at least two of them) and returns
// it lower-case without a trailing dot. Messages never repeat the zone or
// a label: it may hold an access key (Spamhaus DQS).
func normalizeZone(s string) (string, error) {
	z := strings.ToLower(strings.TrimSuffix(s, "."))
	if _, err := netip.ParseAddr(z); err == nil {
		return "", errors.New("is an IP address; want the list's DNS zone, e.g. zen.spamhaus.org")
	}
	if len(z) > 253 {
		return "", errors.New("is longer than 253 characters")
	}
	labels := strings.Split(z, ".")
	if len(labels) < 2 {
		return "", errors.New("want a DNS zone of two or more labels, e.g. zen.spamhaus.org")
	}
	for i, l := range labels {
		switch {
		case l == "":
			return "", errors.New("is not a valid DNS zone: empty label")
		case len(l) > 63:
			return "", fmt.Errorf("is not a valid DNS zone: label %d is longer than 63 characters", i+1)
		case l[0] == '-' || l[len(l)-1] == '-':
			return "", fmt.Errorf("is not a valid DNS zone: label %d starts or ends with a hyphen", i+1)
		}
		for _, r := range l {
			if !isLDH(r) {
				return "", fmt.Errorf("is not a valid DNS zone: %q is not a letter, digit, hyphen or dot", r)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", errors.New("is not a valid DNS zone: the last label is all digits")
	}
	return z, nil
}

// keyedZoneSuffixes are the services whose zones begin with the
// subscriber's access key.
var keyedZoneSuffixes = []string{".dq.spamhaus.net", ".abusix.zone"}

// zoneKey returns the label of a normalised zone that is an access key,
// or "": the first label of a zone of a keyed service, or any label that
// looks like a key (16 or more letters and digits, with both).
func zoneKey(z string) string {
	labels := strings.Split(z, ".")
	for _, sfx := range keyedZoneSuffixes {
		if strings.HasSuffix(z, sfx) {
			return labels[0]
		}
	}
	for _, l := range labels {
		if len(l) >= 16 && strings.Trim(l, "0123456789abcdefghijklmnopqrstuvwxyz") == "" &&
			strings.ContainsAny(l, "0123456789") && strings.Trim(l, "0123456789") != "" {
			return l
		}
	}
	return ""
}

// maxPregreetWait is postscreen's upper bound for the greet wait: longer,
// and real senders start to give up on the banner.
const maxPregreetWait = 6 * time.Second

func (v *validator) pregreet(p *Pregreet) {
	waitOK := p.Wait >= 0 && p.Wait <= maxPregreetWait
	if !waitOK {
		v.fail("checks.pregreet.wait", "must be from 0s to %s (postscreen's range), got %s", fmtDur(maxPregreetWait), fmtDur(p.Wait))
	}
	v.oneOf("checks.pregreet.action", p.Action, "ignore", "enforce", "drop")
	if p.Teaser && p.Wait == 0 && !v.bad["checks.pregreet.wait"] {
		v.failAt(v.lineOf("checks.pregreet.teaser", "checks.pregreet.wait"), "checks.pregreet.teaser",
			"true needs checks.pregreet.wait above 0s: without a wait the whole banner is sent at once, so there is nothing to tease with")
	}
}

func (v *validator) iplists(ls []IPList) {
	seen := map[string]string{}
	for i := range ls {
		l := &ls[i]
		path := fmt.Sprintf("checks.iplists[%d]", i)
		switch {
		case l.Name == "":
			v.fail(path+".name", `required: the name rules see in client.iplists, e.g. "partners"`)
		case !listNameRE.MatchString(l.Name):
			v.fail(path+".name", "%q: want %s", yamldiag.Truncate(l.Name), listNameRule)
		default:
			if first, dup := seen[l.Name]; dup {
				v.fail(path+".name", "%q is also the name of %s; list names must be unique", l.Name, first)
				break
			}
			seen[l.Name] = path
		}
		if len(l.CIDRs) == 0 && l.File == "" && !v.bad[path+".cidrs"] {
			v.fail(path, "needs cidrs, a file, or both")
		}
		for j, s := range l.CIDRs {
			p, err := parsePrefix(s)
			if err != nil {
				v.fail(fmt.Sprintf("%s.cidrs[%d]", path, j), "%v", err)
				continue
			}
			l.CIDRs[j] = p.String()
		}
		if l.File != "" {
			v.listFile(path+".file", l)
		}
	}
}

// maxListFileSize bounds a checks.iplists file; a million IPv4 ranges are
// about 16 MB.
const maxListFileSize = 32 << 20

// maxListFileErrors is how many bad lines of one list file are reported.
const maxListFileErrors = 10

// listFile reads l.File, relative to the configuration file's folder like
// policy.include, and appends its entries to l.CIDRs. A problem with the
// file as a whole is reported at the key; a bad line with the list file's
// name and line.
func (v *validator) listFile(path string, l *IPList) {
	name := l.File
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(v.file), name)
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		v.fail(path, "%v", unwrapPathErr(err))
		return
	case !fi.Mode().IsRegular():
		v.fail(path, "%q is not a regular file", name)
		return
	case fi.Size() > maxListFileSize:
		v.fail(path, "%q is larger than %dMiB", name, maxListFileSize>>20)
		return
	}
	data, err := os.ReadFile(name)
	if err != nil {
		v.fail(path, "%v", unwrapPathErr(err))
		return
	}
	var bad []int // lines
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		p, err := parsePrefix(line)
		if err != nil {
			if len(bad) < maxListFileErrors {
				v.failIn(name, n+1, path, "%v", err)
			}
			bad = append(bad, n+1)
			continue
		}
		l.CIDRs = append(l.CIDRs, p.String())
	}
	if len(bad) > maxListFileErrors {
		v.failIn(name, bad[maxListFileErrors], path, "%d more bad lines from here on are not shown", len(bad)-maxListFileErrors)
	}
}

// failIn records a problem found in another file than the configuration
// (a checks.iplists file), at its line.
func (v *validator) failIn(file string, line int, path, format string, args ...any) {
	if v.capped {
		return
	}
	v.errs = append(v.errs, Error{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
	if len(v.errs) >= maxErrors {
		v.capped = true
	}
}

func (v *validator) rate(path string, r Rate) {
	if r.Limit < 0 {
		v.fail(path+".limit", "must not be negative, got %d (0 is no limit)", r.Limit)
	}
	switch {
	case r.Per < 0:
		v.fail(path+".per", "must not be negative, got %s", fmtDur(r.Per))
	case r.Limit > 0 && r.Per < time.Second:
		v.fail(path+".per", "must be at least 1s when a limit is set, got %s", fmtDur(r.Per))
	}
}

// parsePrefix reads a CIDR range, or a bare address as a range of one
// host, in the form the rest of the program reads: an IPv4-mapped IPv6
// address or range becomes IPv4 (client addresses are unmapped before they
// are compared), and a range may not have bits set after its length.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR (want e.g. 192.0.2.1, 192.0.2.0/24 or 2001:db8::/32)", yamldiag.Truncate(s))
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has bits set after the prefix length (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR (want e.g. 192.0.2.1, 192.0.2.0/24 or 2001:db8::/32)", yamldiag.Truncate(s))
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone; leave it out", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// greylist checks checks.greylist. Whether the store can be opened (the
// data directory exists, Redis answers) is for serve to find out at start,
// with a clear error; check-config may run on another machine.
func (v *validator) greylist(g *Greylist) {
	v.oneOf("checks.greylist.when", g.When, "suspicious", "always")
	switch {
	case g.Store == "memory", strings.HasPrefix(g.Store, "redis://"):
	case strings.HasPrefix(g.Store, "bbolt:") && len(g.Store) > len("bbolt:"):
	default:
		v.fail("checks.greylist.store", `want "memory", "bbolt:PATH" or "redis://host:port/db", got %q`, g.Store)
	}
	if g.Delay < time.Second {
		v.fail("checks.greylist.delay", "must be at least 1s, got %s", fmtDur(g.Delay))
	}
	if g.RetryWindow <= g.Delay {
		v.fail("checks.greylist.retry_window", "must be longer than delay (%s), got %s", fmtDur(g.Delay), fmtDur(g.RetryWindow))
	}
	v.positive("checks.greylist.allow_for", g.AllowFor)
	if g.PrefixV4 < 8 || g.PrefixV4 > 32 {
		v.fail("checks.greylist.prefix_v4", "must be from 8 to 32, got %d", g.PrefixV4)
	}
	if g.PrefixV6 < 16 || g.PrefixV6 > 128 {
		v.fail("checks.greylist.prefix_v6", "must be from 16 to 128, got %d", g.PrefixV6)
	}
}
