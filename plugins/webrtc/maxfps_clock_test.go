package main

import (
	"testing"
	"time"

	"github.com/camd/camd/sdk"
)

// TestMaxFPSClockStep: max_fps paces frames by capture time, which is
// camd's wall clock; a step of that clock in either direction must
// neither freeze the video (every frame "too early" until the clock
// catches up) nor let a burst through.
func TestMaxFPSClockStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		step time.Duration
		// maxRun is the longest run of capped frames allowed after the
		// step: at 30 fps and max_fps 10 every third frame goes out.
		maxRun int
	}{
		{"normal pacing", 0, 2},
		{"step back an hour", -time.Hour, 2},
		{"step back a day", -24 * time.Hour, 2},
		{"step back 50ms", -50 * time.Millisecond, 4},
		{"step forward an hour", time.Hour, 2},
		{"step forward 50ms", 50 * time.Millisecond, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStepper(t, Config{Codec: "vp8", BitrateKbps: 500, KeyframeInterval: sdk.Duration(2 * time.Second), MaxFPS: 10})
			s.play([]segment{live(30, 2*time.Second)})
			before := len(s.out)
			s.clock = s.clock.Add(tc.step)
			s.play([]segment{live(30, 3*time.Second)})
			after := s.out[before:]
			var sent, run, longest int
			var last time.Time
			for i, r := range after {
				if !r.encoded {
					run++
					longest = max(longest, run)
					continue
				}
				run = 0
				sent++
				// Once past the step, frames go out 100 ms apart again.
				if d := r.at.Sub(last); i > 6 && !last.IsZero() && (d < 90*time.Millisecond || d > 110*time.Millisecond) {
					t.Errorf("frames sent %v apart at %v after the step", d, r.at.Sub(after[0].at))
				}
				last = r.at
			}
			if sent < 29 || sent > 31 {
				t.Errorf("after a clock step of %v, %d of %d live frames at 30 fps sent; want 30 at max_fps 10", tc.step, sent, len(after))
			}
			if longest > tc.maxRun {
				t.Errorf("after a clock step of %v, %d frames in a row capped; want at most %d", tc.step, longest, tc.maxRun)
			}
		})
	}
}
