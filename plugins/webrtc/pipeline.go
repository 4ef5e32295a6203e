package main

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	rtpcodecs "github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/camd/camd/sdk"
)

const (
	clockRate = 90000 // RTP video clock
	rtpMTU    = 1200  // what pion's own sample tracks use: fits any path
	// keyGap rate-limits forced keyframes: one encoder serves every viewer,
	// and a burst of PLIs must not turn the stream into all keyframes.
	keyGap = 500 * time.Millisecond
)

// pipeline is one camera's JPEG → I420 → codec path and the one track all
// of its viewers (and its WHIP publisher) share. It encodes only while it
// has users: the loop starts with the first and stops after the last.
type pipeline struct {
	cam   string
	cfg   Config
	log   *slog.Logger
	track *webrtc.TrackLocalStaticRTP
	pk    rtp.Packetizer // used only by the running loop
	batch *sendBatch     // a frame's packets to every viewer go out together

	frames    sdk.Latest[sdk.Frame]
	rate      rateMeter   // the camera's live frame rate, from capture times
	keyWanted atomic.Bool // a keyframe is due, within the rate limit
	keyNow    atomic.Bool // a viewer just connected: a keyframe now

	mu     sync.Mutex
	users  int
	closed bool // stopped for good: no loop starts again
	cancel context.CancelFunc
	done   chan struct{} // closed when the running loop has exited

	stats pipelineStats
}

// errCameraGone is what a viewer of a camera that was just removed gets.
var errCameraGone = errors.New("no such camera (it was removed)")

// pipelineStats are a pipeline's counters, read by Status.
type pipelineStats struct {
	encodersStarted atomic.Uint64
	encodersRunning atomic.Int64  // 0 or 1: one encoder per camera at a time
	encodersPeak    atomic.Int64  // the most encodersRunning ever was; 1 unless that rule broke
	encoderFPS      atomic.Uint64 // float64 bits: the rate the current encoder is tuned for
	framesIn        atomic.Uint64
	placeholders    atomic.Uint64 // frames camd drew while the camera was offline
	framesStale     atomic.Uint64 // replaced by a newer frame before the encoder was free
	framesEncoded   atomic.Uint64
	framesCapped    atomic.Uint64 // skipped to honour max_fps
	keyframes       atomic.Uint64
	keyRequests     atomic.Uint64
	decodeErrors    atomic.Uint64
	encodeErrors    atomic.Uint64
	bytes           atomic.Uint64
	decodeNs        atomic.Uint64
	encodeNs        atomic.Uint64
	width, height   atomic.Int64
}

// encoderOpened counts an encoder that now runs, and its peak.
func (s *pipelineStats) encoderOpened(fps float64) {
	s.encodersStarted.Add(1)
	s.encoderFPS.Store(math.Float64bits(fps))
	n := s.encodersRunning.Add(1)
	for {
		peak := s.encodersPeak.Load()
		if n <= peak || s.encodersPeak.CompareAndSwap(peak, n) {
			return
		}
	}
}

func newPipeline(cam string, cfg Config, log *slog.Logger, batch *sendBatch) (*pipeline, error) {
	spec := codecs[cfg.Codec]
	track, err := webrtc.NewTrackLocalStaticRTP(spec.capability, "video", "camd-"+cam)
	if err != nil {
		return nil, err
	}
	var pay rtp.Payloader = &rtpcodecs.H264Payloader{}
	if cfg.Codec == "vp8" {
		pay = &rtpcodecs.VP8Payloader{EnablePictureID: true}
	}
	return &pipeline{
		cam: cam, cfg: cfg, log: log, track: track, batch: batch,
		pk: rtp.NewPacketizer(rtpMTU, 0, 0, pay, rtp.NewRandomSequencer(), clockRate),
	}, nil
}

// push hands the pipeline a camera frame. It is cheap when nobody watches:
// the frame is only kept as the newest. Placeholders are not the camera's
// frame rate: they restart its measurement instead.
func (pl *pipeline) push(f sdk.Frame) {
	pl.stats.framesIn.Add(1)
	if f.Placeholder {
		pl.stats.placeholders.Add(1)
		pl.rate.restart()
	} else {
		pl.rate.observe(f.Captured)
	}
	pl.frames.Set(f)
}

// encodeFPS is the rate an encoder is tuned for: the camera's measured
// rate (30 before it is known), at most max_fps.
func (pl *pipeline) encodeFPS() float64 {
	fps, ok := pl.rate.rate()
	if !ok {
		fps = 30
	}
	if pl.cfg.MaxFPS > 0 {
		fps = min(fps, pl.cfg.MaxFPS)
	}
	return fps
}

// acquire registers a user (a viewer or the WHIP publisher) and starts the
// encoder loop for the first one. The returned release is idempotent. It
// fails with errCameraGone once the pipeline is stopped.
func (pl *pipeline) acquire() (release func(), err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		return nil, errCameraGone
	}
	pl.users++
	if pl.users == 1 {
		if pl.done != nil {
			<-pl.done // the previous loop was told to stop; it ends within a frame
		}
		ctx, cancel := context.WithCancel(context.Background())
		pl.cancel, pl.done = cancel, make(chan struct{})
		go pl.run(ctx, pl.done)
	}
	var once sync.Once
	return func() { once.Do(pl.release) }, nil
}

func (pl *pipeline) release() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.users--
	if pl.users == 0 {
		pl.cancel()
	}
}

// stop ends the loop, whoever still uses it, and waits for it; no loop
// starts afterwards. For Stop and for a camera that was removed.
func (pl *pipeline) stop() {
	pl.mu.Lock()
	pl.closed = true
	cancel, done := pl.cancel, pl.done
	pl.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// requestKey asks for a keyframe because a viewer lost its picture
// (PLI/FIR). The request waits while the rate limit holds, but is never
// lost.
func (pl *pipeline) requestKey() {
	pl.stats.keyRequests.Add(1)
	pl.keyWanted.Store(true)
}

// viewerConnected asks for a keyframe at once: the new viewer shows
// nothing until it has one. Only other viewers' joins limit it (one
// forced keyframe per keyGap), not the keyframes the encoder sent anyway,
// so a viewer joining just after the encoder's first frame does not wait
// out the gap, while viewers joining and leaving in a loop cannot turn
// every viewer's stream into keyframes.
func (pl *pipeline) viewerConnected() {
	pl.stats.keyRequests.Add(1)
	pl.keyNow.Store(true)
}

// readRTCP passes a receiver's keyframe requests (PLI, FIR) to the shared
// encoder. It also drains the sender's RTCP, which pion's interceptors
// need. It returns when the peer connection closes.
func (pl *pipeline) readRTCP(s *webrtc.RTPSender) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				pl.requestKey()
			}
		}
	}
}

// run is the encoder loop: newest frame in, one encoded frame out on the
// shared track. A slow encode skips frames rather than queueing them.
func (pl *pipeline) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	e := newFrameEncoder(pl)
	defer e.close()
	var ver uint64
	for {
		f, v, err := pl.frames.Next(ctx, ver)
		if err != nil {
			return
		}
		if ver != 0 && v > ver+1 {
			pl.stats.framesStale.Add(v - ver - 1)
		}
		ver = v
		e.handle(f)
	}
}

const (
	// An encoder is rebuilt for a new frame rate only when the camera's
	// measured rate has left [fps/retuneBand, fps*retuneBand] of the rate
	// it was tuned for, and stayed out for retuneHold of capture time: a
	// rate that wobbles under load, or a short stall, keeps the encoder.
	retuneBand = 1.5
	retuneHold = 3 * time.Second
)

// frameEncoder is one run of a pipeline's encoder loop: the decoder, the
// encoder and the rate it was tuned for, and the keyframe and pacing
// bookkeeping. handle takes one frame at a time; tests call it directly.
type frameEncoder struct {
	pl     *pipeline
	now    func() time.Time // the wall clock of the keyframe rate limit
	minGap time.Duration    // max_fps as the shortest gap between capture times
	dec    *Decoder
	enc    Encoder
	encCfg EncoderConfig

	offRate    time.Time // capture time since which the rate is outside encCfg.FPS's band
	lastCap    time.Time // capture time of the last frame sent (RTP timestamps)
	due        time.Time // max_fps: the earliest capture time to send next
	passed     time.Time // max_fps: capture time of the last frame it let through
	lastKey    time.Time // wall time of the last keyframe sent
	lastKeyCap time.Time // capture time of the last keyframe sent
	lastForced time.Time // wall time of the last keyframe a joining viewer forced
}

func newFrameEncoder(pl *pipeline) *frameEncoder {
	e := &frameEncoder{pl: pl, now: time.Now, dec: NewDecoder()}
	if pl.cfg.MaxFPS > 0 {
		e.minGap = time.Duration(float64(time.Second) / pl.cfg.MaxFPS)
	}
	return e
}

// close frees the decoder and the encoder.
func (e *frameEncoder) close() {
	e.closeEncoder()
	e.dec.Close()
}

func (e *frameEncoder) closeEncoder() {
	if e.enc != nil {
		e.enc.Close()
		e.enc = nil
		e.pl.stats.encodersRunning.Add(-1)
	}
}

// handle decodes, encodes and sends one frame, or skips it (max_fps, a
// bad JPEG, an encoder that cannot start).
func (e *frameEncoder) handle(f sdk.Frame) {
	pl := e.pl
	// Placeholders come at camd's own 1 fps and are never capped.
	if !f.Placeholder && e.capped(f.Captured) {
		pl.stats.framesCapped.Add(1)
		return
	}
	t0 := time.Now()
	img, err := e.dec.Decode(f.JPEG)
	if err != nil {
		if pl.stats.decodeErrors.Add(1) == 1 {
			pl.log.Warn("cannot decode frame; skipping it", "seq", f.Seq, "err", err)
		}
		return
	}
	t1 := time.Now()
	pl.stats.decodeNs.Add(uint64(t1.Sub(t0)))
	if !e.tune(img.Rect.Dx(), img.Rect.Dy(), f) {
		return
	}
	forced := false
	if now := e.now(); pl.keyNow.Load() && now.Sub(e.lastForced) >= keyGap {
		pl.keyNow.Store(false)
		forced, e.lastForced = true, now
	}
	key := forced || e.keyDue(f.Captured)
	if key {
		// Every viewer connected by now gets this one: a join waiting out
		// the gap needs no second.
		pl.keyWanted.Store(false)
		pl.keyNow.Store(false)
	}
	b, err := e.enc.Encode(img, key)
	if err != nil {
		if pl.stats.encodeErrors.Add(1) == 1 {
			pl.log.Error("encode failed", "err", err)
		}
		pl.keyWanted.Store(true) // whatever the decoders have now is suspect
		return
	}
	pl.stats.encodeNs.Add(uint64(time.Since(t1)))
	isKey := len(b) > 0 && isKeyframe(pl.cfg.Codec, b)
	if key && !isKey { // the rate control skipped the frame: ask again
		if forced {
			pl.keyNow.Store(true)
		} else {
			pl.keyWanted.Store(true)
		}
	}
	if len(b) == 0 {
		return
	}
	if isKey {
		pl.stats.keyframes.Add(1)
		e.lastKey, e.lastKeyCap = e.now(), f.Captured
	}
	e.send(f, b)
}

// capped reports whether max_fps skips a frame captured at t.
//
// Capture times are camd's wall clock, which can step (NTP, a manual
// change). The schedule follows such a step rather than the old time
// line: a frame from before the last one let through restarts it there,
// so a step back does not skip every frame until the clock catches up;
// a frame well past the due time restarts it at that frame, so a step
// forward lets one frame through, not a burst.
func (e *frameEncoder) capped(t time.Time) bool {
	if e.minGap == 0 {
		return false
	}
	switch {
	case e.due.IsZero() || t.Before(e.passed):
		// The first frame, or the clock stepped back: start over here.
		e.due = t.Add(e.minGap)
	case t.Before(e.due.Add(-e.minGap / 8)):
		// Too early; a small tolerance keeps jitter from halving the rate.
		return true
	default:
		e.due = e.due.Add(e.minGap)
		if e.due.Before(t) { // late, or the clock stepped forward
			e.due = t.Add(e.minGap)
		}
	}
	e.passed = t
	return false
}

// tune makes sure an encoder fits the frame, and reports whether one
// does. A new size needs a new encoder; so does a camera whose rate has
// moved far from the one the rate control was set up for and stayed there
// (a 10 fps ESP32 is measured only after its first frames). Placeholders
// never retune: their 1 fps is camd's, and the camera is expected back at
// its own rate.
func (e *frameEncoder) tune(w, h int, f sdk.Frame) bool {
	pl := e.pl
	fps := pl.encodeFPS()
	reason := "first frame"
	if e.enc != nil {
		switch {
		case w != e.encCfg.Width || h != e.encCfg.Height:
			reason = "new size"
		case f.Placeholder:
			e.offRate = time.Time{}
			return true
		case e.rateMoved(fps, f.Captured):
			reason = "new frame rate"
		default:
			return true
		}
	}
	e.closeEncoder()
	cfg := EncoderConfig{Width: w, Height: h, FPS: fps, BitrateKbps: pl.cfg.BitrateKbps, KeyInterval: time.Duration(pl.cfg.KeyframeInterval)}
	enc, err := newEncoder(pl.cfg.Codec, cfg)
	if err != nil {
		if pl.stats.encodeErrors.Add(1) == 1 {
			pl.log.Error("cannot start encoder", "width", w, "height", h, "err", err)
		}
		return false
	}
	e.enc, e.encCfg, e.offRate = enc, cfg, time.Time{}
	pl.stats.encoderOpened(fps)
	pl.stats.width.Store(int64(w))
	pl.stats.height.Store(int64(h))
	pl.log.Info("encoder started", "reason", reason, "codec", pl.cfg.Codec, "width", w, "height", h,
		"fps", math.Round(fps*10)/10, "bitrate_kbps", pl.cfg.BitrateKbps)
	e.lastKey, e.lastKeyCap = time.Time{}, time.Time{}
	pl.keyWanted.Store(true) // a new encoder starts with one anyway; make it explicit
	return true
}

// rateMoved reports whether the camera's rate fps has been outside the
// band of the encoder's rate for retuneHold, as of a frame captured at t.
func (e *frameEncoder) rateMoved(fps float64, t time.Time) bool {
	if fps <= e.encCfg.FPS*retuneBand && fps >= e.encCfg.FPS/retuneBand {
		e.offRate = time.Time{}
		return false
	}
	if e.offRate.IsZero() {
		e.offRate = t
	}
	return t.Sub(e.offRate) >= retuneHold
}

// keyDue reports whether the frame captured at t should be a keyframe
// without a viewer having just connected: a PLI/FIR outside the rate
// limit, or keyframe_interval of capture time since the last one. The
// encoder keeps its own interval in frames too, but by time it holds
// whatever the rate (1 fps placeholders included).
func (e *frameEncoder) keyDue(t time.Time) bool {
	if e.pl.keyWanted.Load() && e.now().Sub(e.lastKey) >= keyGap {
		return true
	}
	// A frame captured before the last keyframe (the clock stepped back)
	// gets one too, so the interval counts from it, not from the future.
	since := t.Sub(e.lastKeyCap)
	return !e.lastKeyCap.IsZero() && (since < 0 || since >= time.Duration(e.pl.cfg.KeyframeInterval))
}

// send packetizes an encoded frame onto the shared track.
func (e *frameEncoder) send(f sdk.Frame, b []byte) {
	pl := e.pl
	pl.stats.framesEncoded.Add(1)
	pl.stats.bytes.Add(uint64(len(b)))
	// RTP timestamps follow capture times, so the receiver plays frames
	// at the pace they were taken, not the pace they arrived.
	ticks := uint32(clockRate / e.encCfg.FPS)
	if !e.lastCap.IsZero() {
		if d := f.Captured.Sub(e.lastCap); d > 0 && d < time.Minute {
			ticks = uint32(d.Seconds()*clockRate + 0.5)
		}
	}
	e.lastCap = f.Captured
	pl.pk.SkipSamples(ticks)
	pkts := pl.pk.Packetize(b, 0)
	pl.batch.hold()
	defer pl.batch.release()
	for _, pkt := range pkts {
		_ = pl.track.WriteRTP(pkt) // errors are per viewer; their sessions clean up
	}
}

// isKeyframe reports whether an encoded frame is a keyframe: an H.264
// access unit whose first slice is IDR, or a VP8 frame with the key bit
// clear. It reads only up to the first slice, not the whole frame.
func isKeyframe(codec string, b []byte) bool {
	if codec == "vp8" {
		return len(b) > 0 && b[0]&1 == 0
	}
	for i := 0; i+3 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			switch b[i+3] & 0x1f {
			case 5: // IDR slice
				return true
			case 1: // non-IDR slice
				return false
			}
			i += 3 // past the start code; SPS/PPS/SEI are short
		}
	}
	return false
}

// pipelineStatus is one camera's part of Status.
type pipelineStatus struct {
	Users           int     `json:"users"` // viewers plus a connected WHIP publisher
	Encoding        bool    `json:"encoding"`
	Width           int64   `json:"width,omitempty"`
	Height          int64   `json:"height,omitempty"`
	CameraFPS       float64 `json:"camera_fps"`  // measured from live frames; 0 until known
	EncoderFPS      float64 `json:"encoder_fps"` // what the newest encoder was tuned for
	EncodersStarted uint64  `json:"encoders_started"`
	EncodersRunning int64   `json:"encoders_running"`      // 0 or 1
	EncodersPeak    int64   `json:"encoders_running_peak"` // never more than 1
	FramesIn        uint64  `json:"frames_in"`
	Placeholders    uint64  `json:"placeholders"`
	FramesStale     uint64  `json:"frames_stale"`
	FramesEncoded   uint64  `json:"frames_encoded"`
	FramesCapped    uint64  `json:"frames_capped"`
	Keyframes       uint64  `json:"keyframes"`
	KeyRequests     uint64  `json:"keyframe_requests"`
	DecodeErrors    uint64  `json:"decode_errors"`
	EncodeErrors    uint64  `json:"encode_errors"`
	Bytes           uint64  `json:"bytes"`
	DecodeMs        float64 `json:"decode_ms_avg"`
	EncodeMs        float64 `json:"encode_ms_avg"`
}

func (pl *pipeline) status() pipelineStatus {
	pl.mu.Lock()
	users := pl.users
	pl.mu.Unlock()
	s := &pl.stats
	n := s.framesEncoded.Load()
	avg := func(ns uint64) float64 {
		if n == 0 {
			return 0
		}
		return math.Round(float64(ns)/float64(n)/1e4) / 100
	}
	fps, _ := pl.rate.rate()
	return pipelineStatus{
		Users: users, Encoding: users > 0,
		Width: s.width.Load(), Height: s.height.Load(),
		CameraFPS:       math.Round(fps*10) / 10,
		EncoderFPS:      math.Round(math.Float64frombits(s.encoderFPS.Load())*10) / 10,
		EncodersStarted: s.encodersStarted.Load(), EncodersRunning: s.encodersRunning.Load(), EncodersPeak: s.encodersPeak.Load(),
		FramesIn: s.framesIn.Load(), Placeholders: s.placeholders.Load(), FramesStale: s.framesStale.Load(), FramesEncoded: n,
		FramesCapped: s.framesCapped.Load(), Keyframes: s.keyframes.Load(), KeyRequests: s.keyRequests.Load(),
		DecodeErrors: s.decodeErrors.Load(), EncodeErrors: s.encodeErrors.Load(), Bytes: s.bytes.Load(),
		DecodeMs: avg(s.decodeNs.Load()), EncodeMs: avg(s.encodeNs.Load()),
	}
}
