package device

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// State is a camera's state as shown in /api/status.
type State string

// Camera states.
const (
	// StateLive: good frames are arriving (the newest is younger than
	// OfflineAfter).
	StateLive State = "live"
	// StateOffline: no good frame for OfflineAfter, or none since the
	// start, and the device cannot be reached (or sends nothing).
	// Placeholders are sent.
	StateOffline State = "offline"
	// StateFailing: no good frame for OfflineAfter; the device answers but
	// fails (HTTP errors, no stream, only bad frames). Placeholders are
	// sent.
	StateFailing State = "failing"
	// StateStopped: Run is not running.
	StateStopped State = "stopped"
	// StateIdle: an on_demand camera no output wants; camd is not
	// connected to it (the daemon reports it, Camera does not).
	StateIdle State = "idle"
)

// Defaults for Camera's zero fields.
const (
	defaultMinRetry     = 250 * time.Millisecond
	defaultMaxRetry     = 10 * time.Second
	defaultOfflineAfter = 2 * time.Second
	defaultStableAfter  = 5 * time.Second
)

// Pacing of what a Camera does while its device is away.
const (
	// probeMin and probeMax bound the jittered interval between probes of
	// an unreachable device: often enough that frames resume within half
	// a second of its return, and one TCP handshake each, so an ESP32
	// hardly notices.
	probeMin = 250 * time.Millisecond
	probeMax = 500 * time.Millisecond
	// placeholderEvery is the placeholders' rate while a camera is away.
	placeholderEvery = time.Second
	// refreshGap is the least time between placeholders when a Refresh
	// asks for one early: an output restarting in a loop, or viewers
	// coming and going, cannot have a camera send more than ten a second.
	refreshGap = 100 * time.Millisecond
	// warnEvery limits the WARN lines about one camera's bad frames, and
	// about its state changing during an outage.
	warnEvery = 30 * time.Second
)

// Camera runs one Source: it checks every frame, numbers the good ones,
// counts the bad ones by reason, and keeps reconnecting, whether the
// source failed at start or later. While the device cannot be reached it
// probes it every few hundred milliseconds and reconnects as soon as a
// probe gets through; a device that answers but fails is retried with
// capped exponential backoff instead, and so is one whose stream keeps
// ending soon after it starts. While no good frame has come for
// OfflineAfter, it sends a placeholder picture once a second saying so.
type Camera struct {
	Name     string
	Source   Source
	MaxBytes int           // frame size limit; 0 means MaxFrameBytes
	MinRetry time.Duration // first backoff for a device that answers but fails; 0 means 250ms
	MaxRetry time.Duration // backoff cap; 0 means 10s
	// StableAfter is how long a connection must have delivered good
	// frames to count as working: when it ends, the camera reconnects at
	// once and the backoff starts over. One that ended sooner (a device
	// that closes its stream after a frame or two) is retried with the
	// backoff, which keeps growing, so camd does not reconnect to it in a
	// tight loop. 0 means 5s.
	StableAfter time.Duration
	// OfflineAfter is how long without a good frame before the camera is
	// offline (and placeholders are sent); 0 means 2s. A camera not seen
	// since Run started is offline as soon as an attempt failed, or after
	// a second.
	OfflineAfter time.Duration
	Log          *slog.Logger

	mu    sync.Mutex
	stats Stats
	times [32]time.Time // arrival times of the last frames, for fps
	seq   uint64        // the last Run's last frame number: a Run goes on from it

	nt int
	// Guarded by mu too; they describe the current Run.
	cur       *run       // nil while Run is not running
	lastGood  time.Time  // arrival of the newest good frame, or Run's start
	seen      bool       // a good frame arrived since Run started
	failedYet bool       // a connection attempt failed since Run started
	declared  bool       // the current outage was logged and placeholders go out
	problem   failure    // the newest failure; zero after a good frame
	sinceGood DropCounts // drops since the last good frame
	pending   DropCounts // drops not yet logged
	dropWarn  time.Time  // when bad frames were last logged
	stateWarn time.Time  // when a state change during an outage was last logged
}

// Stats is a snapshot of a camera's counters.
type Stats struct {
	State State
	// Since is when State began. An outage begins with the last good
	// frame (or the start), not when OfflineAfter declared it.
	Since time.Time
	// Reason says why the camera is offline or failing, in plain words
	// and without secrets; empty when live.
	Reason       string
	Frames       uint64     // good frames delivered
	Placeholders uint64     // placeholder frames delivered
	Dropped      uint64     // bad frames dropped: Drops.Total()
	Drops        DropCounts // bad frames dropped, by reason
	Reconnects   uint64     // connection attempts after the first
	LastFrame    time.Time  // capture time of the newest good frame
	LastError    string     // the newest error, as technical text with URLs redacted
	Width        int        // of the newest good frame
	Height       int
	FPS          float64 // good frames per second, recently
}

// Run delivers frames to emit until ctx ends: the source's good frames and,
// while there are none, placeholders, all numbered in one sequence. emit is
// never called concurrently and must not block for long. It reports whether
// it kept the frame's JPEG; if not, the source may reuse the bytes (see
// Source). Run returns after every goroutine it started has ended.
func (c *Camera) Run(ctx context.Context, emit func(wire.Frame) (kept bool)) {
	c.mu.Lock()
	seq := c.seq
	c.mu.Unlock()
	r := &run{c: c, emit: emit, log: c.Log, wake: make(chan struct{}, 1), seq: seq,
		minRetry: c.MinRetry, maxRetry: c.MaxRetry, offlineAfter: c.OfflineAfter, stableAfter: c.StableAfter, maxBytes: c.MaxBytes}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("camera", c.Name)
	if r.minRetry <= 0 {
		r.minRetry = defaultMinRetry
	}
	if r.maxRetry <= 0 {
		r.maxRetry = defaultMaxRetry
	}
	if r.offlineAfter <= 0 {
		r.offlineAfter = defaultOfflineAfter
	}
	if r.stableAfter <= 0 {
		r.stableAfter = defaultStableAfter
	}
	if r.maxBytes <= 0 {
		r.maxBytes = MaxFrameBytes
	}
	c.start(time.Now())
	c.mu.Lock()
	c.cur = r
	c.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.watch(ctx)
	}()
	r.connect(ctx)
	cancel()
	wg.Wait()

	c.mu.Lock()
	c.cur = nil
	c.stats.State, c.stats.Since, c.stats.Reason = StateStopped, time.Now(), ""
	c.seq = r.seq // every emit has returned: connect and watch have
	c.mu.Unlock()
}

// run is one Camera.Run: its settings with defaults applied, and the frame
// sequence shared by real frames and placeholders.
type run struct {
	c                                             *Camera
	emit                                          func(wire.Frame) bool
	log                                           *slog.Logger
	minRetry, maxRetry, offlineAfter, stableAfter time.Duration
	maxBytes                                      int

	emitMu sync.Mutex // one emit at a time; guards seq
	seq    uint64

	// wake asks watch to look now: a camera never seen has just failed,
	// or refresh was set.
	wake chan struct{}
	// refresh asks for a placeholder now, if the camera is offline,
	// rather than a second after the last one (see Camera.Refresh).
	refresh atomic.Bool
	// lastPlaceholder is when watch last sent one; only watch uses it.
	lastPlaceholder time.Time
}

// emitLocked numbers f and emits it, reporting whether emit kept it;
// r.emitMu is held.
func (r *run) emitLocked(f wire.Frame) bool {
	r.seq++
	f.Seq = r.seq
	return r.emit(f)
}

// sendPlaceholder emits a placeholder drawn when the newest good frame had
// arrived at lastGood, unless a good frame came since: one rendered just
// before the camera came back is not sent after its first live frame.
func (r *run) sendPlaceholder(f wire.Frame, lastGood time.Time) {
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	r.c.mu.Lock()
	stale := !r.c.lastGood.Equal(lastGood)
	if !stale {
		r.c.stats.Placeholders++
	}
	r.c.mu.Unlock()
	if !stale {
		r.emitLocked(f)
	}
}

// connect runs the source until ctx ends, reconnecting after failures:
// at once (after a probe) for a device that went away from a stream that
// worked, with backoff for one that answers but fails and for a stream
// that ended before it worked for stableAfter.
func (r *run) connect(ctx context.Context) {
	prober, _ := r.c.Source.(Prober)
	retry := newBackoff(r.minRetry, r.maxRetry)
	short := 0 // streams in a row that delivered good frames, but not for stableAfter
	for n := 0; ; n++ {
		if n > 0 {
			r.c.mu.Lock()
			r.c.stats.Reconnects++
			r.c.mu.Unlock()
		}
		a := r.attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		stable := a.good && a.span >= r.stableAfter
		switch {
		case stable:
			retry.reset() // it worked for a while: it may again
			short = 0
		case a.good:
			short++
		}
		if a.err != nil && badFrame(a.err) {
			r.drop(a.err)
		}
		f := classify(a.err, a.good)
		if a.good && !stable {
			f = endedEarly(f, short)
		}
		r.failed(a.err, f)
		if f.unreachable && prober != nil {
			// A connection that broke after delivering may be back at
			// once (a reboot, a Wi-Fi blip): probe right away. Otherwise
			// the device just refused or timed out: wait a little first.
			wait := time.Duration(0)
			if !a.good {
				wait = probeInterval()
			}
			ok, away := r.probe(ctx, prober, wait)
			switch {
			case !ok:
				return
			case away:
				// The device went away and is back: reconnect at once,
				// however short the stream was (a board up for seconds
				// between outages).
				short = 0
				continue
			case !a.good || stable:
				continue
			}
			// A short stream ended, yet the device answers at once:
			// its stream keeps ending. Back off before the next one.
		}
		if !sleep(ctx, retry.next()) {
			return
		}
	}
}

// attempt is how one connection to the device went.
type attempt struct {
	err  error // what ended it
	good bool  // it delivered good frames
	// span is from the start of the connection to its last good frame:
	// how long it worked.
	span time.Duration
}

// attempt runs the source once, until its Stream returns.
func (r *run) attempt(ctx context.Context) attempt {
	began := time.Now()
	var a attempt
	a.err = r.c.Source.Stream(ctx, func(rf RawFrame) bool {
		w, h, n, err := CheckJPEG(rf.JPEG, r.maxBytes)
		if err != nil {
			r.drop(err)
			return false
		}
		a.good, a.span = true, time.Since(began)
		return r.deliver(wire.Frame{Camera: r.c.Name, Captured: rf.Captured, Width: w, Height: h, JPEG: rf.JPEG[:n]})
	})
	return a
}

// endedEarly is the failure of a stream that delivered good frames but
// ended before it worked for stableAfter, the short-th such in a row.
// Once, it may be the device going away: f says why it ended. Again and
// again, it is a device that answers but whose stream keeps ending (one
// that sends a frame per request, a server that cuts streams): failing,
// and backed off.
func endedEarly(f failure, short int) failure {
	if short < 2 {
		return f
	}
	return failure{reason: "the device's stream keeps ending soon after it starts (" + f.reason + ")"}
}

// backoff is a capped exponential backoff. Its jitter keeps several
// cameras behind one Wi-Fi hiccup from retrying in lock step.
type backoff struct {
	min, max, step time.Duration
}

func newBackoff(min, max time.Duration) backoff {
	return backoff{min: min, max: max, step: min}
}

// reset starts over from the shortest wait.
func (b *backoff) reset() { b.step = b.min }

// next returns the wait before the next retry, the current step ±20%, and
// doubles the step up to max.
func (b *backoff) next() time.Duration {
	d := time.Duration(float64(b.step) * (0.8 + 0.4*rand.Float64()))
	b.step = min(2*b.step, b.max)
	return d
}

// probeInterval is the jittered time between two probes.
func probeInterval() time.Duration {
	return probeMin + rand.N(probeMax-probeMin)
}

// probe waits, then probes p until a probe gets through (ok) or ctx
// ends; away says a probe failed meanwhile: the device was gone. Each probe's connection is closed before the next step,
// so the device never sees two connections from camd at once.
func (r *run) probe(ctx context.Context, p Prober, wait time.Duration) (ok, away bool) {
	for {
		if wait > 0 && !sleep(ctx, wait) {
			return false, away
		}
		start := time.Now()
		err := p.Probe(ctx)
		if err == nil {
			return true, away
		}
		if ctx.Err() != nil {
			return false, away
		}
		away = true
		// A probe says why the device is unreachable (refused, no
		// route, timed out) better than the stream's last error did.
		r.failed(err, failure{unreachable: true, reason: classify(err, false).reason})
		wait = probeInterval() - time.Since(start)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stateOf is the state a camera without frames is in because of f.
func stateOf(f failure) State {
	if f.reason != "" && !f.unreachable {
		return StateFailing
	}
	return StateOffline
}

// deliver records a good frame and emits it, reporting whether emit kept
// it.
func (r *run) deliver(f wire.Frame) bool {
	c := r.c
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	now := time.Now()
	c.mu.Lock()
	wasState, wasSeen, wasDeclared, downSince := c.stats.State, c.seen, c.declared, c.lastGood
	if wasState != StateLive {
		c.stats.State, c.stats.Since, c.stats.Reason = StateLive, now, ""
	}
	c.lastGood, c.seen, c.declared = now, true, false
	c.problem, c.sinceGood = failure{}, DropCounts{}
	c.stats.Frames++
	c.stats.LastFrame = f.Captured
	c.stats.Width, c.stats.Height = f.Width, f.Height
	c.times[c.nt%len(c.times)] = now
	c.nt++
	c.mu.Unlock()

	switch {
	case !wasSeen:
		r.log.Info("camera live", "size", fmt.Sprintf("%dx%d", f.Width, f.Height))
	case wasDeclared:
		r.log.Info("camera live again", "down_for", now.Sub(downSince).Round(time.Millisecond))
	}
	return r.emitLocked(f)
}

// drop records a bad frame: it counts it, and if no good frame comes
// between bad ones the camera is failing. Bad frames are logged at WARN
// at most every warnEvery, with counts by reason.
func (r *run) drop(err error) {
	c := r.c
	reason := dropReason(err)
	now := time.Now()
	c.mu.Lock()
	c.stats.Drops[reason]++
	c.stats.Dropped++
	c.sinceGood[reason]++
	c.pending[reason]++
	c.stats.LastError = "dropped frame: " + err.Error()
	c.problem = failure{reason: "the device sends only bad frames (" + c.sinceGood.String() + ")"}
	changed := c.setDownStateLocked(now)
	counts, warn := c.takeDropWarnLocked(now)
	c.mu.Unlock()
	r.logChange(changed)
	if warn {
		r.logDrops(counts, err)
	}
	r.log.Debug("frame dropped", "reason", reason.String(), "err", err)
}

// failed records the error that ended a stream, or a failed probe.
func (r *run) failed(err error, f failure) {
	c := r.c
	text := "stream ended"
	if err != nil {
		text = err.Error()
	}
	now := time.Now()
	c.mu.Lock()
	c.stats.LastError = text
	c.problem = f
	changed := c.setDownStateLocked(now)
	first := !c.seen && !c.failedYet
	c.failedYet = true
	c.mu.Unlock()
	r.logChange(changed)
	if first {
		// A camera that failed before its first frame is offline now:
		// say so at once rather than after OfflineAfter.
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	r.log.Debug("camera connection failed", "err", text, "reason", f.reason, "unreachable", f.unreachable)
}

// stateChange is a change of state during an outage, to log.
type stateChange struct {
	to     State
	reason string
	warn   bool // at WARN; else at DEBUG (too soon after the last one)
}

// setDownStateLocked moves a camera that has no frames (not live) to the
// state its newest problem calls for. It returns a change to log at WARN,
// if the outage was declared and the last such line is old enough.
func (c *Camera) setDownStateLocked(now time.Time) *stateChange {
	if c.stats.State == StateLive || c.stats.State == StateStopped {
		return nil // a live camera's problems count once OfflineAfter passed
	}
	to := stateOf(c.problem)
	c.stats.Reason = c.problem.reason
	if to == c.stats.State {
		return nil
	}
	c.stats.State, c.stats.Since = to, now
	if !c.declared {
		return nil // declaring the outage will log the state it is in
	}
	ch := &stateChange{to: to, reason: c.problem.reason, warn: now.Sub(c.stateWarn) >= warnEvery}
	if ch.warn {
		c.stateWarn = now
	}
	return ch
}

func (r *run) logChange(ch *stateChange) {
	switch {
	case ch == nil:
	case ch.warn:
		r.log.Warn("camera "+string(ch.to), "reason", ch.reason)
	default:
		r.log.Debug("camera "+string(ch.to), "reason", ch.reason)
	}
}

// takeDropWarnLocked returns the drops to log now, if there are any and the
// last such line is at least warnEvery old.
func (c *Camera) takeDropWarnLocked(now time.Time) (DropCounts, bool) {
	if c.pending.Total() == 0 || now.Sub(c.dropWarn) < warnEvery {
		return DropCounts{}, false
	}
	counts := c.pending
	c.pending, c.dropWarn = DropCounts{}, now
	return counts, true
}

func (r *run) logDrops(counts DropCounts, last error) {
	args := append([]any{"dropped", counts.Total()}, counts.logAttrs()...)
	if last != nil {
		args = append(args, "last", last.Error())
	}
	r.log.Warn("camera sends bad frames", args...)
}

// watch declares an outage once no good frame came for OfflineAfter (for
// a camera not seen since the start: once an attempt failed, or after a
// second), then
// sends a placeholder every second until frames return; it also logs bad
// frames that drop left pending. It runs until ctx ends.
func (r *run) watch(ctx context.Context) {
	var ph placeholder
	t := time.NewTimer(min(r.offlineAfter, placeholderEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
		t.Reset(r.tick(&ph, time.Now()))
	}
}

// tick does what is due at now and returns how long until it is next due.
func (r *run) tick(ph *placeholder, now time.Time) time.Duration {
	c := r.c
	c.mu.Lock()
	counts, warnDrops := c.takeDropWarnLocked(now)
	next := warnEvery - now.Sub(c.dropWarn)
	if c.pending.Total() == 0 {
		next = warnEvery
	}
	quiet, after := now.Sub(c.lastGood), r.offlineAfter
	if !c.seen {
		// A camera never seen is waited for at most a second, and not
		// at all once an attempt failed: a viewer arriving at camd's
		// start gets a picture saying why it waits.
		after = min(after, placeholderEvery)
		if c.failedYet {
			after = 0
		}
	}
	if quiet < after {
		c.mu.Unlock()
		r.refresh.Store(false) // not offline: its frames are on their way
		if warnDrops {
			r.logDrops(counts, nil)
		}
		return min(next, after-quiet)
	}
	// No good frame for offlineAfter: the camera is down.
	var declare *stateChange
	if c.stats.State == StateLive {
		c.stats.State, c.stats.Since = stateOf(c.problem), c.lastGood
	}
	c.stats.Reason = c.problem.reason
	if c.stats.Reason == "" {
		c.stats.Reason = "no frames from the device"
		if !c.seen {
			c.stats.Reason = "no frame from the device yet"
		}
	}
	if !c.declared {
		c.declared = true
		declare = &stateChange{to: c.stats.State, reason: c.stats.Reason, warn: true}
	}
	info := placeholderInfo{Camera: c.Name, Since: c.lastGood, Seen: c.seen, Reason: c.stats.Reason, Now: now}
	w, h, lastGood := c.stats.Width, c.stats.Height, c.lastGood
	c.mu.Unlock()

	r.logChange(declare)
	if warnDrops {
		r.logDrops(counts, nil)
	}
	every := placeholderEvery
	if r.refresh.Load() {
		every = refreshGap
	}
	if due := r.lastPlaceholder.Add(every); now.Before(due) {
		return min(next, due.Sub(now)) // woken early: one a second at most
	}
	r.lastPlaceholder = now
	r.refresh.Store(false)
	if w <= 0 || h <= 0 {
		w, h = placeholderW, placeholderH
	}
	img, err := ph.render(w, h, info)
	if err != nil {
		r.log.Error("placeholder", "err", err)
	} else {
		r.sendPlaceholder(wire.Frame{Camera: c.Name, Captured: now, Width: w, Height: h, JPEG: img, Placeholder: true}, lastGood)
	}
	return min(next, placeholderEvery-time.Since(now))
}

// LastSeq returns the number of the last frame delivered (0 before any).
// It is current once Run has returned.
func (c *Camera) LastSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// ContinueAfter numbers the camera's next frame after seq. A camera
// restarted as a new Camera (a reload changed its source) goes on from
// the old one's LastSeq: frame numbers only increase, as the frame
// contract promises, so a client waiting for a frame newer than one it
// had (a snapshot's newer_than) is not left waiting for the count to
// catch up. Call it before Run.
func (c *Camera) ContinueAfter(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq = max(c.seq, seq)
}

// Refresh asks for the camera's picture now: while it is offline, its
// placeholder goes out at once instead of at the next second, for an
// output that has just begun to want the camera (a plugin started, a
// first viewer came) and has nothing to show yet. A live camera's next
// frame is on its way, and a camera not running has nothing to send:
// then Refresh does nothing.
func (c *Camera) Refresh() {
	c.mu.Lock()
	r := c.cur
	c.mu.Unlock()
	if r == nil {
		return
	}
	r.refresh.Store(true)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// start resets the per-Run state: the camera is offline until its first
// frame.
func (c *Camera) start(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.State, c.stats.Since, c.stats.Reason = StateOffline, now, ""
	c.lastGood, c.seen, c.failedYet, c.declared = now, false, false, false
	c.problem, c.sinceGood, c.pending = failure{}, DropCounts{}, DropCounts{}
	c.dropWarn, c.stateWarn = time.Time{}, time.Time{}
}

// Stats returns the camera's counters.
func (c *Camera) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	if s.State == "" {
		s.State = StateStopped
	}
	s.FPS = c.fpsLocked(time.Now())
	return s
}

// fpsLocked is the frame rate over the recent frames that arrived in the
// last two seconds.
func (c *Camera) fpsLocked(now time.Time) float64 {
	n := min(c.nt, len(c.times))
	if n < 2 {
		return 0
	}
	newest := c.times[(c.nt-1)%len(c.times)]
	if now.Sub(newest) > 2*time.Second {
		return 0
	}
	count := 0
	var oldest time.Time
	for i := 1; i <= n; i++ {
		t := c.times[(c.nt-i)%len(c.times)]
		if newest.Sub(t) > 2*time.Second {
			break
		}
		oldest = t
		count++
	}
	if count < 2 || !newest.After(oldest) {
		return 0
	}
	return float64(count-1) / newest.Sub(oldest).Seconds()
}
