package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
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
// server compares recipient domains against.
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
	v.policy(&c.Policy)
	if c.VerdictLog.Path == "" {
		v.fail("verdict_log.path", `required (a file, or "-" for standard output)`)
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.positive("shutdown_grace", c.ShutdownGrace)
}

func (v *validator) policy(p *Policy) {
	v.oneOf("policy.mode", p.Mode, "enforce", "shadow")
	if p.Thresholds.Greylist.Set {
		v.fail("policy.thresholds.greylist", "needs greylisting (checks.greylist), which this version does not have yet")
	}
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
