package policy

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParseRules checks that no YAML makes ParseRules panic, that its
// result is a rule list or well-formed errors, and that any accepted rule
// set builds an engine that evaluates arbitrary facts without panicking
// and keeps its promises. A panic here would be a crash on SIGHUP.
func FuzzParseRules(f *testing.F) {
	for _, dir := range []string{"good", "bad"} {
		files, err := filepath.Glob(filepath.Join(testdata, dir, "*.yaml"))
		if err != nil || len(files) == 0 {
			f.Fatalf("no seeds in %s (%v)", dir, err)
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
		root := fuzzRoot(data)
		if root == nil {
			return
		}
		rules, errs := ParseRules("fuzz.yaml", "policy.rules", root)
		if errs != nil {
			checkErrors(t, rules, errs)
			return
		}
		opts := Options{Shadow: len(data)%2 == 1, Thresholds: Thresholds{Tag: f64(1), Greylist: f64(3), Reject: f64(6)}}
		e, errs := NewEngine(rules, opts)
		if errs != nil {
			t.Fatalf("NewEngine refused what ParseRules accepted: %v", errs)
		}
		for _, r := range rules {
			checkRule(t, r)
		}
		h := fnv.New64a()
		h.Write(data)
		evalRandom(t, e, rand.New(rand.NewPCG(h.Sum64(), 7)))
	})
}

// fuzzRoot decodes data and returns its "rules" value, or the whole
// document; nil when the YAML itself is bad (the YAML library's problem,
// caught with its panics, not ours).
func fuzzRoot(data []byte) (root *yaml.Node) {
	defer func() {
		if recover() != nil {
			root = nil
		}
	}()
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	root = doc.Content[0]
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "rules" {
				return root.Content[i+1]
			}
		}
	}
	return root
}

func checkErrors(t *testing.T, rules []*Rule, errs Errors) {
	if rules != nil {
		t.Fatalf("got rules and errors: %v", errs)
	}
	if len(errs) > maxErrors+1 {
		t.Fatalf("%d errors, want at most %d", len(errs), maxErrors+1)
	}
	for i, e := range errs {
		if e.File != "fuzz.yaml" || e.Msg == "" || e.Line < 0 {
			t.Fatalf("malformed error %#v", e)
		}
		capNote := i == len(errs)-1 && e.Line == 0
		if i > 0 && e.Line < errs[i-1].Line && !capNote {
			t.Fatalf("errors not sorted by line:\n%v", errs)
		}
	}
}

// checkRule checks what ParseRules promises about a rule it accepts.
func checkRule(t *testing.T, r *Rule) {
	if !ruleNameRE.MatchString(r.Name) || len(r.Name) > maxNameLen || r.If == nil || r.If.String() == "" {
		t.Fatalf("bad rule %+v", r)
	}
	if len(r.Facts) == 0 || !slices.IsSorted(r.Facts) || len(slices.Compact(slices.Clone(r.Facts))) != len(r.Facts) {
		t.Fatalf("rule %s: facts %v", r.Name, r.Facts)
	}
	latest := -1
	for _, name := range r.Facts {
		d, ok := LookupFact(name)
		if !ok {
			t.Fatalf("rule %s names unknown fact %q", r.Name, name)
		}
		latest = max(latest, stageIndex(d.Stage))
	}
	if stageIndex(r.Stage) != latest {
		t.Fatalf("rule %s: stage %s, facts %v", r.Name, r.Stage, r.Facts)
	}
	if r.Action == "" && r.Reply != nil {
		t.Fatalf("rule %s: reply without action", r.Name)
	}
	if r.Reply != nil && (r.Reply.Valid() != nil || r.Reply.Reason != ReasonRule) {
		t.Fatalf("rule %s: bad reply %+v", r.Name, r.Reply)
	}
}

// evalRandom runs a few transactions with random facts through e and
// checks the evaluation's invariants.
func evalRandom(t *testing.T, e *Engine, r *rand.Rand) {
	for range 4 {
		ev := e.NewEval()
		v := randomValues(r)
		for _, s := range []Stage{StageConnect, StageHelo, StageMail, StageRcpt, StageRcpt, StageData} {
			if s == StageRcpt {
				v.Set("rcpt", randomValue(r, KindAddress))
			}
			if o := ev.Stage(s, v); o != nil {
				if o.Stage != s || o.Reply == nil || o.Reply.Valid() != nil || o.Rule == "" {
					t.Fatalf("bad outcome %+v", o)
				}
				switch o.Action {
				case ActionReject, ActionTempfail, ActionDrop, ActionGreylist:
				default:
					t.Fatalf("outcome action %q", o.Action)
				}
			}
		}
		sum := 0.0
		for _, m := range ev.Matches {
			if !m.Shadow {
				sum += m.Score
			}
		}
		if sum != ev.Score {
			t.Fatalf("score %v, but the matches add up to %v", ev.Score, sum)
		}
	}
}

// FuzzValuesFromMap checks that any JSON object ValuesFromMap accepts
// survives Map, JSON and ValuesFromMap again unchanged: what a replay
// reads from a record is what the gateway evaluated.
func FuzzValuesFromMap(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		data, err := json.Marshal(randomValues(r).Map())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"client.ip":"::ffff:192.0.2.1","size":1e308,"test.set":[],"header.X-A":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		if dec.Decode(&m) != nil {
			return
		}
		v, err := ValuesFromMap(m)
		if err != nil {
			if v != nil {
				t.Fatalf("Values and an error: %v", err)
			}
			return
		}
		out, err := json.Marshal(v.Map())
		if err != nil {
			t.Fatalf("Map() of %s does not marshal: %v", data, err)
		}
		var m2 map[string]any
		if err := json.Unmarshal(out, &m2); err != nil {
			t.Fatal(err)
		}
		back, err := ValuesFromMap(m2)
		if err != nil || !reflect.DeepEqual(back.m, v.m) {
			t.Fatalf("round trip of %s through %s: %v\n got %#v\nwant %#v", data, out, err, back, v)
		}
	})
}
