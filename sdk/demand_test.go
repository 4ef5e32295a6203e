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
		// Holds far longer than any stall between two steps: they must
		// still hold at the next one.
		{"a still of b", func() { d.HoldFor("b", time.Hour) }, []string{"b"}, true},
		{"another still of b", func() { d.HoldFor("b", time.Hour) }, []string{"b"}, false},
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
	// A still's hold ends by itself, not before its time, and says so.
	const short = 100 * time.Millisecond
	held := time.Now()
	d.HoldFor("c", short)
	if !changed() {
		t.Errorf("a still of c: changed = false, want true")
	}
	select {
	case <-d.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("HoldFor's end was not signalled")
	}
	if held := time.Since(held); held < short {
		t.Errorf("HoldFor(%v) ended after %v", short, held)
	}
	if got := d.Cameras(); d.Wants("c") || !slices.Equal(got, []string{"b"}) {
		t.Errorf("after c's HoldFor time: Cameras() = %v, want [b]", got)
	}
	var nilDemand *Demand // outputs that did not opt in
	nilDemand.Hold("x")()
	nilDemand.HoldFor("x", time.Second)
}
