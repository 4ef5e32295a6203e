package device

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"time"
)

// Sim is a simulated camera: colour bars with a moving box, the wall clock
// and a frame counter in large digits, and along the top edge the capture
// time as a machine-readable bar code (see StampBits), so latency can be
// measured end to end from what a viewer sees.
type Sim struct {
	w, h    int
	fps     float64
	quality int

	r   *simRenderer // for Frame; Stream has its own
	buf bytes.Buffer
}

// StampBits is the number of bits of the time stamp bar code: the capture
// time in unix milliseconds modulo 2^StampBits, most significant bit first,
// drawn as StampBits equal-width blocks across the top StampHeight rows,
// white for 1 and black for 0.
const StampBits = 40

// StampHeight returns the height in pixels of the bar code strip for an
// image of height h.
func StampHeight(h int) int { return max(8, h/16) }

// NewSim returns a simulated camera; zero values take defaults (640x480,
// 15 fps, quality 80).
func NewSim(w, h int, fps float64, quality int) *Sim {
	if w <= 0 || h <= 0 {
		w, h = 640, 480
	}
	if fps <= 0 {
		fps = 15
	}
	if quality <= 0 || quality > 100 {
		quality = 80
	}
	return &Sim{w: w &^ 1, h: h &^ 1, fps: fps, quality: quality}
}

// Stream implements Source. Frames are paced by a ticker; if encoding falls
// behind, ticks are skipped rather than queued.
func (s *Sim) Stream(ctx context.Context, emit func(RawFrame) bool) error {
	r := newSimRenderer(s.w, s.h)
	t := time.NewTicker(time.Duration(float64(time.Second) / s.fps))
	defer t.Stop()
	var buf bytes.Buffer
	var spare []byte // the last frame's bytes if emit did not keep them
	for n := uint64(1); ; n++ {
		now := time.Now()
		img := r.render(n, now)
		buf.Reset()
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: s.quality}); err != nil {
			return fmt.Errorf("sim: encode: %w", err)
		}
		jpg := append(spare[:0], buf.Bytes()...)
		spare = nil
		if !emit(RawFrame{JPEG: jpg, Captured: now}) {
			spare = jpg
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Frame renders and encodes frame number n as captured at t. It is for
// tests and benchmarks that need realistic JPEGs; it is not safe for
// concurrent use.
func (s *Sim) Frame(n uint64, t time.Time) ([]byte, error) {
	if s.r == nil {
		s.r = newSimRenderer(s.w, s.h)
	}
	s.buf.Reset()
	if err := jpeg.Encode(&s.buf, s.r.render(n, t), &jpeg.Options{Quality: s.quality}); err != nil {
		return nil, err
	}
	return bytes.Clone(s.buf.Bytes()), nil
}

// simRenderer draws the simulated camera's frames on one canvas.
type simRenderer struct {
	*canvas
	bg *image.YCbCr // static background, copied in each frame
}

func newSimRenderer(w, h int) *simRenderer {
	r := &simRenderer{
		canvas: newCanvas(w, h),
		bg:     image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420),
	}
	// SMPTE-like colour bars: white, yellow, cyan, green, magenta, red, blue, black.
	bars := [][3]uint8{{235, 128, 128}, {210, 16, 146}, {170, 166, 16}, {145, 54, 34}, {106, 202, 222}, {81, 90, 240}, {41, 240, 110}, {16, 128, 128}}
	// Fixed-seed noise gives frames a real camera's texture, so JPEG sizes
	// (and encoder costs downstream) are realistic, not colour-bar tiny.
	seed := uint32(2463534242)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := bars[x*len(bars)/w]
			seed ^= seed << 13
			seed ^= seed >> 17
			seed ^= seed << 5
			r.bg.Y[y*r.bg.YStride+x] = uint8(min(235, max(16, int(c[0])+int(seed%25)-12)))
			if y%2 == 0 && x%2 == 0 {
				i := (y/2)*r.bg.CStride + x/2
				r.bg.Cb[i], r.bg.Cr[i] = c[1], c[2]
			}
		}
	}
	return r
}

func (r *simRenderer) render(n uint64, now time.Time) *image.YCbCr {
	img := r.img
	copy(img.Y, r.bg.Y)
	copy(img.Cb, r.bg.Cb)
	copy(img.Cr, r.bg.Cr)
	w, h := img.Rect.Dx(), img.Rect.Dy()

	// A box that sweeps left to right once every 4 s shows motion.
	bs := h / 6
	period := 4 * time.Second
	x0 := int(int64(w-bs) * (now.UnixNano() % int64(period)) / int64(period))
	y0 := h/2 - bs/2
	r.fill(x0, y0, bs, bs, 128, 128, 128)

	// Clock and counter in large digits on a dark panel.
	scale := max(1, h/120)
	line1 := now.Format("15:04:05.000")
	line2 := fmt.Sprintf("#%d", n)
	panelH := 2*glyphH*scale + 3*scale
	r.fill(0, h-panelH, w, panelH, 16, 128, 128)
	r.text(line1, scale, scale, h-panelH+scale, 235)
	r.text(line2, scale, scale, h-panelH+2*scale+glyphH*scale, 235)

	// Time stamp bar code along the top.
	ms := uint64(now.UnixMilli()) & (1<<StampBits - 1)
	sh := StampHeight(h)
	for i := 0; i < StampBits; i++ {
		bit := ms >> (StampBits - 1 - i) & 1
		x := i * w / StampBits
		xe := (i + 1) * w / StampBits
		yv := uint8(16)
		if bit == 1 {
			yv = 235
		}
		r.fill(x, 0, xe-x, sh, yv, 128, 128)
	}
	return img
}
