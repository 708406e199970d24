// Package rules holds the rule sets shipped with mxgate, embedded in the
// binary: default.yaml, loaded after the operator's own rules unless
// policy.default_rules is false, and examples to copy from. A test loads
// every file here.
package rules

import "embed"

// FS holds the shipped rule files.
//
//go:embed *.yaml
var FS embed.FS

// Default is the name of the default rule set in FS.
const Default = "default.yaml"
