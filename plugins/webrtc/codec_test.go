package main

import (
	"bytes"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vp8dec "golang.org/x/image/vp8"

	"github.com/camd/camd/device"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// meanDiff is the mean absolute difference of two images' planes.
func meanDiff(a, b *image.YCbCr) float64 {
	var sum, n float64
	w, h := a.Rect.Dx(), a.Rect.Dy()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			d := float64(a.Y[a.YOffset(x, y)]) - float64(b.Y[b.YOffset(x, y)])
			c1 := float64(a.Cb[a.COffset(x, y)]) - float64(b.Cb[b.COffset(x, y)])
			c2 := float64(a.Cr[a.COffset(x, y)]) - float64(b.Cr[b.COffset(x, y)])
			sum += abs(d) + abs(c1) + abs(c2)
			n += 3
		}
	}
	return sum / n
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// TestDecoder checks libturbojpeg's output against image/jpeg's for every
// sampling an ESP32 or IP camera sends, and that odd sizes are cropped to
// even ones for the encoders.
func TestDecoder(t *testing.T) {
	tests := []struct {
		file string
		w, h int
	}{
		{"yuv420-320x240.jpg", 320, 240},
		{"yuv422-320x240.jpg", 320, 240}, // typical of OV2640 sensors
		{"odd-161x121.jpg", 160, 120},
		{"gray-160x120.jpg", 160, 120},   // image/jpeg fallback
		{"yuv444-160x120.jpg", 160, 120}, // image/jpeg fallback
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := readFile(t, filepath.Join("testdata", tt.file))
			turbo := NewDecoder()
			defer turbo.Close()
			std := &Decoder{}
			a, err := turbo.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if a.Rect.Dx() != tt.w || a.Rect.Dy() != tt.h || a.SubsampleRatio != image.YCbCrSubsampleRatio420 {
				t.Fatalf("turbo: %v %v, want %dx%d 4:2:0", a.Rect, a.SubsampleRatio, tt.w, tt.h)
			}
			a2 := image.NewYCbCr(a.Rect, a.SubsampleRatio) // a is reused by the next Decode
			copyYCbCr(a2, a)
			s, err := std.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if s.Rect.Dx() != tt.w || s.Rect.Dy() != tt.h {
				t.Fatalf("image/jpeg: %v", s.Rect)
			}
			if d := meanDiff(a2, s); d > 2.5 {
				t.Fatalf("turbo and image/jpeg differ by %.2f per sample", d)
			}
		})
	}
}

func copyYCbCr(dst, src *image.YCbCr) {
	for y := 0; y < src.Rect.Dy(); y++ {
		copy(dst.Y[y*dst.YStride:][:src.Rect.Dx()], src.Y[src.YOffset(src.Rect.Min.X, src.Rect.Min.Y+y):])
	}
	for y := 0; y < (src.Rect.Dy()+1)/2; y++ {
		o := src.COffset(src.Rect.Min.X, src.Rect.Min.Y+2*y)
		copy(dst.Cb[y*dst.CStride:][:(src.Rect.Dx()+1)/2], src.Cb[o:])
		copy(dst.Cr[y*dst.CStride:][:(src.Rect.Dx()+1)/2], src.Cr[o:])
	}
}

func TestDecoderRejectsBadJPEG(t *testing.T) {
	good := readFile(t, "testdata/yuv420-320x240.jpg")
	d := NewDecoder()
	defer d.Close()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)/3],
		"garbage":   bytes.Repeat([]byte{0xff, 0xd8, 0x42}, 100),
	} {
		if img, err := d.Decode(b); err == nil && name != "truncated" {
			t.Errorf("%s: decoded %v, want an error", name, img.Rect)
		}
	}
	// The decoder still works after errors.
	if _, err := d.Decode(good); err != nil {
		t.Fatal(err)
	}
}

// simFrames renders n frames of the simulated camera, 1/fps apart.
func simFrames(t testing.TB, w, h, n int) [][]byte {
	t.Helper()
	sim := device.NewSim(w, h, 30, 80)
	start := time.Now()
	out := make([][]byte, n)
	for i := range out {
		b, err := sim.Frame(uint64(i), start.Add(time.Duration(i)*time.Second/30))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// TestEncoders encodes sim frames with each codec: the first frame and
// every forced one are keyframes, others are not, and the bitstream
// decodes to the right size in a decoder nobody here wrote.
func TestEncoders(t *testing.T) {
	frames := simFrames(t, 320, 240, 12)
	for _, codec := range codecNames() {
		t.Run(codec, func(t *testing.T) {
			dec := NewDecoder()
			defer dec.Close()
			enc, err := newEncoder(codec, EncoderConfig{Width: 320, Height: 240, FPS: 30, BitrateKbps: 800, KeyInterval: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			var stream []byte
			var first []byte
			for i, f := range frames {
				img, err := dec.Decode(f)
				if err != nil {
					t.Fatal(err)
				}
				force := i == 0 || i == 7
				b, err := enc.Encode(img, force)
				if err != nil {
					t.Fatal(err)
				}
				if len(b) == 0 {
					t.Fatalf("frame %d: empty output", i)
				}
				if got := isKeyframe(codec, b); got != force {
					t.Fatalf("frame %d: keyframe = %v, want %v", i, got, force)
				}
				// A viewer joining at any keyframe needs the parameter sets
				// with it.
				if codec == "h264" && force && (!hasNAL(b, 7) || !hasNAL(b, 8)) {
					t.Fatalf("frame %d: keyframe without SPS and PPS", i)
				}
				if i == 0 {
					first = append([]byte(nil), b...)
				}
				stream = append(stream, b...)
			}
			switch codec {
			case "vp8":
				d := vp8dec.NewDecoder()
				d.Init(bytes.NewReader(first), len(first))
				fh, err := d.DecodeFrameHeader()
				if err != nil {
					t.Fatal(err)
				}
				if fh.Width != 320 || fh.Height != 240 {
					t.Fatalf("VP8 keyframe is %dx%d", fh.Width, fh.Height)
				}
				if _, err := d.DecodeFrame(); err != nil {
					t.Fatalf("VP8 keyframe does not decode: %v", err)
				}
			case "h264":
				probeH264(t, stream, 320, 240, len(frames))
			}
		})
	}
}

func TestEncoderRejectsOddSize(t *testing.T) {
	for _, codec := range codecNames() {
		if _, err := newEncoder(codec, EncoderConfig{Width: 321, Height: 240, FPS: 30, BitrateKbps: 500, KeyInterval: time.Second}); err == nil {
			t.Errorf("%s: odd width accepted", codec)
		}
	}
}

// probeH264 has ffprobe decode an Annex B stream and checks its size,
// profile and frame count.
func probeH264(t *testing.T, stream []byte, w, h, frames int) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Fatal("ffprobe is missing: run scripts/setup.sh test")
	}
	path := filepath.Join(t.TempDir(), "out.h264")
	if err := os.WriteFile(path, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=width,height,profile,nb_read_frames", "-of", "default=nw=1", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{"width=" + strconv.Itoa(w), "height=" + strconv.Itoa(h), "profile=Constrained Baseline", "nb_read_frames=" + strconv.Itoa(frames)} {
		if !strings.Contains(got, want+"\n") {
			t.Fatalf("ffprobe says\n%s\nwant %s", got, want)
		}
	}
}

// FuzzDecode: no input crashes the decoder (libturbojpeg runs in-process
// through cgo) or makes it return an image an encoder cannot take.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"yuv420-320x240.jpg", "yuv422-320x240.jpg", "odd-161x121.jpg", "gray-160x120.jpg", "yuv444-160x120.jpg"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		// Big pictures are slow (image/jpeg under the fuzzer's
		// instrumentation takes seconds), not different: keep to small ones.
		if c, err := jpeg.DecodeConfig(bytes.NewReader(b)); err == nil && c.Width*c.Height > 640*480 {
			return
		}
		img, err := d.Decode(b)
		if err != nil {
			return
		}
		w, h := img.Rect.Dx(), img.Rect.Dy()
		if w%2 != 0 || h%2 != 0 || w*h > MaxPixels || img.SubsampleRatio != image.YCbCrSubsampleRatio420 {
			t.Fatalf("decoded %v %v", img.Rect, img.SubsampleRatio)
		}
	})
}

func TestDecoderRefusesHugeHeader(t *testing.T) {
	b := readFile(t, "testdata/yuv420-320x240.jpg")
	// Patch the SOF0 frame size to 60000x60000.
	i := bytes.Index(b, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0")
	}
	huge := append([]byte(nil), b...)
	huge[i+5], huge[i+6], huge[i+7], huge[i+8] = 0xea, 0x60, 0xea, 0x60
	for _, d := range []*Decoder{NewDecoder(), {}} {
		if _, err := d.Decode(huge); err == nil || !strings.Contains(err.Error(), "60000x60000") {
			t.Fatalf("turbo=%v: %v, want a size error", d.Turbo, err)
		}
	}
}

// hasNAL reports whether an Annex B access unit holds a NAL unit of type t.
func hasNAL(b []byte, t byte) bool {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 && b[i+3]&0x1f == t {
			return true
		}
	}
	return false
}
