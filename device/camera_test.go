package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// A device killed and restored: frames resume promptly after its return
// in both esp32 modes, placeholders (sized like the camera's frames) fill
// each outage and only outages, each outage is logged once at WARN and
// each return once at INFO, and camd never holds two connections to the
// board. (TestReconnectPolicy pins the probing cadence down; this checks
// it over real sockets, with slack for a busy machine.)
func TestOutageRecovery(t *testing.T) {
	const (
		cycles       = 2
		downFor      = 3 * time.Second
		offlineAfter = 500 * time.Millisecond
		// Frames resume within probeMax of the return, plus a request;
		// the rest is slack for a loaded machine.
		maxRecovery = 2500 * time.Millisecond
	)
	for _, mode := range []string{"capture", "stream"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dev := newFlakyDevice(t, 320, 240)
			src, err := New(SourceConfig{Type: "esp32", Mode: mode, URL: dev.url(""), FPS: 25})
			if err != nil {
				t.Fatal(err)
			}
			r := start(t, &Camera{Name: "esp", Source: src, OfflineAfter: offlineAfter})
			waitFor(t, 10*time.Second, "first frame", func() bool { return r.cam.Stats().State == StateLive })

			for cycle := range cycles {
				down := time.Now()
				dev.down()
				waitFor(t, 10*time.Second, "offline, with a placeholder", func() bool {
					_, ok := r.rec.firstAfter(down, placeholderF)
					st := r.cam.Stats()
					return ok && st.State == StateOffline && strings.Contains(st.Reason, "nothing accepts connections")
				})
				time.Sleep(time.Until(down.Add(downFor)))
				back := time.Now()
				dev.up()
				var first recorded
				waitFor(t, 10*time.Second, "a live frame after the return", func() bool {
					var ok bool
					first, ok = r.rec.firstAfter(back, live)
					return ok
				})
				d := first.at.Sub(back)
				if d > maxRecovery {
					t.Errorf("cycle %d: frames resumed %v after the device returned, want ≤ %v", cycle, d, maxRecovery)
				}
				t.Logf("cycle %d: frames resumed %v after the device returned", cycle, d.Round(time.Millisecond))
				time.Sleep(time.Second)
			}
			r.stop()

			// Over the whole run: one gapless sequence; a placeholder only
			// when no good frame came for OfflineAfter, sized like the
			// camera's frames; one WARN per run of placeholders (an outage)
			// and one INFO per return.
			var (
				lastLive         recorded
				outages, returns int
			)
			frames := r.rec.snapshot()
			for i, f := range frames {
				if f.Seq != uint64(i+1) {
					t.Fatalf("frame %d has Seq %d: real frames and placeholders share one gapless sequence", i, f.Seq)
				}
				if !f.Placeholder {
					if i > 0 && frames[i-1].Placeholder {
						returns++
					}
					lastLive = f
					continue
				}
				if i == 0 || !frames[i-1].Placeholder {
					outages++
				}
				// The recorder notes a frame's time a moment after Camera
				// does: hence the tolerance.
				if d := f.at.Sub(lastLive.at); d < offlineAfter-100*time.Millisecond {
					t.Errorf("placeholder %d came %v after the last good frame, want ≥ OfflineAfter (%v)", f.Seq, d, offlineAfter)
				}
				img, err := jpeg.Decode(bytes.NewReader(f.JPEG))
				if err != nil {
					t.Fatalf("placeholder %d does not decode: %v", f.Seq, err)
				}
				if b := img.Bounds(); b.Dx() != 320 || b.Dy() != 240 || f.Width != 320 || f.Height != 240 {
					t.Fatalf("placeholder %d is %v (says %dx%d), want the camera's 320x240", f.Seq, b, f.Width, f.Height)
				}
			}
			if outages < cycles || returns < cycles {
				t.Errorf("%d runs of placeholders and %d returns from them in %d outages", outages, returns, cycles)
			}
			if n := r.log.count("WARN", "camera offline"); n != outages {
				t.Errorf("%d WARN lines about going offline, %d outages: want one each", n, outages)
			}
			if n := r.log.count("INFO", "camera live again"); n != returns {
				t.Errorf("%d INFO lines about returning, %d returns: want one each", n, returns)
			}
			if n := r.log.count("INFO", "camera live"); n != 1 {
				t.Errorf("%d INFO lines about the first frame, want 1", n)
			}
			if st := r.cam.Stats(); st.Reconnects < cycles || st.Dropped != 0 || st.Placeholders != uint64(countIf(frames, placeholderF)) {
				t.Errorf("stats after the outages: %+v", st)
			}
		})
	}
}

func countIf(fs []recorded, pred func(recorded) bool) int {
	n := 0
	for _, f := range fs {
		if pred(f) {
			n++
		}
	}
	return n
}

// scripted is a Source and Prober whose behaviour a test scripts. It
// records when each Stream and Probe call started and when each Stream
// returned.
type scripted struct {
	stream func(ctx context.Context, n int, emit func(RawFrame) bool) error
	probe  func(n int) error

	mu                    sync.Mutex
	streams, ends, probes []time.Time
}

func (s *scripted) Stream(ctx context.Context, emit func(RawFrame) bool) error {
	s.mu.Lock()
	n := len(s.streams)
	s.streams = append(s.streams, time.Now())
	s.mu.Unlock()
	err := s.stream(ctx, n, emit)
	s.mu.Lock()
	s.ends = append(s.ends, time.Now())
	s.mu.Unlock()
	return err
}

func (s *scripted) Probe(ctx context.Context) error {
	s.mu.Lock()
	n := len(s.probes)
	s.probes = append(s.probes, time.Now())
	s.mu.Unlock()
	return s.probe(n)
}

func (s *scripted) calls() (streams, ends, probes []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.streams), slices.Clone(s.ends), slices.Clone(s.probes)
}

// noProbe hides a scripted source's Probe.
type noProbe struct{ s *scripted }

func (n noProbe) Stream(ctx context.Context, emit func(RawFrame) bool) error {
	return n.s.Stream(ctx, emit)
}

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80},
	Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

// frames emits good frames every 20 ms, n of them (or until ctx ends if n
// is 0), then returns err.
func frames(ctx context.Context, emit func(RawFrame) bool, n int, err error) error {
	sim := NewSim(160, 120, 1, 50)
	for i := 1; n == 0 || i <= n; i++ {
		b, _ := sim.Frame(uint64(i), time.Now())
		emit(RawFrame{JPEG: b, Captured: time.Now()})
		if !sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
	return err
}

func gaps(ts []time.Time) []time.Duration {
	var g []time.Duration
	for i := 1; i < len(ts); i++ {
		g = append(g, ts[i].Sub(ts[i-1]))
	}
	return g
}

// How Camera retries: it probes a device that cannot be reached and
// reconnects as soon as a probe gets through; it backs off, doubling, from
// a device that answers but fails and from a stream that keeps ending
// after a frame or two, and starts over after a stream that worked for
// StableAfter.
//
// Each case runs in a synctest bubble: its clock is virtual and moves only
// while every goroutine of the case waits, so the waits measured are
// Camera's own, exactly, however loaded the machine is.
func TestReconnectPolicy(t *testing.T) {
	const minRetry, maxRetry = 50 * time.Millisecond, 400 * time.Millisecond
	// atOnce bounds a reconnection or probe "at once": sooner than any
	// backoff (0.8 × minRetry at least) or probe interval (probeMin).
	const atOnce = minRetry * 8 / 10
	// A stream that works for stableAfter: 10 frames 20 ms apart span
	// 180 ms or more.
	const stableAfter, stableFrames = 100 * time.Millisecond, 10
	ended := answered(fmt.Errorf("GET x: stream ended: %w", io.EOF))
	statusErr := answered(&StatusError{URL: "http://cam/capture", Code: 503, Status: "503 Service Unavailable"})
	// backoffGaps checks the waits between Stream calls: each at least
	// 0.8 × (minRetry doubling to maxRetry), the jitter's low end.
	backoffGaps := func(t *testing.T, streams []time.Time, from time.Duration) {
		want := from
		for i, g := range gaps(streams) {
			if g < want*8/10 {
				t.Errorf("wait %d was %v, want ≥ %v (backoff %v)", i, g, want*8/10, want)
			}
			want = min(2*want, maxRetry)
		}
	}
	for _, tc := range []struct {
		name   string
		src    *scripted
		probes bool // the source can probe
		// minRetry, if set, replaces the table's first backoff: a long
		// one makes "no backoff" checkable without timing luck.
		minRetry time.Duration
		until    func(streams, probes int) bool
		check    func(t *testing.T, streams, ends, probes []time.Time)
	}{{
		name: "unreachable: probes until it answers, then one real connection",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				if n == 0 {
					return errRefused
				}
				return frames(ctx, emit, 0, nil)
			},
			probe: func(n int) error {
				if n < 4 {
					return errRefused
				}
				return nil
			},
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 2 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			if len(streams) != 2 || len(probes) != 5 {
				t.Fatalf("%d connections and %d probes, want 2 and 5", len(streams), len(probes))
			}
			if d := probes[0].Sub(ends[0]); d < probeMin {
				t.Errorf("first probe %v after a refused connection, want ≥ %v", d, probeMin)
			}
			for i, g := range gaps(probes) {
				if g < probeMin || g > probeMax {
					t.Errorf("probe interval %d was %v, want %v–%v", i, g, probeMin, probeMax)
				}
			}
			if streams[1].Before(probes[4]) { // in the bubble, at once is at the same instant
				t.Errorf("reconnected before the probe that got through")
			}
		},
	}, {
		name: "connection lost after it worked: probes at once, reconnects",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				if n == 0 {
					return frames(ctx, emit, stableFrames, answered(fmt.Errorf("GET x: %w", io.ErrUnexpectedEOF)))
				}
				return frames(ctx, emit, 0, nil)
			},
			probe: func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 2 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			if len(probes) != 1 {
				t.Fatalf("%d probes, want 1", len(probes))
			}
			if d := probes[0].Sub(ends[0]); d >= atOnce {
				t.Errorf("first probe %v after losing a working connection, want at once (< %v)", d, atOnce)
			}
		},
	}, {
		name: "answers but fails: backs off, never probes",
		src: &scripted{
			stream: func(context.Context, int, func(RawFrame) bool) error { return statusErr },
			probe:  func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 6 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			if len(probes) != 0 {
				t.Errorf("%d probes of a device that answers", len(probes))
			}
			backoffGaps(t, streams, minRetry)
		},
	}, {
		name: "a stream that worked resets the backoff",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				if n == 4 {
					return frames(ctx, emit, stableFrames, statusErr)
				}
				return statusErr
			},
			probe: func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 7 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			// Waits 50, 100, 200, 400; then frames; then 50 again (not
			// 400, which is 320 ms at least).
			if d := streams[5].Sub(ends[4]); d > minRetry*12/10 {
				t.Errorf("waited %v after a stream with good frames, want the first backoff (%v ±20%%)", d, minRetry)
			}
			if d := streams[6].Sub(ends[5]); d < 2*minRetry*8/10 {
				t.Errorf("waited %v after the next failure, want the backoff doubling again from %v", d, minRetry)
			}
		},
	}, {
		name: "a stream that ends after a frame, every time: backs off",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				return frames(ctx, emit, 1, ended)
			},
			probe: func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 6 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			backoffGaps(t, streams, minRetry)
		},
	}, {
		name: "a stream cut after a frame, every time: backs off",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				return frames(ctx, emit, 1, answered(fmt.Errorf("GET x: %w: part body: %w", ErrBadMultipart, io.ErrUnexpectedEOF)))
			},
			probe: func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 6 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			backoffGaps(t, streams, minRetry)
		},
	}, {
		name: "short streams do not reset the backoff",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				if n%2 == 1 {
					return frames(ctx, emit, 2, statusErr)
				}
				return statusErr
			},
			probe: func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 6 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			backoffGaps(t, streams, minRetry)
		},
	}, {
		name: "a stream that worked, then short ones: at once, then backs off",
		src: &scripted{
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				if n == 0 {
					return frames(ctx, emit, stableFrames, ended)
				}
				return frames(ctx, emit, 1, ended)
			},
			probe: func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 6 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			if d := streams[1].Sub(ends[0]); d >= atOnce {
				t.Errorf("reconnected %v after a stream that worked ended, want at once (< %v)", d, atOnce)
			}
			backoffGaps(t, streams[1:], minRetry)
		},
	}, {
		name: "short streams between outages: back at once each time",
		src: &scripted{
			// A board up for a frame or two between outages: after each
			// stream, one probe finds it gone, the next one back.
			stream: func(ctx context.Context, n int, emit func(RawFrame) bool) error {
				return frames(ctx, emit, 2, ended)
			},
			probe: func(n int) error {
				if n%2 == 0 {
					return errRefused
				}
				return nil
			},
		},
		probes: true,
		// Backing off would wait at least 8 s before each reconnect.
		minRetry: 10 * time.Second,
		until:    func(streams, probes int) bool { return streams == 4 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			for i := 1; i < len(streams); i++ {
				back := probes[2*i-1] // the probe that found it back
				if d := streams[i].Sub(back); d < 0 || d >= 5*time.Second {
					t.Errorf("connection %d came %v after the probe that found the device back: it backed off", i, d)
				}
			}
		},
	}, {
		name: "probe passes but connections fail: paced by the probes",
		src: &scripted{
			stream: func(context.Context, int, func(RawFrame) bool) error { return errRefused },
			probe:  func(int) error { return nil },
		},
		probes: true,
		until:  func(streams, probes int) bool { return streams == 5 },
		check: func(t *testing.T, streams, ends, probes []time.Time) {
			for i, g := range gaps(streams) {
				if g < probeMin {
					t.Errorf("connection %d came %v after the previous one, want ≥ %v", i+1, g, probeMin)
				}
			}
		},
	}, {
		name: "a source that cannot probe backs off",
		src: &scripted{
			stream: func(context.Context, int, func(RawFrame) bool) error { return errRefused },
		},
		until: func(streams, probes int) bool { return streams == 5 },
		check: func(t *testing.T, streams, ends, probes []time.Time) { backoffGaps(t, streams, minRetry) },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var src Source = tc.src
				if !tc.probes {
					src = noProbe{tc.src}
				}
				first, most := minRetry, maxRetry
				if tc.minRetry > 0 {
					first, most = tc.minRetry, 2*tc.minRetry
				}
				r := start(t, &Camera{Name: "c", Source: src, MinRetry: first, MaxRetry: most, StableAfter: stableAfter})
				waitFor(t, 20*time.Second, "the scripted calls", func() bool {
					s, _, p := tc.src.calls()
					return tc.until(len(s), len(p))
				})
				time.Sleep(300 * time.Millisecond) // to see that nothing else happens
				r.stop()
				streams, ends, probes := tc.src.calls()
				tc.check(t, streams, ends, probes)
			})
		})
	}
}

// A device whose stream ends after a frame, every time (one part per
// request, a server that cuts streams): camd reconnects with a growing
// backoff, not in a tight loop, and the camera's reason says the stream
// keeps ending.
func TestStreamThatKeepsEnding(t *testing.T) {
	const watch = 3 * time.Second
	good := testJPEG(t)
	part := fmt.Sprintf("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(good), good)
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request)
	}{
		{"one part, then the closing delimiter", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
			io.WriteString(w, part+"--frame--\r\n")
		}},
		{"one part, then the connection closes", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			io.WriteString(conn, "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n"+part)
		}},
		{"one part, then half of the next", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
			io.WriteString(w, part+part[:len(part)/2])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				tc.serve(w, r)
			}))
			defer srv.Close()
			r := start(t, &Camera{Name: "c", Source: NewMJPEG(srv.URL), OfflineAfter: 300 * time.Millisecond})
			waitFor(t, 10*time.Second, "a frame", func() bool { return r.cam.Stats().Frames > 0 })
			time.Sleep(watch)
			// The backoff (250 ms, doubling) allows about 5; without it
			// the loop made thousands.
			n := requests.Load()
			if n >= 50 {
				t.Errorf("%d requests in %v to a device whose stream ends after a frame: reconnecting without backoff", n, watch)
			}
			t.Logf("%d requests in %v", n, watch)
			waitFor(t, 15*time.Second, "the reason to say the stream keeps ending", func() bool {
				st := r.cam.Stats()
				return st.State == StateFailing && strings.Contains(st.Reason, "stream keeps ending")
			})
			if st := r.cam.Stats(); st.Frames < 2 {
				t.Errorf("%d frames: the device was not retried", st.Frames)
			}
		})
	}
}

// What state a camera is in, and why, for each way a device can fail.
func TestStates(t *testing.T) {
	closedURL := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return "http://" + ln.Addr().String()
	}
	for _, tc := range []struct {
		name     string
		mode     string
		setup    func(t *testing.T, d *flakyDevice) (url string)
		maxBytes int
		state    State
		reason   string     // in Stats.Reason
		drop     DropReason // counted, if reason says bad frames
	}{
		{name: "live", mode: "capture", state: StateLive},
		{name: "live stream", mode: "stream", state: StateLive},
		{name: "never reachable", mode: "capture", setup: func(t *testing.T, _ *flakyDevice) string { return closedURL(t) },
			state: StateOffline, reason: "nothing accepts connections at 127.0.0.1:"},
		{name: "never reachable stream", mode: "stream", setup: func(t *testing.T, _ *flakyDevice) string { return closedURL(t) },
			state: StateOffline, reason: "nothing accepts connections at 127.0.0.1:"},
		{name: "wrong token", mode: "capture", setup: func(t *testing.T, d *flakyDevice) string { d.status.Store(401); return "" },
			state: StateFailing, reason: "refused access (HTTP 401 Unauthorized): check the user and password in url, or the camera's token"},
		{name: "busy", mode: "stream", setup: func(t *testing.T, d *flakyDevice) string { d.status.Store(503); return "" },
			state: StateFailing, reason: "busy (HTTP 503 Service Unavailable)"},
		{name: "not a stream", mode: "stream", setup: func(t *testing.T, d *flakyDevice) string { return d.url("/page") },
			state: StateFailing, reason: "not with an MJPEG stream"},
		{name: "only truncated frames", mode: "capture", setup: func(t *testing.T, d *flakyDevice) string { d.corrupt.Store(true); return "" },
			state: StateFailing, reason: "only bad frames", drop: DropTruncated},
		{name: "only truncated frames stream", mode: "stream", setup: func(t *testing.T, d *flakyDevice) string { d.corrupt.Store(true); return "" },
			state: StateFailing, reason: "only bad frames", drop: DropTruncated},
		{name: "frames over the size limit", mode: "capture", maxBytes: 1000,
			state: StateFailing, reason: "only bad frames", drop: DropTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dev := newFlakyDevice(t, 160, 120)
			url := ""
			if tc.setup != nil {
				url = tc.setup(t, dev)
			}
			sc := SourceConfig{Type: "esp32", Mode: tc.mode, URL: dev.url(""), FPS: 20}
			if url != "" {
				sc.URL, sc.StreamURL = url, url
			}
			src, err := New(sc)
			if err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			if tc.state == StateLive {
				// OfflineAfter is far above any stall a busy machine
				// makes between two frames: no placeholder is due.
				r := start(t, &Camera{Name: "c", Source: src, OfflineAfter: 5 * time.Second, MaxBytes: tc.maxBytes})
				// A second's worth of frames (the device sends 20-25 a
				// second), a frame rate that says so, and time for the
				// watchdog to have looked (once a second) while live.
				waitFor(t, 20*time.Second, "live, 20 frames, at least 5 fps", func() bool {
					st := r.cam.Stats()
					return st.State == StateLive && st.Frames >= 20 && st.FPS >= 5 && time.Since(began) >= 2*placeholderEvery
				})
				if st := r.cam.Stats(); st.State != StateLive || st.Reason != "" || st.Dropped != 0 {
					t.Fatalf("a working camera: %+v", st)
				}
				// None once frames flow. (One may precede the first
				// frame, if that took a busy machine over a second.)
				live := false
				for _, f := range r.rec.snapshot() {
					if !f.Placeholder {
						live = true
					} else if live {
						t.Fatalf("placeholder %d from a working camera, after its frames came", f.Seq)
					}
				}
				return
			}
			r := start(t, &Camera{Name: "c", Source: src, OfflineAfter: 300 * time.Millisecond, MaxBytes: tc.maxBytes})
			// Two placeholders: the outage has been declared a second ago.
			waitFor(t, 10*time.Second, "two placeholders", func() bool { return r.cam.Stats().Placeholders >= 2 })
			st := r.cam.Stats()
			if st.State != tc.state || !strings.Contains(st.Reason, tc.reason) || st.LastError == "" {
				t.Fatalf("state %s, reason %q, last error %q; want %s, %q", st.State, st.Reason, st.LastError, tc.state, tc.reason)
			}
			if st.Since.Before(began) || st.Since.After(time.Now()) {
				t.Errorf("since %v, want when Run began (%v) or later", st.Since, began)
			}
			if n := r.log.count("WARN", "camera "+string(tc.state)); n != 1 {
				t.Errorf("%d WARN lines 'camera %s', want exactly 1 (not one per retry)", n, tc.state)
			}
			if elapsed := time.Since(began); tc.state == StateFailing && tc.drop == 0 && st.Reconnects > maxBackoffAttempts(elapsed) {
				t.Errorf("%d reconnects in %v to a device that answers but fails: no backoff", st.Reconnects, elapsed)
			}
			if strings.Contains(tc.reason, "bad frames") {
				if st.Drops[tc.drop] == 0 || st.Dropped != st.Drops.Total() {
					t.Errorf("drops %v (total %d), want %s counted", st.Drops, st.Dropped, tc.drop)
				}
				if n := r.log.count("WARN", "camera sends bad frames"); n != 1 {
					t.Errorf("%d WARN lines about bad frames in a second, want 1 (at most one per %v)", n, warnEvery)
				}
				if !strings.Contains(r.log.String(), " "+tc.drop.String()+"=") {
					t.Errorf("the bad-frames WARN line has no count for %s:\n%s", tc.drop, r.log.String())
				}
			}
		})
	}
}

// maxBackoffAttempts is how many retries the default backoff (250 ms
// doubling, less 20% jitter) allows in d.
func maxBackoffAttempts(d time.Duration) uint64 {
	n, wait := uint64(0), defaultMinRetry*8/10
	for at := wait; at <= d; at += wait {
		n++
		wait = min(2*wait, defaultMaxRetry*8/10)
	}
	return n
}

// A camera never seen sends a placeholder as soon as an attempt failed,
// or after OfflineAfter or a second (whichever is shorter) if its device
// just does not answer; then once a second: a decodable 640x480 JPEG,
// flagged, numbered from 1. Nothing is emitted after Run returns.
func TestPlaceholderNeverSeen(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return ln.Addr().String()
	}
	silent := func(t *testing.T) string { // accepts, never answers
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	for _, tc := range []struct {
		name         string
		addr         func(*testing.T) string
		offlineAfter time.Duration
		from, to     time.Duration // when the first placeholder may come
	}{
		// Upper bounds have seconds of slack for a loaded machine; the
		// lower ones, and "refused" well before offline_after, are the
		// behaviour.
		{"refused", refused, 5 * time.Second, 0, 2500 * time.Millisecond},
		{"silent, offline_after 300ms", silent, 300 * time.Millisecond, 300 * time.Millisecond, 2500 * time.Millisecond},
		{"silent, offline_after 5s", silent, 5 * time.Second, time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tc.addr(t)
			began := time.Now()
			r := start(t, &Camera{Name: "garage", Source: NewCapture("http://"+addr+"/capture", 10), OfflineAfter: tc.offlineAfter})
			waitFor(t, 10*time.Second, "three placeholders", func() bool { return len(r.rec.snapshot()) >= 3 })
			r.stop()
			frames := r.rec.snapshot()
			if d := frames[0].at.Sub(began); d < tc.from || d > tc.to {
				t.Errorf("first placeholder %v after start, want from %v to %v", d, tc.from, tc.to)
			}
			for i, f := range frames {
				if !f.Placeholder || f.Seq != uint64(i+1) || f.Camera != "garage" {
					t.Fatalf("frame %d: placeholder %v, seq %d, camera %q", i, f.Placeholder, f.Seq, f.Camera)
				}
				img, err := jpeg.Decode(bytes.NewReader(f.JPEG))
				if err != nil {
					t.Fatalf("placeholder %d: %v", i, err)
				}
				if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 480 || f.Width != 640 || f.Height != 480 {
					t.Fatalf("placeholder %d is %v (says %dx%d), want 640x480", i, b, f.Width, f.Height)
				}
				if i > 0 {
					if g := f.at.Sub(frames[i-1].at); g < 500*time.Millisecond || g > 5*time.Second {
						t.Errorf("placeholders %d and %d came %v apart, want about a second", i-1, i, g)
					}
				}
			}
			if st := r.cam.Stats(); st.State != StateStopped || st.Placeholders != uint64(len(frames)) {
				t.Errorf("after Run: state %s, %d placeholders counted, %d emitted", st.State, st.Placeholders, len(frames))
			}
			if n := r.log.count("WARN", "camera offline"); n != 1 {
				t.Errorf("%d WARN lines 'camera offline', want 1", n)
			}
			time.Sleep(1500 * time.Millisecond) // the recorder fails the test if anything is emitted now
		})
	}
}

// The placeholder shows the camera, OFFLINE, since when and why.
func TestPlaceholderText(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		info          placeholderInfo
		since, reason string
	}{
		{placeholderInfo{Camera: "a", Since: now.Add(-125 * time.Second), Seen: true, Reason: "it broke", Now: now},
			"last frame 11:57:55, 2m ago", "it broke"},
		{placeholderInfo{Camera: "a", Since: now.Add(-5 * time.Second), Now: now},
			"no frame since start 11:59:55, 5s ago", "waiting for the device"},
		{placeholderInfo{Camera: "a", Since: now.Add(-26*time.Hour - 5*time.Minute), Seen: true, Reason: "x", Now: now},
			"last frame Mar 3 09:55:00, 26h05m ago", "x"},
		{placeholderInfo{Camera: "a", Since: now.Add(-100 * time.Hour), Seen: true, Reason: "x", Now: now},
			"last frame Feb 28 08:00:00, 4d ago", "x"},
	} {
		since, reason := tc.info.lines()
		if since != tc.since || reason != tc.reason {
			t.Errorf("lines(%+v) = %q, %q; want %q, %q", tc.info, since, reason, tc.since, tc.reason)
		}
	}
	for _, tc := range []struct {
		s     string
		width int
		lines int
		want  []string
	}{
		{"nothing accepts connections at 1.2.3.4:80", 20, 5, []string{"nothing accepts", "connections at", "1.2.3.4:80"}},
		{"averyveryverylongword x", 10, 5, []string{"averyveryv", "erylongwor", "d x"}},
		{"one two three four five six", 9, 2, []string{"one two", "three..."}},
	} {
		if got := wrap(tc.s, tc.width, tc.lines); !slices.Equal(got, tc.want) {
			t.Errorf("wrap(%q, %d, %d) = %q, want %q", tc.s, tc.width, tc.lines, got, tc.want)
		}
	}
	// The same text at the same size is the same JPEG, not drawn again;
	// anything else is drawn anew.
	var p placeholder
	info := placeholderInfo{Camera: "a", Since: now.Add(-5 * time.Minute), Seen: true, Reason: "x", Now: now}
	a, _ := p.render(320, 240, info)
	info.Now = info.Now.Add(10 * time.Second) // still "5m ago"
	if b, _ := p.render(320, 240, info); &a[0] != &b[0] {
		t.Errorf("the same placeholder was encoded again")
	}
	info.Now = info.Now.Add(time.Minute)
	if b, _ := p.render(320, 240, info); bytes.Equal(a, b) {
		t.Errorf("the placeholder did not change when its text did")
	}
	if b, _ := p.render(640, 480, info); bytes.Equal(a, b) {
		t.Errorf("the placeholder did not change with the size")
	}
	for _, size := range [][2]int{{640, 480}, {160, 120}, {1600, 1200}, {33, 17}} {
		b, err := p.render(size[0], size[1], placeholderInfo{Camera: "name", Reason: "é unicode", Now: now, Since: now})
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%v: %v", size, err)
		}
		if b := img.Bounds(); b.Dx() != max(size[0]&^1, 64) || b.Dy() != max(size[1]&^1, 48) {
			t.Errorf("render(%v) is %v", size, b)
		}
	}
}

// A device that accepts connections but never answers, or stops sending
// mid-stream without closing: camd gives up within its timeout, says so,
// and tries again.
func TestSilentDevice(t *testing.T) {
	for _, tc := range []struct {
		name      string
		src       func(url string) Source
		handler   http.HandlerFunc
		lastError string
		reason    string
	}{{
		name:      "capture never answers",
		src:       func(url string) Source { c := NewCapture(url, 10); c.Timeout = 300 * time.Millisecond; return c },
		handler:   func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		lastError: "context deadline exceeded",
		reason:    "did not answer in time",
	}, {
		name: "stream goes quiet",
		src:  func(url string) Source { m := NewMJPEG(url); m.Idle = 300 * time.Millisecond; return m },
		handler: func() http.HandlerFunc {
			var conns atomic.Int32
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary=b")
				if conns.Add(1) == 1 { // one frame on the first connection, then silence
					f, _ := NewSim(160, 120, 1, 50).Frame(1, time.Now())
					fmt.Fprintf(w, "--b\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(f), f)
				}
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}
		}(),
		lastError: "stream stalled: nothing for 300ms",
		reason:    "stopped sending frames",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &http.Server{Handler: tc.handler}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			r := start(t, &Camera{Name: "c", Source: tc.src("http://" + ln.Addr().String() + "/x"), OfflineAfter: 200 * time.Millisecond})
			waitFor(t, 10*time.Second, "two reconnects", func() bool { return r.cam.Stats().Reconnects >= 2 })
			st := r.cam.Stats()
			if !strings.Contains(st.LastError, tc.lastError) {
				t.Errorf("last error %q, want it to say %q", st.LastError, tc.lastError)
			}
			waitFor(t, 10*time.Second, "the reason", func() bool { return strings.Contains(r.cam.Stats().Reason, tc.reason) })
		})
	}
}

// The stream watchdog trips on silence only: a frame that takes longer
// than Idle to arrive (a large one over weak Wi-Fi) comes through while
// its bytes flow, whether the low-water mark keeps the reader asleep
// until its end (http) or not (https); a stream that goes silent, even in
// the middle of a part, is still cut.
func TestStreamWatchdog(t *testing.T) {
	const idle = time.Second
	good := testJPEG(t)
	// 80 KB, 1 KB every 25 ms: about 2 s, twice Idle, for each part.
	big := append(append(bytes.Clone(good[:len(good)-2]), make([]byte, 80<<10)...), 0xFF, 0xD9)
	part := fmt.Appendf(nil, "--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(big), big)
	trickle := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary=f")
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			for off := 0; off < len(part); off += 1 << 10 {
				if _, err := w.Write(part[off:min(off+1<<10, len(part))]); err != nil || rc.Flush() != nil {
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
		}
	}
	silentMidPart := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary=f")
		w.Write(part[:len(part)/2])
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}
	silentAfterHeaders := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary=f")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}
	for _, tc := range []struct {
		name    string
		tls     bool
		handler http.HandlerFunc
		frames  int // to wait for; 0: want the stream cut as stalled
	}{
		{"slow frames, http", false, trickle, 2},
		{"slow frames, https", true, trickle, 2},
		{"silent mid-part, http", false, silentMidPart, 0},
		{"silent mid-part, https", true, silentMidPart, 0},
		{"silent after the headers", false, silentAfterHeaders, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(tc.handler)
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			m := NewMJPEG(srv.URL)
			m.Idle = idle
			if tc.tls {
				m.client.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got := 0
			err := m.Stream(ctx, func(f RawFrame) bool {
				if !bytes.Equal(f.JPEG, big) {
					t.Errorf("frame %d: %d bytes, not the %d sent", got, len(f.JPEG), len(big))
				}
				if got++; got == tc.frames {
					cancel()
				}
				return false
			})
			if tc.frames > 0 {
				if got < tc.frames || errors.Is(err, errStalled) {
					t.Errorf("%d frames of %d, err %v: a frame arriving slower than Idle (%v) was cut", got, tc.frames, err, idle)
				}
				return
			}
			if got != 0 || !errors.Is(err, errStalled) {
				t.Errorf("%d frames, err %v; want the silent stream cut as stalled", got, err)
			}
		})
	}
}

func TestDeviceTimeout(t *testing.T) {
	for _, tc := range []struct {
		fps  float64
		want time.Duration
	}{
		{0, 5 * time.Second},          // unknown rate: an MJPEG URL may send only on motion
		{10, 3200 * time.Millisecond}, // an ESP32 answers in ~100 ms
		{1, 5 * time.Second},
		{0.2, 13 * time.Second},
	} {
		if got := deviceTimeout(tc.fps); got != tc.want {
			t.Errorf("deviceTimeout(%v) = %v, want %v", tc.fps, got, tc.want)
		}
	}
}

// errors.Is sees through the marks sources put on errors.
func TestAnsweredUnwraps(t *testing.T) {
	if err := answered(fmt.Errorf("x: %w", io.EOF)); !errors.Is(err, io.EOF) {
		t.Fatal("answered hides its cause")
	}
}

// Refresh makes an offline camera send its placeholder now, not at the
// next second, at most ten a second; a live camera, or one not running,
// sends nothing for it. Driven through tick at chosen times.
func TestRefresh(t *testing.T) {
	c := &Camera{Name: "garage"}
	c.Refresh() // not running: nothing to do, nothing to break
	rec := &recorder{t: t}
	discard, _ := newLog()
	r := &run{c: c, emit: rec.emit, log: discard, wake: make(chan struct{}, 1), offlineAfter: 2 * time.Second}
	t0 := time.Now()
	c.start(t0)
	c.mu.Lock()
	c.cur, c.seen = r, true // a good frame arrived at t0
	c.mu.Unlock()
	var ph placeholder
	for _, step := range []struct {
		at      time.Duration
		refresh bool
		want    int // placeholders sent so far
	}{
		{100 * time.Millisecond, true, 0},   // live: its next frame is on its way
		{2000 * time.Millisecond, false, 1}, // offline_after: the first
		{2500 * time.Millisecond, false, 1}, // then once a second
		{2500 * time.Millisecond, true, 2},  // asked: at once
		{2550 * time.Millisecond, true, 2},  // asked again: not within 100ms
		{2650 * time.Millisecond, false, 3}, // which the ask still gets
		{2700 * time.Millisecond, false, 3}, // answered: a second again
		{3650 * time.Millisecond, false, 4},
	} {
		if step.refresh {
			c.Refresh()
			select {
			case <-r.wake:
			default:
				t.Fatalf("at %v: Refresh did not wake the run", step.at)
			}
		}
		r.tick(&ph, t0.Add(step.at))
		if n := len(rec.snapshot()); n != step.want {
			t.Fatalf("at %v (refresh %v): %d placeholders sent, want %d", step.at, step.refresh, n, step.want)
		}
	}
}

// Capture's timeout is for silence, as the stream watchdog is: a large
// frame that takes longer than Timeout to arrive over weak Wi-Fi comes
// through while its bytes flow, whether the low-water mark keeps the
// reader asleep until its end (http) or not (https); a body that goes
// silent is cut as stalled, and a device that never answers, as such.
func TestCaptureSlowFrame(t *testing.T) {
	const timeout = time.Second
	good := testJPEG(t)
	// 80 KB, 1 KB every 25 ms: about 2 s, twice Timeout.
	big := append(append(bytes.Clone(good[:len(good)-2]), make([]byte, 80<<10)...), 0xFF, 0xD9)
	trickle := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		rc := http.NewResponseController(w)
		for off := 0; off < len(big); off += 1 << 10 {
			if _, err := w.Write(big[off:min(off+1<<10, len(big))]); err != nil || rc.Flush() != nil {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	silentMidBody := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big[:len(big)/2])
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}
	for _, tc := range []struct {
		name    string
		tls     bool
		handler http.HandlerFunc
		want    error // nil: the whole frame
	}{
		{"slow frame, http", false, trickle, nil},
		{"slow frame, https", true, trickle, nil},
		{"silent mid-body, http", false, silentMidBody, errStalled},
		{"silent mid-body, https", true, silentMidBody, errStalled},
		{"never answers", false, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(tc.handler)
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			c := NewCapture(srv.URL+"/capture", 10)
			c.Timeout = timeout
			if tc.tls {
				c.client.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			}
			f, _, err := c.get(context.Background(), nil)
			if tc.want == nil {
				if err != nil || !bytes.Equal(f.JPEG, big) {
					t.Fatalf("%d bytes, err %v: a frame arriving slower than Timeout (%v) was cut", len(f.JPEG), err, timeout)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}
