package yamldiag

import "testing"

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Path: "policy.rules[0].if.helo", Msg: "bad"}, "a.yaml:3: policy.rules[0].if.helo: bad"},
		{Error{File: "a.yaml", Path: "policy.rules", Msg: "bad"}, "a.yaml: policy.rules: bad"},
		{Error{File: "a.yaml", Line: 7, Msg: "bad"}, "a.yaml:7: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
	if got := (Errors{tests[0].e, tests[2].e}).Error(); got != tests[0].want+"\n"+tests[2].want {
		t.Errorf("Errors.Error() = %q", got)
	}
}

func TestClosest(t *testing.T) {
	known := []string{"connect", "command", "data", "final"}
	for in, want := range map[string]string{"conect": "connect", "CONNECT": "connect", "dta": "data", "fnal": "final", "xyzzy": "", "": ""} {
		if got := Closest(in, known); got != want {
			t.Errorf("Closest(%q) = %q, want %q", in, got, want)
		}
	}
}
