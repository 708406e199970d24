package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/yamldiag"
	"go.yaml.in/yaml/v3"
)

// maxErrors stops the walk on hostile input: YAML aliases let a small file
// repeat a bad mapping many times. No hand-written file gets near it.
const maxErrors = 100

// maxMergedKeys bounds the keys YAML merge keys (<<) may bring in, for the
// same reason as maxErrors.
const maxMergedKeys = 10000

// maxCAFileSize bounds how much of backend.tls.ca_file validation reads; a
// real bundle of every public root is about 250 kB.
const maxCAFileSize = 16 << 20

// Load reads, decodes strictly and validates the file. On any problem it
// returns a non-nil Errors listing EVERY problem found (decoding and
// validation), sorted by line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *os.PathError
		if errors.As(err, &pe) {
			// The path is already in Error.File; repeating it is noise.
			msg = pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: msg}}
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; name is used in messages as the file name.
func Parse(name string, data []byte) (*Config, error) {
	cfg, _, errs := parse(name, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// parse does the work of Parse and also returns the line of every key and
// list element it saw, keyed by path, for tests that check coverage.
func parse(name string, data []byte) (*Config, map[string]int, Errors) {
	w := &walker{file: name, lines: map[string]int{}, bad: map[string]bool{}, mergeBudget: maxMergedKeys}
	root := w.document(data)
	if root == nil {
		return nil, w.lines, w.result()
	}
	if root.Kind != yaml.MappingNode {
		// Nothing was decoded, so validation would only add noise.
		w.errorf(root.Line, "", "want a mapping of configuration keys, got %s", yamldiag.Describe(root))
		return nil, w.lines, w.result()
	}
	cfg := Default()
	w.value("", root, reflect.ValueOf(&cfg).Elem())
	if !w.capped {
		v := &validator{walker: w}
		v.config(&cfg)
		w.errs = append(w.errs, compilePolicy(name, &cfg)...)
	}
	return &cfg, w.lines, w.result()
}

// walker decodes a yaml.Node tree into a value by walking both together,
// so that every problem is recorded with its path and line and decoding
// carries on after it. yaml.v3's own strict decoding stops at the first
// unknown key and does not give paths.
type walker struct {
	file  string
	errs  Errors
	lines map[string]int  // path -> line of the key or list element
	bad   map[string]bool // paths that failed to decode; validation skips them
	// capped is set once maxErrors is reached or merge keys exceed their
	// budget; the walk then stops and validation is skipped.
	capped bool
	// mergeBudget is how many more keys merge keys may bring in.
	mergeBudget int
}

func (w *walker) errorf(line int, path, format string, args ...any) {
	if w.capped {
		return
	}
	w.errs = append(w.errs, Error{File: w.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
	if len(w.errs) >= maxErrors {
		w.capped = true
	}
}

// typeErr records a value that could not be decoded; validation then
// leaves the path alone rather than report the default it still holds.
func (w *walker) typeErr(n *yaml.Node, path, format string, args ...any) {
	w.bad[path] = true
	w.errorf(n.Line, path, format, args...)
}

// result returns the errors sorted by line; the sort is stable so problems
// on one line keep the order they were found in.
func (w *walker) result() Errors {
	if len(w.errs) == 0 {
		return nil
	}
	sort.SliceStable(w.errs, func(i, j int) bool { return w.errs[i].Line < w.errs[j].Line })
	if w.capped {
		w.errs = append(w.errs, Error{File: w.file, Msg: "too many problems; stopped looking (fix these and check again)"})
	}
	return w.errs
}

// document parses data into the root node of its single document, or
// returns nil after recording why there is none.
func (w *walker) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := safeDecode(dec, &doc)
	if err == io.EOF {
		w.errorf(0, "", "empty configuration")
		return nil
	}
	if err != nil {
		w.syntaxErr(err)
		return nil
	}
	var next yaml.Node
	switch err := safeDecode(dec, &next); {
	case err == io.EOF:
	case err != nil:
		w.syntaxErr(err)
	default:
		w.errorf(next.Line, "", "more than one YAML document; a configuration is a single document")
	}
	if len(doc.Content) == 0 || yamldiag.IsNull(yamldiag.Resolve(doc.Content[0])) {
		w.errorf(0, "", "empty configuration")
		return nil
	}
	return yamldiag.Resolve(doc.Content[0])
}

// syntaxRE splits yaml.v3's "yaml: line N: msg" into the line and message.
var syntaxRE = regexp.MustCompile(`(?s)^yaml: (?:line (\d+): )?(.*)$`)

func (w *walker) syntaxErr(err error) {
	msg := err.Error()
	line := 0
	if m := syntaxRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	w.errorf(line, "", "YAML syntax: %s", msg)
}

// safeDecode turns a panic in the YAML library into an error: a
// configuration reload must never take the gateway down.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal parser error: %v", r)
		}
	}()
	return dec.Decode(n)
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// value decodes n into v, which is addressable.
func (w *walker) value(path string, n *yaml.Node, v reflect.Value) {
	if w.capped {
		return
	}
	n = yamldiag.Resolve(n)
	if yamldiag.IsNull(n) {
		w.null(path, n, v)
		return
	}
	if v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			w.typeErr(n, path, "%s", err)
		}
		return
	}
	if v.Type() == durationType {
		w.duration(path, n, v)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		w.mapping(path, n, v)
	case reflect.Slice:
		w.sequence(path, n, v)
	case reflect.String:
		w.str(path, n, v)
	case reflect.Bool:
		w.boolean(path, n, v)
	case reflect.Int, reflect.Int64:
		w.integer(path, n, v)
	case reflect.Float64:
		w.float(path, n, v)
	default:
		// Only reachable by adding a field of a new kind to Config.
		panic(fmt.Sprintf("config: field %s has unsupported type %s", path, v.Type()))
	}
}

// null handles a key with no value. A section left empty keeps its
// defaults (the usual state while editing); a string or list becomes empty,
// which is how one clears, say, dns.servers. A number, duration or bool
// must be given: a silent zero there would be a surprise.
func (w *walker) null(path string, n *yaml.Node, v reflect.Value) {
	switch {
	case v.Kind() == reflect.Struct:
	case v.Kind() == reflect.String, v.Kind() == reflect.Slice:
		v.SetZero()
	case v.Addr().Type().Implements(unmarshalerType):
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			w.typeErr(n, path, "%s", err)
		}
	default:
		w.typeErr(n, path, "want %s, got %s", want(v.Type()), yamldiag.Describe(n))
	}
}

func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration like "300s" or "5m"`
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "an integer"
	}
}

// pair is one key and its value in a mapping.
type pair struct{ key, value *yaml.Node }

// mapping decodes a YAML mapping into the struct v, field by yaml tag.
func (w *walker) mapping(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		w.typeErr(n, path, "want a mapping, got %s", yamldiag.Describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	var suggested []string
	for _, p := range w.pairs(path, n) {
		name := p.key.Value
		sub := yamldiag.JoinPath(path, name)
		if name == "" {
			sub = yamldiag.JoinPath(path, `""`) // so the message still names a key
		}
		i, ok := fields.index[name]
		if !ok {
			guess := yamldiag.Closest(name, fields.names)
			if guess == "" {
				w.errorf(p.key.Line, sub, "unknown key")
			} else {
				w.errorf(p.key.Line, sub, "unknown key (did you mean %q?)", guess)
				suggested = append(suggested, yamldiag.JoinPath(path, guess))
			}
			continue
		}
		w.lines[sub] = p.key.Line
		w.value(sub, p.value, v.Field(i))
	}
	for _, s := range suggested {
		if w.lines[s] == 0 {
			// "adress: x" already explains why address is missing; a
			// second "address: required" would only repeat it.
			w.bad[s] = true
		}
	}
}

// pairs lists the key/value pairs of n with YAML merge keys ("<<: *base")
// expanded; keys written out take precedence over merged ones. A key
// written twice is an error: yaml.v3 only reports it when decoding into
// Go values, which the walker does not do for mappings.
func (w *walker) pairs(path string, n *yaml.Node) []pair {
	var out, merged []pair
	seen := map[string]int{} // key -> line
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, w.mergePairs(path, val, map[*yaml.Node]bool{n: true})...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.errorf(k.Line, path, "a key must be a plain name, got %s", yamldiag.Describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.errorf(k.Line, yamldiag.JoinPath(path, k.Value), "duplicate key (first set at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{k, val})
	}
	for _, p := range merged {
		if _, ok := seen[p.key.Value]; !ok {
			seen[p.key.Value] = p.key.Line
			out = append(out, p)
		}
	}
	return out
}

// mergePairs returns the pairs a merge key's value brings in: a mapping, or
// a list of mappings where earlier ones win. visiting guards against an
// anchor merged into itself, which the YAML parser allows, and the budget
// against merges of merges that multiply a small file into millions of keys.
func (w *walker) mergePairs(path string, v *yaml.Node, visiting map[*yaml.Node]bool) []pair {
	v = yamldiag.Resolve(v)
	srcs := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		srcs = v.Content
	}
	var out []pair
	for _, s := range srcs {
		s = yamldiag.Resolve(s)
		switch {
		case s.Kind != yaml.MappingNode:
			w.errorf(s.Line, path, "merge key (<<) wants a mapping or a list of mappings, got %s", yamldiag.Describe(s))
			continue
		case visiting[s]:
			w.errorf(s.Line, path, "merge key (<<) refers to a mapping that contains it")
			continue
		}
		visiting[s] = true
		for i := 0; i+1 < len(s.Content); i += 2 {
			if w.mergeBudget--; w.mergeBudget < 0 {
				w.errorf(s.Line, path, "merge keys (<<) expand to too many keys")
				w.capped = true
				return out
			}
			k := s.Content[i]
			switch {
			case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
				out = append(out, w.mergePairs(path, s.Content[i+1], visiting)...)
			case k.Kind == yaml.ScalarNode:
				out = append(out, pair{k, s.Content[i+1]})
			}
		}
		delete(visiting, s)
	}
	return out
}

// sequence decodes a YAML list into the slice v, replacing the default:
// a list in the file is the whole list, never an addition to it.
func (w *walker) sequence(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		w.typeErr(n, path, "want a list, got %s", yamldiag.Describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		sub := fmt.Sprintf("%s[%d]", path, i)
		w.lines[sub] = item.Line
		w.value(sub, item, s.Index(i))
	}
	v.Set(s)
}

func (w *walker) str(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		w.typeErr(n, path, "want a string, got %s", yamldiag.Describe(n))
		return
	}
	var s string
	if err := yamldiag.DecodeScalar(n, &s); err != nil {
		w.typeErr(n, path, "want a string, got %s", yamldiag.Describe(n))
		return
	}
	v.SetString(s)
}

// boolean accepts only YAML 1.2 booleans: "yes", "on" and friends are
// strings there, and guessing would hide typos such as "ture".
func (w *walker) boolean(path string, n *yaml.Node, v reflect.Value) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || yamldiag.DecodeScalar(n, &b) != nil {
		w.typeErr(n, path, "want true or false, got %s", yamldiag.Describe(n))
		return
	}
	v.SetBool(b)
}

func (w *walker) integer(path string, n *yaml.Node, v reflect.Value) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || yamldiag.DecodeScalar(n, &i) != nil || v.OverflowInt(i) {
		w.typeErr(n, path, "want an integer, got %s", yamldiag.Describe(n))
		return
	}
	v.SetInt(i)
}

// float takes an integer or a decimal number (weights, scores); not
// infinity or NaN, which no score can use.
func (w *walker) float(path string, n *yaml.Node, v reflect.Value) {
	var f float64
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || yamldiag.DecodeScalar(n, &f) != nil ||
		math.IsInf(f, 0) || math.IsNaN(f) {
		w.typeErr(n, path, "want a number, got %s", yamldiag.Describe(n))
		return
	}
	v.SetFloat(f)
}

// duration rejects bare numbers: "timeout: 30" could mean seconds or
// nanoseconds (time.Duration's unit), and either reading is a trap.
func (w *walker) duration(path string, n *yaml.Node, v reflect.Value) {
	const wantDur = `want a duration like "300s" or "5m"`
	if n.Kind != yaml.ScalarNode {
		w.typeErr(n, path, "%s, got %s", wantDur, yamldiag.Describe(n))
		return
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		w.typeErr(n, path, "%s, got %s (a number without a unit is not a duration)", wantDur, yamldiag.Describe(n))
		return
	}
	d, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		w.typeErr(n, path, "%s, got %s", wantDur, yamldiag.Describe(n))
		return
	}
	v.SetInt(int64(d))
}

// structFields is the yaml keys of one struct type.
type structFields struct {
	index map[string]int // key -> field index
	names []string       // keys in field order, for hints
}

func fieldsOf(t reflect.Type) structFields {
	f := structFields{index: map[string]int{}}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		f.index[name] = i
		f.names = append(f.names, name)
	}
	return f
}

// sizeRE is a whole number, optional spaces, and an optional unit.
var sizeRE = regexp.MustCompile(`^([0-9]+) *([A-Za-z]*)$`)

// sizeUnits are the accepted units. Decimal units accept "KB" beside the SI
// "kB" because people write both; the binary ones are exact only, since
// "kib" or "MIB" is more likely a mistake than a preference.
var sizeUnits = map[string]int64{
	"":    1,
	"B":   1,
	"kB":  1000,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
}

const wantSize = `want a size like "25MiB", "10MB" or a number of bytes`

// UnmarshalYAML decodes a byte count given as a non-negative integer or as
// a string with a unit: "512KiB", "25 MiB", "10MB", "100kB". Errors do not
// name the key; the caller adds the path.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.ScalarNode || yamldiag.IsNull(n) {
		return fmt.Errorf("%s, got %s", wantSize, yamldiag.Describe(n))
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := yamldiag.DecodeScalar(n, &i); err != nil {
			return fmt.Errorf("%s, got %s", wantSize, yamldiag.Describe(n))
		}
		if i < 0 {
			return fmt.Errorf("size must not be negative, got %d", i)
		}
		*s = Size(i)
		return nil
	}
	v := strings.TrimSpace(n.Value)
	if strings.HasPrefix(v, "-") {
		return fmt.Errorf("size must not be negative, got %q", n.Value)
	}
	m := sizeRE.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("%s, got %s", wantSize, yamldiag.Describe(n))
	}
	mult, ok := sizeUnits[m[2]]
	if !ok {
		return fmt.Errorf("unknown size unit %q in %q (want B, kB, KB, MB, GB, KiB, MiB or GiB)", m[2], n.Value)
	}
	num, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || num > math.MaxInt64/mult {
		return fmt.Errorf("size %q is too large", n.Value)
	}
	*s = Size(num * mult)
	return nil
}

// Error is one problem with a configuration file: file:line: path: message.
type Error = yamldiag.Error

// Errors is every problem found in one file, sorted by line. Load and
// Parse return it as their error so an operator fixes everything in one
// pass instead of one problem per reload.
type Errors = yamldiag.Errors
