package device

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/camd/camd/sdk"
)

// State is a camera's connection state as shown in /api/status.
type State string

// Camera states.
const (
	StateConnecting State = "connecting" // first attempt, or retrying after a failure
	StateStreaming  State = "streaming"  // frames are arriving
	StateOffline    State = "offline"    // the last attempt failed; waiting to retry
	StateStopped    State = "stopped"
)

// Camera runs one Source: it checks every frame, numbers the good ones,
// counts the bad ones, and reconnects with capped exponential backoff when
// the source fails, forever, whether it failed at start or later.
type Camera struct {
	Name     string
	Source   Source
	MaxBytes int           // frame size limit; 0 means MaxFrameBytes
	MinRetry time.Duration // first backoff; 0 means 250ms
	MaxRetry time.Duration // backoff cap; 0 means 10s
	// OfflineAfter is how long without a good frame before the camera is
	// offline (and placeholders are sent); 0 means 2s.
	OfflineAfter time.Duration
	Log          *slog.Logger

	mu    sync.Mutex
	stats Stats
	times [32]time.Time // arrival times of the last frames, for fps
	nt    int
}

// Stats is a snapshot of a camera's counters.
type Stats struct {
	State     State
	Frames    uint64    // good frames delivered
	Dropped   uint64    // bad frames dropped (corrupt, truncated, too large)
	Restarts  uint64    // reconnects after a failure
	LastFrame time.Time // capture time of the newest frame
	LastError string
	Width     int
	Height    int
	FPS       float64
}

// Run delivers frames to emit until ctx ends. emit is called from Run's
// goroutine and must not block for long.
func (c *Camera) Run(ctx context.Context, emit func(sdk.Frame)) {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	minRetry, maxRetry := c.MinRetry, c.MaxRetry
	if minRetry <= 0 {
		minRetry = 250 * time.Millisecond
	}
	if maxRetry <= 0 {
		maxRetry = 10 * time.Second
	}
	maxBytes := c.MaxBytes
	if maxBytes <= 0 {
		maxBytes = MaxFrameBytes
	}
	c.setState(StateConnecting, "")
	defer c.setState(StateStopped, "")

	var seq uint64
	backoff := minRetry
	for attempt := 0; ; attempt++ {
		got := false
		err := c.Source.Stream(ctx, func(rf RawFrame) {
			w, h, n, err := CheckJPEG(rf.JPEG, maxBytes)
			if err != nil {
				c.drop(err)
				log.Debug("frame dropped", "camera", c.Name, "err", err)
				return
			}
			got = true
			seq++
			f := sdk.Frame{Camera: c.Name, Seq: seq, Captured: rf.Captured, Width: w, Height: h, JPEG: rf.JPEG[:n]}
			c.delivered(f)
			emit(f)
		})
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff = minRetry // it worked for a while: retry quickly
		}
		msg := "source ended"
		if err != nil {
			msg = err.Error()
		}
		c.mu.Lock()
		c.stats.Restarts++
		c.mu.Unlock()
		c.setState(StateOffline, msg)
		log.Warn("camera offline, retrying", "camera", c.Name, "err", msg, "retry_in", backoff.Round(time.Millisecond))

		// Jitter keeps several cameras behind one Wi-Fi hiccup from
		// reconnecting in lock step.
		wait := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxRetry)
		c.setState(StateConnecting, msg)
	}
}

func (c *Camera) setState(s State, lastErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.State = s
	if lastErr != "" {
		c.stats.LastError = lastErr
	}
}

func (c *Camera) drop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Dropped++
	c.stats.LastError = "dropped frame: " + err.Error()
}

func (c *Camera) delivered(f sdk.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.State = StateStreaming
	c.stats.Frames++
	c.stats.LastFrame = f.Captured
	c.stats.Width, c.stats.Height = f.Width, f.Height
	c.times[c.nt%len(c.times)] = time.Now()
	c.nt++
}

// Stats returns the camera's counters.
func (c *Camera) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
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
