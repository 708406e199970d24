package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that no input makes Parse panic and that its result is
// always well-formed: a configuration, or Errors sorted by line. A panic
// here would be a crash on SIGHUP with a half-edited file.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{
		filepath.Join(repoTestdata, "good", "*.yaml"),
		filepath.Join(repoTestdata, "bad", "*.yaml"),
		exampleFile,
	} {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			f.Fatalf("no seeds in %s (%v)", pattern, err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil {
			checkParsed(t, data, cfg)
			return
		}
		if cfg != nil {
			t.Fatalf("got a configuration and an error: %v", err)
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error %T %v, want non-empty Errors", err, err)
		}
		if len(es) > maxErrors+1 {
			t.Fatalf("%d errors, want at most %d", len(es), maxErrors+1)
		}
		for i, e := range es {
			if e.File != "fuzz.yaml" || e.Msg == "" || e.Line < 0 {
				t.Fatalf("malformed error %#v", e)
			}
			capNote := i == len(es)-1 && e.Line == 0
			if i > 0 && e.Line < es[i-1].Line && !capNote {
				t.Fatalf("errors not sorted by line:\n%v", err)
			}
		}
		_ = err.Error()
	})
}

// checkParsed checks what Parse promises about a configuration it accepts.
func checkParsed(t *testing.T, data []byte, cfg *Config) {
	t.Helper()
	if cfg == nil {
		t.Fatal("nil configuration without an error")
	}
	if cfg.Hostname == "" || cfg.Backend.Helo == "" || len(cfg.Domains) == 0 || len(cfg.Listen) == 0 || len(cfg.Backend.Servers) == 0 {
		t.Fatalf("accepted a configuration missing a required value: %+v", cfg)
	}
	for _, d := range cfg.Domains {
		if n, err := normalizeDomain(d); err != nil || n != d {
			t.Fatalf("domain %q is not normalised (%q, %v)", d, n, err)
		}
	}
	again, err := Parse("fuzz.yaml", data)
	if err != nil || !reflect.DeepEqual(cfg, again) {
		t.Fatalf("second parse differs: %+v, %v", again, err)
	}
}
