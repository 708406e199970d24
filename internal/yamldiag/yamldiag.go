// Package yamldiag is what the configuration loader and the rule parser
// share to report problems in YAML files the same way: one error type
// formatted "file:line: path: message", "did you mean" hints, and how a
// node is described in "want X, got Y" messages.
package yamldiag

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a YAML file.
type Error struct {
	// File is the name the file was loaded under.
	File string
	// Line is 1-based; 0 when the problem has no single line (a required
	// key that is missing, an empty file).
	Line int
	// Path is the dotted key path with list indexes:
	// "listen[1].address", "policy.rules[2].if.any[1].helo".
	Path string
	// Msg says what is wrong and, where it helps, what was expected.
	Msg string
}

// Error formats the problem as "file:line: path: msg", leaving out ":line"
// when Line is 0 and "path: " when Path is empty, so editors and grep can
// jump to it.
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found, so an operator fixes them all in one pass
// instead of one per reload.
type Errors []Error

// Error returns one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Closest returns the known name nearest to name within edit distance 2,
// the usual size of a typo, or "": farther guesses mislead more than they
// help. Ties go to the name listed first.
func Closest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := EditDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b in bytes, with
// long inputs cut off, as no real typo needs more.
func EditDistance(a, b string) int {
	const maxLen = 64
	a, b = a[:min(len(a), maxLen)], b[:min(len(b), maxLen)]
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Describe names what the file had, for "want X, got Y" messages.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	v := Truncate(n.Value)
	switch n.ShortTag() {
	case "!!null":
		return "an empty value"
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return v
	}
	return strconv.Quote(v)
}

// Truncate shortens text from a file so a message stays one line.
func Truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Resolve follows an alias to the node it names (with a bound, against
// alias loops).
func Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is an empty value ("key:" with nothing after it).
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// DecodeScalar decodes one scalar with yaml.v3, which knows YAML's number
// spellings (0x1F, 1_000, .5), turning a library panic into an error: a bad
// file must never crash a reload.
func DecodeScalar(n *yaml.Node, ptr any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal decoder error: %v", r)
		}
	}()
	return n.Decode(ptr)
}

// JoinPath appends a key to a dotted key path.
func JoinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
