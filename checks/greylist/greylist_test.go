package greylist

import (
	"testing"
	"time"

	"github.com/mxgate/mxgate/policy"
)

func TestNewPanics(t *testing.T) {
	tests := []struct {
		name  string
		store bool
		o     Options
	}{
		{"nil store", false, Options{}},
		{"delay not below the window", true, Options{Delay: time.Hour, RetryWindow: time.Hour}},
		{"negative delay", true, Options{Delay: -time.Minute}},
		{"negative allowance", true, Options{AllowFor: -time.Minute}},
		{"IPv4 prefix", true, Options{PrefixV4: 33}},
		{"IPv6 prefix", true, Options{PrefixV6: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			if tt.store {
				New(newMemStore(), tt.o)
			} else {
				New(nil, tt.o)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	g := New(newMemStore(), Options{})
	o := g.o
	if o.Delay != 5*time.Minute || o.RetryWindow != 48*time.Hour || o.AllowFor != 35*24*time.Hour || o.PrefixV4 != 24 || o.PrefixV6 != 64 || o.Now == nil {
		t.Errorf("defaults %+v", o)
	}
}

func TestFact(t *testing.T) {
	d, ok := policy.LookupFact("greylist")
	if !ok || d.Kind != policy.KindString || d.Stage != policy.StageRcpt || !d.PerRecipient {
		t.Errorf("fact greylist: %+v, %v", d, ok)
	}
	for _, s := range []State{StateNew, StateEarly, StatePassed, StateAllowed, StateSkipped, StateError} {
		if want := s == StateNew || s == StateEarly; s.Deferred() != want {
			t.Errorf("%s.Deferred() = %v", s, !want)
		}
	}
}
