package main

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
	"testing"
	"time"

	"github.com/camd/camd/sdk"
)

// stepper drives one run of a pipeline's encoder by hand: each frame is
// pushed and handled at once, and a single clock (capture times and the
// wall clock of the keyframe rate limit alike) moves only when a frame
// says so. What it checks does not depend on the machine's speed.
type stepper struct {
	t     *testing.T
	pl    *pipeline
	e     *frameEncoder
	clock time.Time
	seq   uint64
	out   []stepped // every frame handled, in order
}

// stepped is what became of one frame.
type stepped struct {
	at          time.Time
	placeholder bool
	encoded     bool
	key         bool
}

func newStepper(t *testing.T, cfg Config) *stepper {
	t.Helper()
	pl, err := newPipeline("cam", cfg, slogDiscard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &stepper{t: t, pl: pl, clock: time.Unix(1_700_000_000, 0)}
	s.e = newFrameEncoder(pl)
	s.e.now = func() time.Time { return s.clock }
	t.Cleanup(s.e.close)
	return s
}

// frame moves the clock on by gap and hands the pipeline one frame.
func (s *stepper) frame(jpg []byte, gap time.Duration, placeholder bool) stepped {
	s.clock = s.clock.Add(gap)
	s.seq++
	f := sdk.Frame{Camera: "cam", Seq: s.seq, Captured: s.clock, JPEG: jpg, Placeholder: placeholder}
	st := &s.pl.stats
	enc, keys := st.framesEncoded.Load(), st.keyframes.Load()
	s.pl.push(f)
	s.e.handle(f)
	r := stepped{at: s.clock, placeholder: placeholder, encoded: st.framesEncoded.Load() > enc, key: st.keyframes.Load() > keys}
	s.out = append(s.out, r)
	return r
}

// segment is a stretch of a camera's life: live frames at fps, camd's
// placeholders at 1 fps, or nothing at all (fps 0).
type segment struct {
	fps         float64
	d           time.Duration
	placeholder bool
	w, h        int // 0: 320x240
}

func live(fps float64, d time.Duration) segment { return segment{fps: fps, d: d} }
func offline(d time.Duration) segment           { return segment{fps: 1, d: d, placeholder: true} }
func pause(d time.Duration) segment             { return segment{d: d} }

// play hands the pipeline the segments' frames.
func (s *stepper) play(segs []segment) {
	s.t.Helper()
	for _, sg := range segs {
		if sg.fps == 0 {
			s.clock = s.clock.Add(sg.d)
			continue
		}
		w, h := sg.w, sg.h
		if w == 0 {
			w, h = 320, 240
		}
		var frames [][]byte
		if sg.placeholder {
			frames = [][]byte{placeholderJPEG(s.t, w, h)}
		} else {
			frames = simFrames(s.t, w, h, 10)
		}
		gap := time.Duration(float64(time.Second) / sg.fps)
		for i := range int(sg.d / gap) {
			s.frame(frames[i%len(frames)], gap, sg.placeholder)
		}
	}
}

// longestGap is the longest time between two frames of out that pass
// keep, from the first such frame on.
func longestGap(out []stepped, keep func(stepped) bool) time.Duration {
	var last time.Time
	var longest time.Duration
	for _, r := range out {
		if !keep(r) {
			continue
		}
		if !last.IsZero() {
			longest = max(longest, r.at.Sub(last))
		}
		last = r.at
	}
	return longest
}

// placeholderJPEG is a stand-in for camd's offline picture: flat, with a
// bright block where the text would be, the same every second.
func placeholderJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.RGBA{40, 40, 48, 255}), image.Point{}, draw.Src)
	draw.Draw(img, image.Rect(w/8, h/3, w*7/8, h/2), image.NewUniform(color.White), image.Point{}, draw.Src)
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestEncoderRetune: how many encoders a camera's history costs. An
// encoder is rebuilt for a new size, or for a frame rate that moved for
// good; never for camd's 1 fps placeholders, a rate that wobbles under
// load, or a stall. Throughout, viewers keep getting pictures (no gap of
// more than 2 s, placeholders included) and a keyframe at least every
// keyframe_interval, whatever the rate.
func TestEncoderRetune(t *testing.T) {
	s := time.Second
	tests := []struct {
		name     string
		segs     []segment
		encoders uint64  // started in all
		fps      float64 // the last one is tuned for this, ±10%
	}{
		{"steady 30 fps", []segment{live(30, 6*s)}, 1, 30},
		{"a 10 fps camera: measured, then one retune", []segment{live(10, 10*s)}, 2, 10},
		{"rate drops for good: one retune", []segment{live(30, 4*s), live(10, 12*s)}, 2, 10},
		{"outage: 1 fps placeholders, then live again", []segment{live(30, 4*s), offline(20 * s), live(30, 6*s)}, 1, 30},
		{"flapping device", []segment{
			live(30, 4*s), offline(3 * s), live(30, 4*s), offline(3 * s), live(30, 4*s), offline(3 * s), live(30, 4*s), offline(3 * s), live(30, 4*s),
		}, 1, 30},
		{"a rate that wobbles under load", []segment{
			live(30, 3*s), live(15, 2*s), live(30, 3*s), live(15, 2*s), live(30, 3*s),
		}, 1, 30},
		{"a stall shorter than offline_after", []segment{live(30, 3*s), pause(1500 * time.Millisecond), live(30, 5*s)}, 1, 30},
		{"never seen (640x480 placeholders), then 320x240 at 10 fps: new size, then rate", []segment{
			{fps: 1, d: 5 * s, placeholder: true, w: 640, h: 480}, live(10, 8*s),
		}, 3, 10},
	}
	for _, codec := range codecNames() {
		for _, tt := range tests {
			t.Run(codec+"/"+tt.name, func(t *testing.T) {
				st := newStepper(t, Config{Codec: codec, BitrateKbps: 800, KeyframeInterval: sdk.Duration(2 * time.Second)})
				st.play(tt.segs)
				stats := &st.pl.stats
				if n := stats.encodersStarted.Load(); n != tt.encoders {
					t.Errorf("encoders started: %d, want %d", n, tt.encoders)
				}
				if fps := math.Float64frombits(stats.encoderFPS.Load()); math.Abs(fps-tt.fps) > tt.fps/10 {
					t.Errorf("last encoder tuned for %.1f fps, want %v", fps, tt.fps)
				}
				if peak := stats.encodersPeak.Load(); peak != 1 {
					t.Errorf("encoders running at once: up to %d, want 1", peak)
				}
				if g := longestGap(st.out, func(r stepped) bool { return r.encoded }); g > 2*time.Second {
					t.Errorf("viewers went %v without a frame", g)
				}
				// 1 fps placeholders land a keyframe within a second of due.
				if g := longestGap(st.out, func(r stepped) bool { return r.key }); g > 3*time.Second {
					t.Errorf("%v between keyframes, want about keyframe_interval (2s)", g)
				}
				st.e.closeEncoder()
				if n := stats.encodersRunning.Load(); n != 0 {
					t.Errorf("encoders running after close: %d", n)
				}
			})
		}
	}
}

// TestRateMeter: the measured rate of a camera, from capture times.
func TestRateMeter(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		segs []segment
		want float64 // 0: no estimate
	}{
		{"nothing yet", nil, 0},
		{"two frames are not a rate", []segment{live(30, 2*s/30)}, 0},
		{"30 fps", []segment{live(30, 2*s)}, 30},
		{"10 fps", []segment{live(10, 5*s)}, 10},
		{"a slow camera: 0.5 fps", []segment{live(0.5, 6*s)}, 0.5},
		{"30 then 10 fps: a second of the new rate is enough", []segment{live(30, 5*s), live(10, s)}, 10},
		{"a pause is not a rate", []segment{live(30, 3*s), pause(1500 * time.Millisecond), live(30, s/3)}, 30},
		{"just after a pause the old rate stands", []segment{live(30, 3*s), pause(5 * s), live(5, s/5)}, 30},
		{"placeholders restart it but keep the estimate", []segment{live(30, 3*s), offline(10 * s), live(10, s/10)}, 30},
		{"and a new rate takes over after three frames", []segment{live(30, 3*s), offline(10 * s), live(10, s/3)}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m rateMeter
			clock := time.Unix(1_700_000_000, 0)
			for _, sg := range tt.segs {
				if sg.fps == 0 {
					clock = clock.Add(sg.d)
					continue
				}
				gap := time.Duration(float64(time.Second) / sg.fps)
				for range int(sg.d / gap) {
					clock = clock.Add(gap)
					if sg.placeholder {
						m.restart()
					} else {
						m.observe(clock)
					}
				}
			}
			got, ok := m.rate()
			if ok != (tt.want > 0) || math.Abs(got-tt.want) > tt.want/20 {
				t.Fatalf("rate %.2f (known %v), want %v", got, ok, tt.want)
			}
		})
	}
	t.Run("times that do not move forward are ignored", func(t *testing.T) {
		var m rateMeter
		t0 := time.Unix(1_700_000_000, 0)
		for i := range 30 {
			at := t0.Add(time.Duration(i) * time.Second / 30)
			m.observe(at)
			m.observe(at)                       // a duplicate
			m.observe(at.Add(-5 * time.Second)) // a clock step back
		}
		if got, _ := m.rate(); math.Abs(got-30) > 1 {
			t.Fatalf("rate %.2f, want 30", got)
		}
	})
}

// TestKeyframeRequests: a burst of PLIs gives a keyframe every keyGap, not
// more often and not later; a viewer connecting gets one at once, even
// right after another keyframe; viewers joining with every frame get one
// per keyGap (a join loop cannot make every frame a keyframe); a PLI right
// after a keyframe waits out keyGap and is then honoured.
func TestKeyframeRequests(t *testing.T) {
	// A long keyframe interval: every keyframe here was asked for.
	s := newStepper(t, Config{Codec: "vp8", BitrateKbps: 500, KeyframeInterval: sdk.Duration(time.Minute)})
	frames := simFrames(t, 160, 120, 10)
	gap := time.Second / 30
	next := func() stepped { return s.frame(frames[s.seq%10], gap, false) }
	if !next().key {
		t.Fatal("the first frame is not a keyframe")
	}
	for range 10 {
		if next().key {
			t.Fatal("a keyframe nobody asked for")
		}
	}

	for range 60 { // a PLI with every frame for 2 s
		s.pl.requestKey()
		next()
	}
	var keys []time.Time // the first keyframe, then the burst's
	for _, r := range s.out {
		if r.key {
			keys = append(keys, r.at)
		}
	}
	if len(keys) < 4 {
		t.Fatalf("a 2 s PLI burst gave %d keyframes, want one per %v", len(keys)-1, keyGap)
	}
	for i := 1; i < len(keys); i++ {
		if d := keys[i].Sub(keys[i-1]); d < keyGap || d > keyGap+gap {
			t.Fatalf("keyframes %v apart in a PLI burst, want the first frame after %v", d, keyGap)
		}
	}

	for range 30 { // requests settled
		next()
	}
	s.pl.viewerConnected()
	if !next().key {
		t.Fatal("no keyframe at once for a new viewer")
	}
	for range 30 { // a join with every frame for 1 s
		s.pl.viewerConnected()
		next()
	}
	keys = nil
	for _, r := range s.out[len(s.out)-31:] {
		if r.key {
			keys = append(keys, r.at)
		}
	}
	if len(keys) < 2 || len(keys) > 3 {
		t.Fatalf("viewers joining for 1 s gave %d keyframes, want one per %v", len(keys), keyGap)
	}
	for i := 1; i < len(keys); i++ {
		if d := keys[i].Sub(keys[i-1]); d < keyGap || d > keyGap+gap {
			t.Fatalf("keyframes %v apart while viewers join, want the first frame after %v", d, keyGap)
		}
	}
	for range 30 { // settled
		next()
	}
	s.pl.viewerConnected()
	if !next().key {
		t.Fatal("no keyframe at once for a viewer joining after the others")
	}
	s.pl.requestKey()
	var waited time.Duration
	for {
		waited += gap
		r := next()
		if r.key && waited < keyGap {
			t.Fatalf("a PLI %v after a keyframe was not deferred", waited)
		}
		if r.key {
			break
		}
		if waited > keyGap+gap {
			t.Fatalf("a deferred PLI still had no keyframe after %v", waited)
		}
	}
}

// TestMaxFPS: max_fps drops live frames by capture time, evenly, and
// never drops placeholders.
func TestMaxFPS(t *testing.T) {
	s := newStepper(t, Config{Codec: "vp8", BitrateKbps: 500, KeyframeInterval: sdk.Duration(2 * time.Second), MaxFPS: 10})
	s.play([]segment{live(30, 3*time.Second), offline(5 * time.Second), live(30, 3*time.Second)})
	var sent, capped int
	var last time.Time // the last live frame sent since the last placeholder
	for _, r := range s.out {
		switch {
		case r.placeholder && !r.encoded:
			t.Fatalf("placeholder at %v was not encoded", r.at)
		case r.placeholder:
			last = time.Time{}
		case r.encoded:
			sent++
			// Every third frame: 100 ms, never 67 or 133.
			if d := r.at.Sub(last); !last.IsZero() && (d < 90*time.Millisecond || d > 110*time.Millisecond) {
				t.Fatalf("live frames sent %v apart at max_fps 10", d)
			}
			last = r.at
		default:
			capped++
		}
	}
	if sent < 58 || sent > 62 || capped != 180-sent {
		t.Fatalf("of 180 live frames at 30 fps, %d sent and %d capped; want 60 sent at max_fps 10", sent, capped)
	}
	if n := s.pl.stats.framesCapped.Load(); n != uint64(capped) {
		t.Fatalf("frames_capped = %d, want %d", n, capped)
	}
}

// TestKeyframeIntervalAfterClockStep: keyframe_interval counts capture
// time; when the clock steps back, the interval starts over at the next
// frame (a keyframe), rather than waiting for the clock to catch up with
// the last keyframe's time, and no burst of keyframes follows.
func TestKeyframeIntervalAfterClockStep(t *testing.T) {
	s := newStepper(t, Config{Codec: "vp8", BitrateKbps: 500, KeyframeInterval: sdk.Duration(time.Minute)})
	frames := simFrames(t, 160, 120, 10)
	gap := time.Second / 30
	if !s.frame(frames[0], gap, false).key {
		t.Fatal("the first frame is not a keyframe")
	}
	for i := range 10 {
		s.frame(frames[i%10], gap, false)
	}
	if !s.frame(frames[1], -time.Hour, false).key {
		t.Fatal("the first frame after the clock stepped back an hour is not a keyframe")
	}
	for i := range 30 {
		if s.frame(frames[i%10], gap, false).key {
			t.Fatalf("frame %d after the step is a keyframe too", i+1)
		}
	}
}
