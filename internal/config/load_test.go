package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/yamldiag"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the .err files of testdata/config/bad")

// repoTestdata is testdata/config at the repository root, shared with the
// command's tests.
const repoTestdata = "../../testdata/config"

// exampleFile is the shipped example configuration.
const exampleFile = "../../config.example.yaml"

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "c.yaml", Line: 4, Path: "backend.timeouts.conect", Msg: "unknown key"}, "c.yaml:4: backend.timeouts.conect: unknown key"},
		{"no line", Error{File: "c.yaml", Path: "hostname", Msg: "required"}, "c.yaml: hostname: required"},
		{"no path", Error{File: "c.yaml", Line: 2, Msg: "more than one YAML document"}, "c.yaml:2: more than one YAML document"},
		{"neither", Error{File: "c.yaml", Msg: "empty configuration"}, "c.yaml: empty configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	es := Errors{tests[0].err, tests[1].err}
	if got, want := es.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

func TestSizeUnmarshalYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "0x400", want: 1024},
		{in: `"2048"`, want: 2048},
		{in: "512B", want: 512},
		{in: "100kB", want: 100_000},
		{in: "100KB", want: 100_000},
		{in: "10MB", want: 10_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "512KiB", want: 512 << 10},
		{in: "25MiB", want: 25 << 20},
		{in: "25 MiB", want: 25 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "-1", wantErr: "size must not be negative, got -1"},
		{in: "-5MiB", wantErr: `size must not be negative, got "-5MiB"`},
		{in: "25Mb", wantErr: `unknown size unit "Mb" in "25Mb" (want B, kB, KB, MB, GB, KiB, MiB or GiB)`},
		{in: "25mib", wantErr: `unknown size unit "mib"`},
		{in: "25KIB", wantErr: `unknown size unit "KIB"`},
		{in: "1.5GiB", wantErr: `want a size like "25MiB", "10MB" or a number of bytes, got "1.5GiB"`},
		{in: "1.5", wantErr: "got number 1.5"},
		{in: "lots", wantErr: `got "lots"`},
		{in: "[1]", wantErr: "got a list"},
		{in: "~", wantErr: "got an empty value"},
		{in: "9999999999GiB", wantErr: `size "9999999999GiB" is too large`},
		{in: "99999999999999999999", wantErr: "is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte("v: "+tt.in), &doc); err != nil {
				t.Fatal(err)
			}
			var s Size
			err := s.UnmarshalYAML(doc.Content[0].Content[1])
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want it to contain %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case s != tt.want:
				t.Errorf("got %d, want %d", s, tt.want)
			}
		})
	}
}

// TestBadConfigs checks every testdata/config/bad/*.yaml against its .err
// file; go test -update rewrites them after a deliberate change.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoTestdata, "bad", "*.yaml"))
	if err != nil || len(files) < 15 {
		t.Fatalf("want at least 15 bad configurations, found %d (%v)", len(files), err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(name, data)
			if err == nil {
				t.Fatalf("loaded without error: %+v", cfg)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is %T, want non-empty Errors", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestMinimalGetsDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join(repoTestdata, "good", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Hostname = "mx.example.com"
	want.Domains = []string{"example.com"}
	want.Backend.Servers = []string{"127.0.0.1:10025"}
	want.Backend.Helo = "mx.example.com" // defaults to hostname
	if cfg.Policy.Engine == nil || len(cfg.Policy.Engine.Rules()) == 0 {
		t.Error("the built-in default rules were not loaded")
	}
	cfg.Policy.Engine = nil // compiled, not a default
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", *cfg, want)
	}
}

func TestExampleLoads(t *testing.T) {
	if _, err := Load(exampleFile); err != nil {
		t.Fatalf("config.example.yaml does not load:\n%v", err)
	}
}

// TestExampleSetsEveryKey keeps the example complete: a key added to
// Config must be added to config.example.yaml too.
func TestExampleSetsEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	_, lines, errs := parse("config.example.yaml", data)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, path := range leafPaths(reflect.TypeFor[Config](), "", "[0]") {
		if lines[path] == 0 {
			t.Errorf("config.example.yaml does not set %s", path)
		}
	}
}

// leafPaths lists the path of every leaf key under t, writing a list of
// mappings with elem ("[0]" or "[]") before the element's keys.
func leafPaths(t reflect.Type, prefix, elem string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue // not a key: set by Load (Policy.Engine)
		}
		path := yamldiag.JoinPath(prefix, name)
		ft := f.Type
		switch {
		case reflect.PointerTo(ft).Implements(unmarshalerType):
			out = append(out, path) // decodes itself: a leaf (OptionalScore, RuleList)
		case ft.Kind() == reflect.Struct:
			out = append(out, leafPaths(ft, path, elem)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leafPaths(ft.Elem(), path+elem, elem)...)
		default:
			out = append(out, path)
		}
	}
	return out
}

func TestOverrides(t *testing.T) {
	const base = "hostname: mx.example.com\ndomains: [example.com]\n"
	const servers = "backend:\n  servers: [\"127.0.0.1:10025\"]\n"
	tests := []struct {
		name  string
		in    string
		check func(*Config) bool
	}{
		{"list replaces default", base + servers + "listen:\n  - address: \"127.0.0.1:2525\"\n",
			func(c *Config) bool { return reflect.DeepEqual(c.Listen, []Listener{{Address: "127.0.0.1:2525"}}) }},
		{"nested key keeps siblings", base + servers + "limits:\n  max_recipients: 500\n",
			func(c *Config) bool { return c.Limits.MaxRecipients == 500 && c.Limits.MaxLineLength == 1000 }},
		{"empty section keeps defaults", base + servers + "limits:\n",
			func(c *Config) bool { return c.Limits == Default().Limits }},
		{"null list clears it", base + servers + "dns:\n  servers:\n",
			func(c *Config) bool { return c.DNS.Servers == nil }},
		{"flow mapping", base + servers + "verdict_log: {path: /var/log/v.log}\n",
			func(c *Config) bool { return c.VerdictLog.Path == "/var/log/v.log" }},
		{"explicit helo", base + servers + "  helo: relay.example.com\n",
			func(c *Config) bool { return c.Backend.Helo == "relay.example.com" }},
		{"integer spellings", base + servers + "limits:\n  max_recipients: 0x10\n",
			func(c *Config) bool { return c.Limits.MaxRecipients == 16 }},
		{"quoted duration", base + servers + "shutdown_grace: \"1m30s\"\n",
			func(c *Config) bool { return c.ShutdownGrace == 90*time.Second }},
		{"alias", base + servers + "dns:\n  timeout: &t 7s\nshutdown_grace: *t\n",
			func(c *Config) bool { return c.DNS.Timeout == 7*time.Second && c.ShutdownGrace == 7*time.Second }},
		{"merge key, explicit and earlier win", base + servers +
			"  timeouts:\n    <<: [{connect: 1s, data: 2s}, {connect: 9s, final: 4s}]\n    data: 3s\n",
			func(c *Config) bool {
				to := c.Backend.Timeouts
				return to.Connect == time.Second && to.Data == 3*time.Second && to.Final == 4*time.Second && to.Command == 2*time.Minute
			}},
		{"domains normalised", "hostname: mx.example.com\ndomains: [Example.COM., Bücher.Example]\n" + servers,
			func(c *Config) bool {
				return reflect.DeepEqual(c.Domains, []string{"example.com", "xn--bcher-kva.example"})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("%v\nin:\n%s", err, tt.in)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected result %+v\nin:\n%s", cfg, tt.in)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	cfg, err := Load(path)
	var es Errors
	if cfg != nil || !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("got %v, %v; want one Errors entry", cfg, err)
	}
	if want := path + ": no such file or directory"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestLoadReportsPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("hostname: mx.example.com\nfoo: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path+":2: foo: unknown key") {
		t.Errorf("got %v, want the full path and line", err)
	}
}

// TestHostileAliases makes sure aliases cannot make a small file cost
// much: errors are capped and merge keys have a budget.
func TestHostileAliases(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"many errors", "a: &a {x1: 1, x2: 2, x3: 3, x4: 4, x5: 5, x6: 6, x7: 7, x8: 8, x9: 9, x10: 10}\n" +
			"listen: [" + strings.Repeat("*a, ", 200) + "*a]\n", "too many problems; stopped looking"},
		{"merge bomb", "a: &a {x1: 1, x2: 2, x3: 3, x4: 4, x5: 5, x6: 6, x7: 7, x8: 8, x9: 9, x10: 10}\n" +
			"b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}\n" +
			"c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}\n" +
			"d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}\n" +
			"e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n" +
			"limits: {<<: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}\n", "merge keys (<<) expand to too many keys"},
		{"self merge", "limits: &l {<<: *l}\n", "merge key (<<) refers to a mapping that contains it"},
		{"self list", "listen: &l [*l]\n", "listen[0]: want a mapping, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
			if es := err.(Errors); len(es) > maxErrors+1 {
				t.Errorf("%d errors, want at most %d", len(es), maxErrors+1)
			}
		})
	}
}

func TestClosest(t *testing.T) {
	known := []string{"connect", "command", "data", "final"}
	tests := []struct{ in, want string }{
		{"conect", "connect"},
		{"Connect", "connect"},
		{"comand", "command"},
		{"dta", "data"},
		{"finally", "final"},
		{"timeout", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := yamldiag.Closest(tt.in, known); got != tt.want {
			t.Errorf("yamldiag.Closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"conect", "connect", 1}, {"max_idle", "max_open", 4}, {"same", "same", 0},
	}
	for _, tt := range tests {
		if got := yamldiag.EditDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("yamldiag.EditDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
