package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/checks/greylist"
	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/testutil"
)

// TestGreylistCommands runs list, allow, release and delete against the
// persistent stores: an embedded bbolt file and a real Redis.
func TestGreylistCommands(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"bbolt": func(*testing.T) string { return "bbolt:greylist.db" },
		"redis": func(t *testing.T) string { return testutil.StartRedis(t).URL("", 0) },
	}
	for name, spec := range stores {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			store := spec(t)
			cfg := filepath.Join(dir, "config.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname: mx.example.test
domains: [example.test]
backend: { servers: ["127.0.0.1:10025"] }
data_dir: %q
checks:
  greylist: { store: %q }
`, dir, store)), 0o644)

			// A deferred triplet, as a gateway would have stored it.
			st, err := greystore.Open(store, dir)
			if err != nil {
				t.Fatal(err)
			}
			d, err := greylist.New(st, greylist.Options{}).Check(context.Background(),
				greylist.Client{IP: mustAddr("192.0.2.7")}, "a@sender.test", "bob@example.test", "01REFREFREFREFREFREFREFREF")
			st.Close()
			if err != nil || d.State != greylist.StateNew {
				t.Fatalf("seed: %+v %v", d, err)
			}

			cli := func(want int, args ...string) string {
				t.Helper()
				var out, errb bytes.Buffer
				if code := run(append([]string{"greylist"}, args...), &out, &errb); code != want {
					t.Fatalf("greylist %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errb.String())
				}
				return out.String() + errb.String()
			}
			if out := cli(0, "list", "--config", cfg); !strings.Contains(out, "01REFREFREFREFREFREFREFREF") || !strings.Contains(out, "triplet") {
				t.Fatalf("list:\n%s", out)
			}
			cli(0, "release", "--config", cfg, "01REFREFREFREFREFREFREFREF")
			cli(1, "release", "--config", cfg, "01NOSUCHREFNOSUCHREFNOSUCH")
			cli(0, "allow", "--config", cfg, "--for", "1h", "example.com")
			out := cli(0, "list", "--config", cfg, "--json")
			if !strings.Contains(out, `"org:example.com"`) || !strings.Contains(out, `"released":true`) {
				t.Fatalf("list --json:\n%s", out)
			}
			cli(0, "delete", "--config", cfg, "org:example.com")
			if out := cli(0, "list", "--config", cfg); strings.Contains(out, "org:example.com") {
				t.Fatalf("deleted entry still listed:\n%s", out)
			}
			cli(2, "allow", "--config", cfg)
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
