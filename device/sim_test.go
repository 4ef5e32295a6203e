package device

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"
	"time"
)

var timeForTest = time.Date(2026, 11, 24, 12, 34, 56, 789e6, time.UTC)

// DecodeStamp reads the time stamp bar code back from a decoded frame, as
// a viewer measuring latency would.
func decodeStamp(img image.Image) uint64 {
	b := img.Bounds()
	y := b.Min.Y + StampHeight(b.Dy())/2
	var v uint64
	for i := 0; i < StampBits; i++ {
		x := b.Min.X + (2*i+1)*b.Dx()/(2*StampBits)
		r, g, bl, _ := img.At(x, y).RGBA()
		v <<= 1
		if (r+g+bl)/3 > 0x8000 {
			v |= 1
		}
	}
	return v
}

func TestSimStamp(t *testing.T) {
	b, err := NewSim(640, 480, 1, 60).Frame(1, timeForTest)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(timeForTest.UnixMilli()) & (1<<StampBits - 1)
	if got := decodeStamp(img); got != want {
		t.Fatalf("stamp = %d, want %d", got, want)
	}
}

func TestSimStreamPacesFrames(t *testing.T) {
	ctx, cancel := contextWithTimeout(t, 10*time.Second)
	defer cancel()
	n := 0
	var last time.Time
	err := NewSim(160, 120, 20, 50).Stream(ctx, func(f RawFrame) bool {
		if _, _, _, err := CheckJPEG(f.JPEG, 0); err != nil {
			t.Errorf("bad frame: %v", err)
		}
		if !f.Captured.After(last) {
			t.Errorf("capture times not increasing")
		}
		last = f.Captured
		n++
		if n == 10 {
			cancel()
		}
		return false // the next frame may reuse the bytes
	})
	if n < 10 || err == nil {
		t.Fatalf("got %d frames, err %v", n, err)
	}
}
