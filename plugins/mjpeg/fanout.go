package main

import (
	"slices"
	"sync"
)

// fanout sends each part to a feed's viewers from the goroutine that
// publishes it (the camera's HandleFrame): one writev per viewer that the
// socket takes whole without waiting, which is every viewer that keeps
// up. Waking each viewer's goroutine to write instead cost a goroutine
// switch per viewer and part, and with few viewers a thread wake-up: on a
// small machine more than the write itself. A viewer the fan-out cannot
// finish (its socket is full: a slow reader) is handed to its goroutine,
// which writes the rest waiting up to write_timeout, so a slow viewer
// still never holds up the others; viewers the fan-out cannot write to
// at all (TLS, HTTP/2, ?fps=) are only woken.
//
// Each viewer has its own wake-up channel with room for one signal, so a
// thousand woken at once do not contend for one (as they would for a
// shared channel closed per part, or a sync.Cond's lock), and a viewer
// busy writing finds the signal when it next waits.
type fanout struct {
	mu  sync.Mutex // held while publishing: a viewer removed is not written to after
	all []*viewer
}

// Who writes to a viewer's connection (viewer.state). Whoever moves it
// out of idle owns the connection and the viewer's part state until it
// stores another state.
const (
	idle       int32 = iota // nobody; the fan-out may
	fanning                 // the fan-out
	streaming               // the viewer's goroutine
	handedOver              // the fan-out left a part's rest (or its error) to the goroutine
)

func (o *fanout) add(v *viewer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all = append(o.all, v)
}

func (o *fanout) remove(v *viewer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i := slices.Index(o.all, v); i >= 0 {
		last := len(o.all) - 1
		o.all[i], o.all[last] = o.all[last], nil
		o.all = o.all[:last]
	}
}

// publish sends p to every viewer, or wakes those it cannot send it to.
func (o *fanout) publish(p *part) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range o.all {
		if v.direct == nil || !v.state.CompareAndSwap(idle, fanning) {
			wakeUp(v.wake) // its goroutine writes, now or when done
			continue
		}
		v.next(p)
		v.direct.begin(p)
		done, err := v.direct.try()
		if done {
			v.fd.sent.Add(1)
			v.state.Store(idle)
			continue
		}
		v.handoffErr = err
		p.hold() // for the goroutine; the feed holds p while this runs
		v.state.Store(handedOver)
		wakeUp(v.wake)
	}
}
