package sdk

import (
	"slices"
	"testing"
	"time"
)

func TestDemand(t *testing.T) {
	d := NewDemand()
	defer d.close()
	var relA1, relA2 func()
	changed := func() bool {
		select {
		case <-d.Changed():
			return true
		default:
			return false
		}
	}
	steps := []struct {
		what    string
		do      func()
		want    []string
		changed bool
	}{
		{"nothing held", func() {}, nil, false},
		{"a viewer of a", func() { relA1 = d.Hold("a") }, []string{"a"}, true},
		{"a second viewer of a", func() { relA2 = d.Hold("a") }, []string{"a"}, false},
		{"the first leaves", func() { relA1() }, []string{"a"}, false},
		{"it leaves twice: no effect", func() { relA1() }, []string{"a"}, false},
		{"the last leaves", func() { relA2() }, nil, true},
		{"a still of b", func() { d.HoldFor("b", 150*time.Millisecond) }, []string{"b"}, true},
		{"another still of b", func() { d.HoldFor("b", 150*time.Millisecond) }, []string{"b"}, false},
	}
	for _, s := range steps {
		s.do()
		if got := d.Cameras(); !slices.Equal(got, s.want) {
			t.Errorf("%s: Cameras() = %v, want %v", s.what, got, s.want)
		}
		if got := changed(); got != s.changed {
			t.Errorf("%s: changed = %v, want %v", s.what, got, s.changed)
		}
	}
	// The still's hold ends by itself, and says so.
	select {
	case <-d.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("HoldFor's end was not signalled")
	}
	if d.Wants("b") || len(d.Cameras()) != 0 {
		t.Errorf("after HoldFor's time: Cameras() = %v", d.Cameras())
	}
	var nilDemand *Demand // outputs that did not opt in
	nilDemand.Hold("x")()
	nilDemand.HoldFor("x", time.Second)
}
