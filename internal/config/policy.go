package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/mxgate/mxgate/internal/yamldiag"
	// Every check's facts must be known to validate rules that name them.
	_ "github.com/mxgate/mxgate/checks/all"
	"github.com/mxgate/mxgate/policy"
	"github.com/mxgate/mxgate/rules"
)

// UnmarshalYAML keeps the rule list's node for the rule parser.
func (r *RuleList) UnmarshalYAML(n *yaml.Node) error {
	n = yamldiag.Resolve(n)
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("want a list of rules, got %s", yamldiag.Describe(n))
	}
	c := *n
	r.Node = &c
	return nil
}

// UnmarshalYAML reads a threshold: a number.
func (o *OptionalScore) UnmarshalYAML(n *yaml.Node) error {
	n = yamldiag.Resolve(n)
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
			*o = OptionalScore{Set: true, Value: f}
			return nil
		}
	}
	return fmt.Errorf("want a number, got %s", yamldiag.Describe(n))
}

func (o OptionalScore) ptr() *float64 {
	if !o.Set {
		return nil
	}
	return &o.Value
}

// compilePolicy parses every rule source, in the order they are evaluated
// (policy.rules, the included files, the built-in default set) and builds
// the engine, so that check-config and a reload see every rule problem at
// once, with its file and line.
func compilePolicy(file string, cfg *Config) Errors {
	p := &cfg.Policy
	var all []*policy.Rule
	var errs Errors
	add := func(rs []*policy.Rule, pe policy.Errors) {
		all = append(all, rs...)
		for _, e := range pe {
			errs = append(errs, Error(e))
		}
	}
	if p.Rules.Node != nil {
		add(policy.ParseRules(file, "policy.rules", p.Rules.Node))
	}
	for i, pattern := range p.Include {
		path := fmt.Sprintf("policy.include[%d]", i)
		glob := pattern
		if !filepath.IsAbs(glob) {
			glob = filepath.Join(filepath.Dir(file), glob)
		}
		matches, err := filepath.Glob(glob)
		if err != nil {
			errs = append(errs, Error{File: file, Path: path, Msg: fmt.Sprintf("bad glob %q: %v", pattern, err)})
			continue
		}
		if len(matches) == 0 {
			// A typo here would silently drop rules.
			errs = append(errs, Error{File: file, Path: path, Msg: fmt.Sprintf("%q matches no file", pattern)})
			continue
		}
		slices.Sort(matches)
		for _, m := range matches {
			data, err := os.ReadFile(m)
			if err != nil {
				errs = append(errs, Error{File: m, Msg: err.Error()})
				continue
			}
			add(ruleFile(m, data))
		}
	}
	if p.DefaultRules {
		data, err := rules.FS.ReadFile(rules.Default)
		if err != nil {
			panic(err) // embedded at build time
		}
		add(ruleFile("rules/"+rules.Default+" (built in)", data))
	}
	eng, pe := policy.NewEngine(all, policy.Options{
		Thresholds: policy.Thresholds{Tag: p.Thresholds.Tag.ptr(), Greylist: p.Thresholds.Greylist.ptr(), Reject: p.Thresholds.Reject.ptr()},
		Shadow:     p.Mode == "shadow",
	})
	for _, e := range pe {
		errs = append(errs, Error(e))
	}
	if len(errs) == 0 {
		p.Engine = eng
	}
	return errs
}

// ParseRuleFile parses a rule file: a list of rules, or a mapping whose
// "rules" key holds one. Used for included files and the shipped sets.
func ruleFile(name string, data []byte) ([]*policy.Rule, policy.Errors) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, policy.Errors{{File: name, Msg: err.Error()}}
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file has no rules
	}
	root := yamldiag.Resolve(doc.Content[0])
	path := "rules"
	if root.Kind == yaml.MappingNode {
		var seq *yaml.Node
		for i := 0; i+1 < len(root.Content); i += 2 {
			if k := root.Content[i]; k.Value == "rules" {
				seq = yamldiag.Resolve(root.Content[i+1])
			} else {
				return nil, policy.Errors{{File: name, Line: k.Line, Path: k.Value, Msg: `unknown key: a rule file holds a list of rules, or "rules:" with one`}}
			}
		}
		if seq == nil {
			return nil, nil
		}
		root = seq
	} else {
		path = ""
	}
	if root.Kind != yaml.SequenceNode {
		return nil, policy.Errors{{File: name, Line: root.Line, Path: path, Msg: "want a list of rules, got " + yamldiag.Describe(root)}}
	}
	return policy.ParseRules(name, path, root)
}
