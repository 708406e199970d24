package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docsFile is the configuration reference.
const docsFile = "../../docs/configuration.md"

// required are the keys without a default.
var required = map[string]bool{"hostname": true, "domains": true, "backend.servers": true}

// TestDocsMatchConfig keeps docs/configuration.md in step with Config and
// Default(): one "### path" section per key, each stating the default.
func TestDocsMatchConfig(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	sections := docSections(string(data))
	known := map[string]bool{"listen": true} // the list itself also has a section
	def := reflect.ValueOf(Default())
	for _, path := range leafPaths(reflect.TypeFor[Config](), "", "[]") {
		known[path] = true
		body, ok := sections[path]
		if !ok {
			t.Errorf("%s: no \"### %s\" section", docsFile, path)
			continue
		}
		if !strings.Contains(body, "- **Type:** ") {
			t.Errorf("%s: section %s does not give the type", docsFile, path)
		}
		want := "- **Default:** none (required"
		if !required[path] && !strings.Contains(path, "[]") {
			want = "- **Default:** `" + docDefault(valueAt(def, path)) + "`"
		}
		if !strings.Contains(body, want) {
			t.Errorf("%s: section %s does not contain %q", docsFile, path, want)
		}
	}
	for path := range sections {
		if !known[path] {
			t.Errorf("%s: section %q is not a configuration key", docsFile, path)
		}
	}
}

// docSections maps each "### heading" to the text up to the next heading.
func docSections(doc string) map[string]string {
	out := map[string]string{}
	var cur string
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "### "):
			cur = strings.TrimSpace(strings.TrimPrefix(line, "### "))
			out[cur] = ""
		case strings.HasPrefix(line, "#"):
			cur = ""
		case cur != "":
			out[cur] += line + "\n"
		}
	}
	return out
}

// valueAt follows a dotted path of yaml keys from v.
func valueAt(v reflect.Value, path string) reflect.Value {
	for _, key := range strings.Split(path, ".") {
		v = v.Field(fieldsOf(v.Type()).index[key])
	}
	return v
}

// docDefault writes a default the way the docs and example do.
func docDefault(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return shortDuration(x)
	case Size:
		return shortSize(x)
	case string:
		return strconv.Quote(x)
	case []string:
		return fmt.Sprintf("%q", x)
	case OptionalScore:
		if !x.Set {
			return "none"
		}
		return strconv.FormatFloat(x.Value, 'g', -1, 64)
	case RuleList:
		return "[]"
	}
	return fmt.Sprint(v.Interface())
}

func shortDuration(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d != 0 && d%u.d == 0 {
			return fmt.Sprintf("%d%s", d/u.d, u.name)
		}
	}
	return d.String()
}

func shortSize(s Size) string {
	for _, u := range []struct {
		n    Size
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return fmt.Sprintf("%d%s", s/u.n, u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func TestDocDefaultFormat(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{10 * time.Second, "10s"}, {2 * time.Minute, "2m"}, {90 * time.Second, "90s"}, {time.Duration(0), "0s"},
		{Size(25 << 20), "25MiB"}, {Size(1000), "1000"}, {"none", `"none"`}, {[]string{}, "[]"}, {16, "16"}, {false, "false"},
	}
	for _, tt := range tests {
		if got := docDefault(reflect.ValueOf(tt.v)); got != tt.want {
			t.Errorf("docDefault(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}
