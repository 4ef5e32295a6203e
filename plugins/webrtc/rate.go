package main

import (
	"sync"
	"time"
)

const (
	// meterFrames and meterSpan bound the frames a rateMeter averages
	// over: about a second at 30 fps, never more than meterSpan back
	// (except that the last three frames always count, so a slow camera
	// is measured too).
	meterFrames = 32
	meterSpan   = time.Second
	// A gap this many times the recent interval, and longer than
	// meterPause, is a pause (the camera stalled), not a frame rate: the
	// measurement starts afresh after it.
	meterPauseRatio = 10
	meterPause      = time.Second
)

// rateMeter measures a camera's frame rate from the capture times of its
// live frames: the number of recent frames over the time they span. It is
// built to be steady, because an encoder is rebuilt when the rate moves:
// a pause or an outage is not counted as a rate, and after one the
// previous estimate stands until three new frames give a new one. Safe
// for concurrent use.
type rateMeter struct {
	mu    sync.Mutex
	times []time.Time // recent capture times, oldest first
	fps   float64     // the current estimate; 0 until the first
}

// observe records a live frame captured at t. Times that do not move
// forward (a duplicate, a clock step back) are ignored.
func (m *rateMeter) observe(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.times); n > 0 {
		last := m.times[n-1]
		if !t.After(last) {
			return
		}
		if n >= 2 {
			recent := last.Sub(m.times[0]) / time.Duration(n-1)
			if gap := t.Sub(last); gap > meterPause && gap > meterPauseRatio*recent {
				m.times = m.times[:0]
			}
		}
	}
	if len(m.times) == meterFrames {
		m.drop(1)
	}
	m.times = append(m.times, t)
	old := 0
	for len(m.times)-old > 3 && t.Sub(m.times[old]) > meterSpan {
		old++
	}
	m.drop(old)
	if n := len(m.times); n >= 3 {
		m.fps = float64(n-1) / t.Sub(m.times[0]).Seconds()
	}
}

// drop removes the oldest k times, keeping the slice's storage.
func (m *rateMeter) drop(k int) {
	m.times = m.times[:copy(m.times, m.times[k:])]
}

// restart forgets the recent frames but keeps the estimate: the camera
// was away (camd sent placeholders), and the time it was away is not a
// frame rate.
func (m *rateMeter) restart() {
	m.mu.Lock()
	m.times = m.times[:0]
	m.mu.Unlock()
}

// rate returns the estimate in frames per second, and whether there is
// one yet.
func (m *rateMeter) rate() (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fps, m.fps > 0
}
