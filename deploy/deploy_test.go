// Package deploy holds the deployment files: the systemd unit, the
// logrotate and fail2ban configurations and the Dockerfile. It has no Go
// code; its tests keep those files working with the gateway they deploy:
// the fail2ban filter against real verdict records, the unit's hardening
// against a regression that drops it, and the paths of every file against
// each other and the configuration defaults.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/verdict"
	"github.com/mxgate/mxgate/policy"
)

const (
	unitFile      = "mxgate.service"
	logrotateFile = "logrotate.conf"
	filterFile    = "fail2ban/filter.d/mxgate.conf"
	jailFile      = "fail2ban/jail.d/mxgate.local"
	dockerfile    = "Dockerfile"
	// Verdict records the gateway wrote (addresses changed to documentation
	// ranges): every line of ban.jsonl must be matched, none of noban.jsonl.
	banSamples   = "testdata/ban.jsonl"
	nobanSamples = "testdata/noban.jsonl"
)

// banReasons are the reason tokens the filter bans for, with action reject
// or drop. Changing the filter's list means changing this one, on purpose.
var banReasons = []policy.Reason{
	policy.ReasonRelayDenied, policy.ReasonBadRecipient, policy.ReasonPregreet,
	policy.ReasonNonSMTP, policy.ReasonEarlyPipelining, policy.ReasonProtocolError,
}

// ini is a parsed INI-style file: section, key, every value given (systemd
// allows a key more than once).
type ini map[string]map[string][]string

// readINI reads the INI dialects of systemd and fail2ban: "#" and ";"
// comment lines, "[section]", "key = value"; a value continues on indented
// lines (Python's configparser, fail2ban) or after a trailing backslash
// (systemd).
func readINI(t *testing.T, path string) ini {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := ini{}
	var section, key string
	continued := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		vals := out[section][key]
		indented := raw != "" && (raw[0] == ' ' || raw[0] == '\t')
		switch {
		case continued || indented && key != "" && line != "" && line[0] != '#':
			text := strings.TrimSuffix(line, "\\")
			vals[len(vals)-1] = strings.TrimSpace(vals[len(vals)-1] + " " + text)
			continued = strings.HasSuffix(line, "\\")
			continue
		case line == "" || line[0] == '#' || line[0] == ';':
			key = ""
			continue
		case line[0] == '[' && line[len(line)-1] == ']':
			section, key = line[1:len(line)-1], ""
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key = value line in a section: %q", path, n, raw)
		}
		key = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		continued = strings.HasSuffix(v, "\\")
		out[section][key] = append(out[section][key], strings.TrimSpace(strings.TrimSuffix(v, "\\")))
	}
	return out
}

// one returns the single value of a key, failing when it is absent.
func (f ini) one(t *testing.T, section, key string) string {
	t.Helper()
	vals := f[section][key]
	if len(vals) == 0 {
		t.Fatalf("[%s] has no %s", section, key)
	}
	return vals[len(vals)-1]
}

// filter is the fail2ban filter turned into Go regexps.
type filter struct {
	date *regexp.Regexp // datepattern; group 1 is what fail2ban cuts out
	fail *regexp.Regexp // failregex with <HOST> as the group "host"
}

// loadFilter reads the filter as fail2ban does: "%%" is a literal "%"
// (configparser interpolation), <HOST> is the address group, and the
// datepattern's %-fields are strptime fields.
func loadFilter(t *testing.T) filter {
	t.Helper()
	def := readINI(t, filterFile)["Definition"]
	if len(def["failregex"]) != 1 || strings.Contains(def["failregex"][0], "\n") {
		t.Fatalf("%s: want exactly one failregex, got %q", filterFile, def["failregex"])
	}
	fail := strings.ReplaceAll(def["failregex"][0], "%%", "%")
	if !strings.Contains(fail, "<HOST>") {
		t.Fatalf("%s: failregex has no <HOST>", filterFile)
	}
	fail = strings.ReplaceAll(fail, "<HOST>", `(?P<host>[0-9a-fA-F.:]+)`)
	if tag := regexp.MustCompile(`<[A-Z_-]+>`).FindString(fail); tag != "" {
		t.Fatalf("%s: failregex uses %s, which this test does not know", filterFile, tag)
	}
	date := strings.ReplaceAll(def["datepattern"][0], "%%", "%")
	fields := strings.NewReplacer(
		"%Y", `\d{4}`, "%m", `\d{2}`, "%d", `\d{2}`, "%H", `\d{2}`, "%M", `\d{2}`, "%S", `\d{2}`,
		"%z", `(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)`)
	date = fields.Replace(date)
	if f := regexp.MustCompile(`%.`).FindString(date); f != "" {
		t.Fatalf("%s: datepattern uses %s, which this test does not know", filterFile, f)
	}
	f := filter{date: regexp.MustCompile(date), fail: regexp.MustCompile(fail)}
	if f.date.NumSubexp() < 1 {
		t.Fatalf("%s: datepattern needs a group around the timestamp", filterFile)
	}
	return f
}

// match runs one log line through the filter the way fail2ban does: find
// the date, cut it out of the line, apply the failregex to the rest. It
// returns the host and whether the line matched.
func (f filter) match(t *testing.T, line string) (string, bool) {
	t.Helper()
	m := f.date.FindStringSubmatchIndex(line)
	if m == nil {
		t.Fatalf("datepattern finds no date in %s", line)
	}
	stamp := line[m[2]:m[3]]
	var rec struct {
		TS string `json:"ts"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("not a JSON line: %v: %s", err, line)
	}
	if stamp != rec.TS {
		t.Errorf("datepattern takes %q as the time, the record's ts is %q", stamp, rec.TS)
	}
	if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil {
		t.Errorf("datepattern's time %q: %v", stamp, err)
	}
	cut := line[:m[2]] + line[m[3]:]
	got := f.fail.FindStringSubmatch(cut)
	// fail2ban-regex and older versions may see the line whole: same answer.
	if whole := f.fail.FindStringSubmatch(line); (whole == nil) != (got == nil) || got != nil && whole[f.fail.SubexpIndex("host")] != got[f.fail.SubexpIndex("host")] {
		t.Errorf("the failregex answers differently with and without the date cut out: %s", line)
	}
	if got == nil {
		return "", false
	}
	return got[f.fail.SubexpIndex("host")], true
}

// samples reads a JSON-lines file of verdict records.
func samples(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// clientOf decodes what fail2ban should find in a record.
func clientOf(t *testing.T, line string) (ip string, action policy.Action, reason policy.Reason) {
	t.Helper()
	var r verdict.Record
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	return r.Client.IP, r.Action, r.Reason
}

func TestFail2banBansProbes(t *testing.T) {
	f := loadFilter(t)
	seen := map[policy.Reason]bool{}
	v6 := false
	for _, line := range samples(t, banSamples) {
		ip, action, reason := clientOf(t, line)
		host, ok := f.match(t, line)
		if !ok {
			t.Errorf("%s %s from %s: not matched:\n%s", action, reason, ip, line)
			continue
		}
		if host != ip {
			t.Errorf("%s %s: host %q, want the client %q", action, reason, host, ip)
		}
		seen[reason] = true
		v6 = v6 || strings.Contains(ip, ":")
	}
	for _, r := range banReasons {
		if !seen[r] {
			t.Errorf("%s: no sample record with reason %s", banSamples, r)
		}
	}
	if !v6 {
		t.Errorf("%s: no sample from an IPv6 client", banSamples)
	}
}

func TestFail2banSparesOthers(t *testing.T) {
	f := loadFilter(t)
	rules := map[string]bool{}
	for _, line := range samples(t, nobanSamples) {
		if _, ok := f.match(t, line); ok {
			ip, action, reason := clientOf(t, line)
			t.Errorf("%s %s from %s: matched, must not be:\n%s", action, reason, ip, line)
		}
		var r verdict.Record
		json.Unmarshal([]byte(line), &r)
		for _, m := range r.Rules {
			rules[m.Name] = true
		}
	}
	// The reasons the filter leaves alone on purpose: the sender may be
	// legitimate infrastructure.
	for _, name := range []string{"dnsbl-reject", "dmarc-reject"} {
		if !rules[name] {
			t.Errorf("%s: no sample record decided by %s", nobanSamples, name)
		}
	}
}

// reasonTokens lists every reason token, read from policy/reason.go, so a
// reason added later is checked here without anyone remembering to.
func reasonTokens(t *testing.T) []policy.Reason {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), "../policy/reason.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []policy.Reason
	ast.Inspect(file, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
			return true
		}
		for _, v := range vs.Values {
			if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, _ := strconv.Unquote(lit.Value)
				out = append(out, policy.Reason(s))
			}
		}
		return true
	})
	if len(out) < 30 {
		t.Fatalf("found only %d reason tokens in policy/reason.go", len(out))
	}
	return out
}

// TestFail2banReasonMatrix writes a record for every action and reason
// token with the gateway's own writer, and checks that exactly reject or
// drop with a ban reason is matched.
func TestFail2banReasonMatrix(t *testing.T) {
	f := loadFilter(t)
	actions := []policy.Action{policy.ActionAccept, policy.ActionTag, policy.ActionGreylist,
		policy.ActionTempfail, policy.ActionReject, policy.ActionDrop, policy.ActionAbort}
	mailFrom := "probe@example.net"
	for _, reason := range reasonTokens(t) {
		for _, action := range actions {
			for _, ip := range []string{"203.0.113.99", "2001:db8:5::99"} {
				for _, listener := range []string{"192.0.2.1:25", ""} {
					rec := &verdict.Record{
						Ref: "01M81SYZRENN2NHRCM9N9N4003", ConnID: "01M81SYY6GB3BDF3FBR6WXBH41",
						Listener: listener, Client: verdict.Client{IP: ip, Port: 40000, Helo: "probe.example.net"},
						MailFrom: &mailFrom,
						Rcpts:    []verdict.Rcpt{{Addr: "x@elsewhere.test", Reason: reason, Reply: verdict.Reply{Code: 550, Enhanced: "5.7.1", Text: "no"}}},
						Action:   action, Reason: reason, Stage: policy.StageRcpt,
						Reply: &verdict.Reply{Code: 550, Enhanced: "5.7.1", Text: "no (ref 01M81SYZRENN2NHRCM9N9N4003)"},
					}
					line := write(t, rec)
					want := (action == policy.ActionReject || action == policy.ActionDrop) && slices.Contains(banReasons, reason)
					host, got := f.match(t, line)
					if got != want {
						t.Errorf("%s %s (listener %q): matched %v, want %v", action, reason, listener, got, want)
					} else if got && host != ip {
						t.Errorf("%s %s: host %q, want %q", action, reason, host, ip)
					}
				}
			}
		}
	}
}

// write renders a record with the gateway's own writer.
func write(t *testing.T, rec *verdict.Record) string {
	t.Helper()
	var buf bytes.Buffer
	if err := verdict.NewWriter(&buf).Write(rec); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// TestFail2banCannotBeSteered: what a client sends (HELO, addresses,
// header fields, commands in "detail") is inside JSON strings, where
// quotes are escaped; it can neither trigger a ban nor aim one elsewhere.
func TestFail2banCannotBeSteered(t *testing.T) {
	f := loadFilter(t)
	evil := `x","client":{"ip":"198.51.100.66"},"action":"reject","reason":"relay_denied","y":"`
	from := evil + "@example.net"
	rec := &verdict.Record{
		Ref: "01M81SYZRENN2NHRCM9N9N4003", ConnID: "01M81SYY6GB3BDF3FBR6WXBH41", Listener: "192.0.2.1:25",
		Client:   verdict.Client{IP: "203.0.113.5", Port: 1, Helo: evil},
		MailFrom: &from, Detail: evil, HeaderFrom: evil,
		Facts:  map[string]any{"subject": evil, "helo": evil},
		Action: policy.ActionAccept, Reason: policy.ReasonAccepted, Stage: policy.StageData,
	}
	if _, ok := f.match(t, write(t, rec)); ok {
		t.Errorf("an accepted message whose fields imitate a ban record was matched")
	}
	rec.Action, rec.Reason = policy.ActionReject, policy.ReasonRelayDenied
	if host, ok := f.match(t, write(t, rec)); !ok || host != "203.0.113.5" {
		t.Errorf("relay_denied with hostile fields: host %q, matched %v; want the real client 203.0.113.5", host, ok)
	}
}

// TestJail checks the example jail against the filter, the logrotate
// configuration and the unit.
func TestJail(t *testing.T) {
	jail := readINI(t, jailFile)
	want := map[string]string{
		"enabled": "true", "filter": "mxgate", "port": "smtp", "maxretry": "5",
		"findtime": "10m", "bantime": "1h", "logpath": verdictLogPath(t),
	}
	for k, v := range want {
		if got := jail.one(t, "mxgate", k); got != v {
			t.Errorf("%s: %s = %q, want %q", jailFile, k, got, v)
		}
	}
}

// verdictLogPath is where the unit's LogsDirectory puts the verdict log.
func verdictLogPath(t *testing.T) string {
	t.Helper()
	return "/var/log/" + readINI(t, unitFile).one(t, "Service", "LogsDirectory") + "/verdicts.jsonl"
}

func TestLogrotate(t *testing.T) {
	data, err := os.ReadFile(logrotateFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	path := verdictLogPath(t)
	if !strings.Contains(text, "\n"+path+" {") {
		t.Errorf("%s does not rotate %s", logrotateFile, path)
	}
	var directives []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			directives = append(directives, strings.Join(strings.Fields(l), " "))
		}
	}
	for _, d := range []string{"daily", "rotate 30", "compress", "delaycompress", "missingok",
		"notifempty", "create 0640 mxgate mxgate", "postrotate", "endscript"} {
		if !slices.Contains(directives, d) {
			t.Errorf("%s: no %q", logrotateFile, d)
		}
	}
	if !strings.Contains(text, "systemctl reload mxgate") {
		t.Errorf("%s: postrotate must reload mxgate (SIGHUP reopens the verdict log)", logrotateFile)
	}
}

// TestUnitHardening keeps the systemd unit's sandbox: dropping one of these
// is a regression, not a tidy-up.
func TestUnitHardening(t *testing.T) {
	unit := readINI(t, unitFile)
	const cfg = "--config /etc/mxgate/config.yaml"
	exact := map[string]string{
		"User":                    "mxgate",
		"Group":                   "mxgate",
		"ExecStart":               "/usr/local/bin/gateway serve " + cfg,
		"ExecStartPre":            "/usr/local/bin/gateway check-config " + cfg,
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"StateDirectory":          "mxgate",
		"LogsDirectory":           "mxgate",
		"LimitNOFILE":             "65536",
		"Restart":                 "on-failure",
		"KillSignal":              "SIGTERM",
	}
	for k, v := range exact {
		if got := unit.one(t, "Service", k); got != v {
			t.Errorf("%s: %s=%s, want %s", unitFile, k, got, v)
		}
	}
	families := strings.Fields(unit.one(t, "Service", "RestrictAddressFamilies"))
	for _, fam := range []string{"AF_INET", "AF_INET6", "AF_UNIX"} {
		if !slices.Contains(families, fam) {
			t.Errorf("%s: RestrictAddressFamilies lacks %s", unitFile, fam)
		}
	}
	if families[0] == "~" || strings.HasPrefix(families[0], "~") {
		t.Errorf("%s: RestrictAddressFamilies must be an allow list", unitFile)
	}
	if !slices.Contains(unit["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("%s: no SystemCallFilter=@system-service", unitFile)
	}
	if rw := unit["Service"]["ReadWritePaths"]; len(rw) > 0 {
		t.Logf("%s: ReadWritePaths=%v; StateDirectory and LogsDirectory are already writable", unitFile, rw)
	}
	// Paths and timings agree with the configuration defaults.
	def := config.Default()
	if dir := "/var/lib/" + unit.one(t, "Service", "StateDirectory"); dir != def.DataDir {
		t.Errorf("%s: StateDirectory makes %s, data_dir defaults to %s", unitFile, dir, def.DataDir)
	}
	stop, err := time.ParseDuration(unit.one(t, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("%s: TimeoutStopSec: %v", unitFile, err)
	}
	if stop <= def.ShutdownGrace {
		t.Errorf("%s: TimeoutStopSec=%s must exceed shutdown_grace (%s), or systemd kills transactions the gateway is finishing", unitFile, stop, def.ShutdownGrace)
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string // instructions, comments dropped, continuations joined
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
	}
	var from []string
	for _, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			from = append(from, l)
		}
	}
	if len(from) < 2 || !strings.Contains(from[0], "golang:") || !strings.Contains(from[len(from)-1], "distroless/static") {
		t.Errorf("%s: want a golang build stage and a distroless static final stage, got %q", dockerfile, from)
	}
	for _, want := range []string{"EXPOSE 25", "VOLUME " + config.Default().DataDir, `ENTRYPOINT ["/gateway"]`,
		`CMD ["serve", "--config", "/etc/mxgate/config.yaml"]`} {
		if !has(want) {
			t.Errorf("%s: no %q", dockerfile, want)
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "CGO_ENABLED=0") && strings.Contains(l, "go build") && strings.Contains(l, "-trimpath")
	}) {
		t.Errorf("%s: the binary must be built static (CGO_ENABLED=0) with -trimpath", dockerfile)
	}
	users := slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return !strings.HasPrefix(l, "USER ") })
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "USER root") || strings.HasPrefix(users[len(users)-1], "USER 0") {
		t.Errorf("%s: the final stage must run as a non-root USER, got %q", dockerfile, users)
	}
}
