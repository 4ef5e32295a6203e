package sdk

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Demand is the set of cameras an output wants frames of now. camd sends
// frames only of wanted cameras and lets a camera configured with
// `on_demand: true` sleep (disconnected from its device) while no output
// wants it, so an idle output costs nothing and a board nobody watches
// stays cool.
//
// An output opts in with Info.OnDemand. Then every viewer slot taken with
// HTTP.Acquire wants the camera of its request's path (/cameras/<camera>/)
// until it is released, and the output holds whatever else it needs with
// Hold (a timelapse) or HoldFor (a still: the next ones are instant). An
// output that does not opt in wants all its cameras all the time.
type Demand struct {
	mu      sync.Mutex
	holds   map[string]int
	until   map[string]time.Time   // HoldFor's deadlines
	timers  map[string]*time.Timer // one per camera with a deadline
	closed  bool
	changed chan struct{} // signalled when Cameras may have changed
}

// NewDemand returns an empty Demand.
func NewDemand() *Demand {
	return &Demand{holds: map[string]int{}, until: map[string]time.Time{}, timers: map[string]*time.Timer{}, changed: make(chan struct{}, 1)}
}

// Hold wants camera until release is called; release may be called more
// than once. Holds of one camera add up.
func (d *Demand) Hold(camera string) (release func()) {
	if d == nil {
		return func() {}
	}
	d.mu.Lock()
	d.holds[camera]++
	first := d.holds[camera] == 1 && !d.timedLocked(camera, time.Now())
	d.mu.Unlock()
	if first {
		d.signal()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			d.holds[camera]--
			last := d.holds[camera] == 0 && !d.timedLocked(camera, time.Now())
			if d.holds[camera] == 0 {
				delete(d.holds, camera)
			}
			d.mu.Unlock()
			if last {
				d.signal()
			}
		})
	}
}

// HoldFor wants camera for dur from now, or longer if already held longer.
func (d *Demand) HoldFor(camera string, dur time.Duration) {
	if d == nil {
		return
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	wasWanted := d.holds[camera] > 0 || d.timedLocked(camera, now)
	if u := now.Add(dur); u.After(d.until[camera]) {
		d.until[camera] = u
	}
	if _, ok := d.timers[camera]; !ok {
		d.timers[camera] = time.AfterFunc(dur, func() { d.expire(camera) })
	}
	if !wasWanted {
		d.signal()
	}
}

// expire ends camera's HoldFor once its deadline passed, or waits again
// for a deadline moved later meanwhile.
func (d *Demand) expire(camera string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if left := time.Until(d.until[camera]); left > 0 {
		d.timers[camera].Reset(left)
		return
	}
	delete(d.until, camera)
	delete(d.timers, camera)
	if d.holds[camera] == 0 {
		d.signal()
	}
}

func (d *Demand) timedLocked(camera string, now time.Time) bool {
	return d.until[camera].After(now)
}

// Wants reports whether camera is wanted now.
func (d *Demand) Wants(camera string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.holds[camera] > 0 || d.timedLocked(camera, time.Now())
}

// Cameras returns the wanted cameras, sorted.
func (d *Demand) Cameras() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var out []string
	for c, n := range d.holds {
		if n > 0 {
			out = append(out, c)
		}
	}
	for c := range d.until {
		if d.timedLocked(c, now) && d.holds[c] == 0 {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// Changed is signalled (and holds one signal) when Cameras may have changed.
func (d *Demand) Changed() <-chan struct{} { return d.changed }

func (d *Demand) signal() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// close stops HoldFor's timers.
func (d *Demand) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, t := range d.timers {
		t.Stop()
	}
}

type demandKey struct{}

// WithDemand returns ctx carrying d, as the context given to Start does
// for an output with Info.OnDemand; HTTP.Listen reads it from there.
func WithDemand(ctx context.Context, d *Demand) context.Context {
	return context.WithValue(ctx, demandKey{}, d)
}

// DemandFrom returns the Demand in ctx, or nil.
func DemandFrom(ctx context.Context) *Demand {
	d, _ := ctx.Value(demandKey{}).(*Demand)
	return d
}
