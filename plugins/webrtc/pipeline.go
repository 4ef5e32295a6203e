package main

import (
	"context"
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

	frames    sdk.Latest[sdk.Frame]
	lastCap   atomic.Int64  // capture time of the newest frame (unix ns)
	interval  atomic.Uint64 // float64 bits: smoothed seconds between captures
	keyWanted atomic.Bool   // a keyframe is due, within the rate limit
	keyNow    atomic.Bool   // a viewer just connected: a keyframe now

	mu     sync.Mutex
	users  int
	cancel context.CancelFunc
	done   chan struct{} // closed when the running loop has exited

	stats pipelineStats
}

// pipelineStats are a pipeline's counters, read by Status.
type pipelineStats struct {
	encodersStarted atomic.Uint64
	framesIn        atomic.Uint64
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

func newPipeline(cam string, cfg Config, log *slog.Logger) (*pipeline, error) {
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
		cam: cam, cfg: cfg, log: log, track: track,
		pk: rtp.NewPacketizer(rtpMTU, 0, 0, pay, rtp.NewRandomSequencer(), clockRate),
	}, nil
}

// push hands the pipeline a camera frame. It is cheap when nobody watches:
// the frame is only kept as the newest.
func (pl *pipeline) push(f sdk.Frame) {
	pl.stats.framesIn.Add(1)
	now := f.Captured.UnixNano()
	if prev := pl.lastCap.Swap(now); prev != 0 && now > prev {
		gap := float64(now-prev) / 1e9
		old := math.Float64frombits(pl.interval.Load())
		if old == 0 || gap > 10*old { // first gap, or the camera was away
			old = gap
		}
		pl.interval.Store(math.Float64bits(old*0.9 + gap*0.1))
	}
	pl.frames.Set(f)
}

// cameraFPS is the camera's measured frame rate, or 30 before it is known.
func (pl *pipeline) cameraFPS() float64 {
	if iv := math.Float64frombits(pl.interval.Load()); iv > 0 {
		return 1 / iv
	}
	return 30
}

// acquire registers a user (a viewer or the WHIP publisher) and starts the
// encoder loop for the first one. The returned release is idempotent.
func (pl *pipeline) acquire() (release func()) {
	pl.mu.Lock()
	pl.users++
	if pl.users == 1 {
		if pl.done != nil {
			<-pl.done // the previous loop was told to stop; it ends within a frame
		}
		ctx, cancel := context.WithCancel(context.Background())
		pl.cancel, pl.done = cancel, make(chan struct{})
		go pl.run(ctx, pl.done)
	}
	pl.mu.Unlock()
	var once sync.Once
	return func() { once.Do(pl.release) }
}

func (pl *pipeline) release() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.users--
	if pl.users == 0 {
		pl.cancel()
	}
}

// stop ends the loop, whoever still uses it; for Stop.
func (pl *pipeline) stop() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.cancel != nil {
		pl.cancel()
		<-pl.done
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
// nothing until it has one. Not rate-limited (viewers are, by max_viewers);
// otherwise a viewer joining within keyGap of the encoder's first frame
// would wait out the gap.
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
	dec := NewDecoder()
	defer dec.Close()
	var (
		enc        Encoder
		encCfg     EncoderConfig
		encStarted time.Time
		ver        uint64
		lastCap    time.Time // capture time of the last frame sent
		due        time.Time // max_fps: the earliest capture time to send next
		lastKey    time.Time
	)
	defer func() {
		if enc != nil {
			enc.Close()
		}
	}()
	var minGap time.Duration
	if pl.cfg.MaxFPS > 0 {
		minGap = time.Duration(float64(time.Second) / pl.cfg.MaxFPS)
	}
	for {
		f, v, err := pl.frames.Next(ctx, ver)
		if err != nil {
			return
		}
		ver = v
		if minGap > 0 {
			// A small tolerance keeps jitter from halving the rate.
			if !due.IsZero() && f.Captured.Before(due.Add(-minGap/8)) {
				pl.stats.framesCapped.Add(1)
				continue
			}
			due = due.Add(minGap)
			if due.Before(f.Captured) {
				due = f.Captured.Add(minGap)
			}
		}

		t0 := time.Now()
		img, err := dec.Decode(f.JPEG)
		if err != nil {
			if pl.stats.decodeErrors.Add(1) == 1 {
				pl.log.Warn("cannot decode frame; skipping it", "seq", f.Seq, "err", err)
			}
			continue
		}
		t1 := time.Now()
		pl.stats.decodeNs.Add(uint64(t1.Sub(t0)))

		w, h := img.Rect.Dx(), img.Rect.Dy()
		fps := pl.cameraFPS()
		if pl.cfg.MaxFPS > 0 {
			fps = min(fps, pl.cfg.MaxFPS)
		}
		// A new size needs a new encoder; so does a frame rate far from the
		// one the rate control was set up for (e.g. a 10 fps ESP32 is
		// measured only after the first frames).
		retune := enc != nil && time.Since(encStarted) > 2*time.Second && (fps > encCfg.FPS*1.5 || fps < encCfg.FPS/1.5)
		if enc == nil || w != encCfg.Width || h != encCfg.Height || retune {
			if enc != nil {
				enc.Close()
				enc = nil
			}
			encCfg = EncoderConfig{Width: w, Height: h, FPS: fps, BitrateKbps: pl.cfg.BitrateKbps, KeyInterval: time.Duration(pl.cfg.KeyframeInterval)}
			if enc, err = newEncoder(pl.cfg.Codec, encCfg); err != nil {
				if pl.stats.encodeErrors.Add(1) == 1 {
					pl.log.Error("cannot start encoder", "width", w, "height", h, "err", err)
				}
				continue
			}
			encStarted = time.Now()
			pl.stats.encodersStarted.Add(1)
			pl.stats.width.Store(int64(w))
			pl.stats.height.Store(int64(h))
			pl.log.Info("encoder started", "codec", pl.cfg.Codec, "width", w, "height", h, "fps", math.Round(fps*10)/10, "bitrate_kbps", pl.cfg.BitrateKbps)
			lastKey = time.Time{}
			pl.keyWanted.Store(true) // a new encoder starts with one anyway; make it explicit
		}

		key := pl.keyNow.Swap(false) || pl.keyWanted.Load() && time.Since(lastKey) >= keyGap
		if key {
			pl.keyWanted.Store(false)
			lastKey = time.Now()
		}
		b, err := enc.Encode(img, key)
		if err != nil {
			if pl.stats.encodeErrors.Add(1) == 1 {
				pl.log.Error("encode failed", "err", err)
			}
			pl.keyWanted.Store(true) // whatever the decoders have now is suspect
			continue
		}
		pl.stats.encodeNs.Add(uint64(time.Since(t1)))
		if len(b) == 0 { // the rate control skipped this frame
			if key {
				pl.keyWanted.Store(true)
				lastKey = time.Time{}
			}
			continue
		}
		if isKeyframe(pl.cfg.Codec, b) {
			pl.stats.keyframes.Add(1)
		}
		pl.stats.framesEncoded.Add(1)
		pl.stats.bytes.Add(uint64(len(b)))

		// RTP timestamps follow capture times, so the receiver plays frames
		// at the pace they were taken, not the pace they arrived.
		ticks := uint32(clockRate / fps)
		if !lastCap.IsZero() {
			if d := f.Captured.Sub(lastCap); d > 0 && d < time.Minute {
				ticks = uint32(d.Seconds()*clockRate + 0.5)
			}
		}
		lastCap = f.Captured
		pl.pk.SkipSamples(ticks)
		for _, pkt := range pl.pk.Packetize(b, 0) {
			_ = pl.track.WriteRTP(pkt) // errors are per viewer; their sessions clean up
		}
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
	CameraFPS       float64 `json:"camera_fps"`
	EncodersStarted uint64  `json:"encoders_started"`
	FramesIn        uint64  `json:"frames_in"`
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
	return pipelineStatus{
		Users: users, Encoding: users > 0,
		Width: s.width.Load(), Height: s.height.Load(),
		CameraFPS:       math.Round(pl.cameraFPS()*10) / 10,
		EncodersStarted: s.encodersStarted.Load(), FramesIn: s.framesIn.Load(), FramesEncoded: n,
		FramesCapped: s.framesCapped.Load(), Keyframes: s.keyframes.Load(), KeyRequests: s.keyRequests.Load(),
		DecodeErrors: s.decodeErrors.Load(), EncodeErrors: s.encodeErrors.Load(), Bytes: s.bytes.Load(),
		DecodeMs: avg(s.decodeNs.Load()), EncodeMs: avg(s.encodeNs.Load()),
	}
}
