package device

import (
	"bytes"
	"errors"
	"image/jpeg"
	"os"
	"testing"
)

func testJPEG(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/frame-160x120.jpg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckJPEG(t *testing.T) {
	good := testJPEG(t)
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    error
		wantLen int
	}{
		{"valid", good, 0, nil, len(good)},
		{"zero padding after EOI", append(bytes.Clone(good), 0, 0, 0, 0), 0, nil, len(good)},
		// What multipart framing leaves: Flask/OpenCV's jpeg+CRLFCRLF
		// without Content-Length, a Content-Length counting the CRLF.
		{"CRLF after EOI", append(bytes.Clone(good), "\r\n"...), 0, nil, len(good)},
		{"CRLFCRLF after EOI", append(bytes.Clone(good), "\r\n\r\n"...), 0, nil, len(good)},
		{"LF after EOI", append(bytes.Clone(good), '\n'), 0, nil, len(good)},
		{"spaces and tabs after EOI", append(bytes.Clone(good), " \t \r\n"...), 0, nil, len(good)},
		{"zero padding then CRLF", append(bytes.Clone(good), 0, 0, 0, '\r', '\n'), 0, nil, len(good)},
		{"CRLF then zero padding", append(bytes.Clone(good), '\r', '\n', 0, 0), 0, nil, len(good)},
		{"white space up to the limit", append(bytes.Clone(good), bytes.Repeat([]byte{'\n'}, maxSpaceTail)...), 0, nil, len(good)},
		{"white space over the limit", append(bytes.Clone(good), bytes.Repeat([]byte{'\n'}, maxSpaceTail+1)...), 0, ErrTruncatedJPEG, 0},
		{"truncated, then CRLF", append(bytes.Clone(good[:len(good)/2]), "\r\n\r\n"...), 0, ErrTruncatedJPEG, 0},
		{"truncated, then zeros and CRLF", append(bytes.Clone(good[:len(good)/2]), 0, 0, '\r', '\n'), 0, ErrTruncatedJPEG, 0},
		{"text after EOI", append(bytes.Clone(good), "\r\nX"...), 0, ErrTruncatedJPEG, 0},
		{"only SOI and CRLF", []byte{0xFF, 0xD8, '\r', '\n'}, 0, ErrTruncatedJPEG, 0},
		{"empty", nil, 0, ErrEmptyFrame, 0},
		{"not a jpeg", []byte("<html>502 Bad Gateway</html>"), 0, ErrNotJPEG, 0},
		{"truncated", good[:len(good)/2], 0, ErrTruncatedJPEG, 0},
		{"truncated to SOI", good[:2], 0, ErrNotJPEG, 0},
		{"too large", good, 100, ErrFrameTooLarge, 0},
		{"garbage between SOI and EOI", append([]byte{0xFF, 0xD8, 1, 2, 3, 4, 5, 6}, 0xFF, 0xD9), 0, ErrCorruptJPEG, 0},
		{"segment overruns", append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x40, 0x00, 1, 2}, 0xFF, 0xD9), 0, ErrCorruptJPEG, 0},
		{"no frame header", []byte{0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9}, 0, ErrCorruptJPEG, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, h, n, err := CheckJPEG(tt.in, tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want == nil && (w != 160 || h != 120 || n != tt.wantLen) {
				t.Fatalf("got %dx%d n=%d, want 160x120 n=%d", w, h, n, tt.wantLen)
			}
		})
	}
}

// FuzzCheckJPEG: CheckJPEG must never panic, and whatever it accepts must
// start with SOI, end with EOI and be within the limit.
func FuzzCheckJPEG(f *testing.F) {
	good := testJPEG(f)
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xD9})
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xC0, 0, 8, 8, 0, 1, 0, 1, 1, 0xFF, 0xD9})
	f.Add(append(bytes.Clone(good), "\r\n\r\n"...))
	f.Add(append(bytes.Clone(good), 0, 0, '\r', '\n'))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xD9, '\r', '\n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		w, h, n, err := CheckJPEG(b, 1<<20)
		if err != nil {
			return
		}
		if n > len(b) || n < 4 || b[0] != 0xFF || b[1] != 0xD8 || b[n-2] != 0xFF || b[n-1] != 0xD9 || w <= 0 || h <= 0 {
			t.Fatalf("accepted bad frame: n=%d w=%d h=%d", n, w, h)
		}
	})
}

func TestSimFramesDecode(t *testing.T) {
	for _, size := range [][2]int{{640, 480}, {1280, 720}, {162, 98}} {
		b, err := NewSim(size[0], size[1], 1, 80).Frame(7, timeForTest)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if got := img.Bounds().Size(); got.X != size[0] || got.Y != size[1] {
			t.Fatalf("size %v, want %v", got, size)
		}
		if w, h, _, err := CheckJPEG(b, 0); err != nil || w != size[0] || h != size[1] {
			t.Fatalf("CheckJPEG = %d %d %v", w, h, err)
		}
	}
}
