package device

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// Framings seen in the wild, each carrying the same three frames.
func framings(frames [][]byte) map[string][]byte {
	const b = "123456789000000000000987654321"
	out := map[string][]byte{}

	var esphome bytes.Buffer // delimiter first, then after each part
	esphome.WriteString("--" + b + "\r\n")
	for _, f := range frames {
		fmt.Fprintf(&esphome, "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(f))
		esphome.Write(f)
		esphome.WriteString("\r\n--" + b + "\r\n")
	}
	out["esphome"] = esphome.Bytes()

	var cws bytes.Buffer // CameraWebServer: CRLF + delimiter before each part
	for _, f := range frames {
		fmt.Fprintf(&cws, "\r\n--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: 12.345678\r\n\r\n", b, len(f))
		cws.Write(f)
	}
	out["camerawebserver"] = cws.Bytes()

	var nolen bytes.Buffer // mjpg-streamer style without Content-Length, closing delimiter
	for _, f := range frames {
		fmt.Fprintf(&nolen, "--%s\r\nContent-Type: image/jpeg\r\n\r\n", b)
		nolen.Write(f)
		nolen.WriteString("\r\n")
	}
	nolen.WriteString("--" + b + "--\r\n")
	out["no content-length"] = nolen.Bytes()

	var lf bytes.Buffer // bare LF line ends
	for _, f := range frames {
		fmt.Fprintf(&lf, "--%s\nContent-Type: image/jpeg\nContent-Length: %d\n\n", b, len(f))
		lf.Write(f)
		lf.WriteString("\n")
	}
	out["LF line ends"] = lf.Bytes()
	return out
}

func readAll(t *testing.T, r *MultipartReader) ([][]byte, error) {
	t.Helper()
	var got [][]byte
	for {
		_, body, err := r.NextPart()
		if err != nil {
			return got, err
		}
		got = append(got, body)
	}
}

func TestMultipartFramings(t *testing.T) {
	good := testJPEG(t)
	frames := [][]byte{good, good[:len(good)-1], append(bytes.Clone(good), '\n', '-', '-')}
	frames[1] = append(bytes.Clone(good[:len(good)-2]), 0xFF, 0xD9) // still valid
	for name, stream := range framings(frames) {
		for _, boundary := range []string{"123456789000000000000987654321", "--123456789000000000000987654321", `"123456789000000000000987654321"`} {
			t.Run(name+"/"+boundary, func(t *testing.T) {
				got, err := readAll(t, NewMultipartReader(bytes.NewReader(stream), boundary, 1<<20))
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v", err)
				}
				if len(got) != len(frames) {
					t.Fatalf("got %d parts, want %d", len(got), len(frames))
				}
				for i := range frames {
					if !bytes.Equal(got[i], frames[i]) {
						t.Fatalf("part %d: %d bytes, want %d", i, len(got[i]), len(frames[i]))
					}
				}
			})
		}
	}
}

// TestMultipartRecycle: a body given back is reused for the next part
// that fits, in every framing, and a body kept is never written again.
func TestMultipartRecycle(t *testing.T) {
	good := testJPEG(t)
	small := append(bytes.Clone(good[:len(good)/2]), 0xFF, 0xD9)
	big := append(bytes.Clone(good), good...)
	// Parts 0 and 2 are recycled; 1 and 3 are kept. Part 1 fits in part
	// 0's buffer, part 3 is larger than part 2's.
	frames := [][]byte{good, small, good, big}
	for name, stream := range framings(frames) {
		t.Run(name, func(t *testing.T) {
			r := NewMultipartReader(bytes.NewReader(stream), "123456789000000000000987654321", 1<<20)
			var kept, bodies [][]byte
			for i := range frames {
				_, body, err := r.NextPart()
				if err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				if !bytes.Equal(body, frames[i]) {
					t.Fatalf("part %d: %d bytes, want %d", i, len(body), len(frames[i]))
				}
				bodies = append(bodies, body)
				if i%2 == 0 {
					r.Recycle(body)
				} else {
					kept = append(kept, body)
				}
			}
			if &bodies[1][0] != &bodies[0][0] {
				t.Error("part 1 was not read into part 0's recycled buffer")
			}
			if cap(bodies[2]) < len(big) && &bodies[3][0] == &bodies[2][0] {
				t.Error("part 3 was read into a buffer too small for it")
			}
			if !bytes.Equal(kept[0], small) || !bytes.Equal(kept[1], big) {
				t.Error("a kept part was overwritten")
			}
		})
	}
}

func TestMultipartBadInput(t *testing.T) {
	good := testJPEG(t)
	tests := []struct {
		name  string
		in    string
		max   int
		want  error
		parts int
	}{
		{"garbage without boundary", strings.Repeat("garbage\r\n", 20000), 1 << 16, ErrBadMultipart, 0},
		{"endless line", strings.Repeat("x", 200000), 1 << 16, ErrBadMultipart, 0},
		{"bad content-length", "--b\r\nContent-Length: abc\r\n\r\n", 0, ErrBadMultipart, 0},
		{"negative content-length", "--b\r\nContent-Length: -5\r\n\r\n", 0, ErrBadMultipart, 0},
		{"part too large", "--b\r\nContent-Length: 999999\r\n\r\n", 1000, ErrFrameTooLarge, 0},
		{"header without colon", "--b\r\nnonsense\r\n\r\n", 0, ErrBadMultipart, 0},
		{"too many headers", "--b\r\n" + strings.Repeat("X-A: 1\r\n", 40) + "\r\n", 0, ErrBadMultipart, 0},
		{"truncated body", "--b\r\nContent-Length: 100\r\n\r\nshort", 0, io.ErrUnexpectedEOF, 0},
		{"truncated header", "--b\r\nContent-Ty", 0, io.ErrUnexpectedEOF, 0},
		{"one good part then cut", fmt.Sprintf("--b\r\nContent-Length: %d\r\n\r\n%s\r\n--b\r\nContent-Length: 50\r\n\r\nxx", len(good), good), 0, io.ErrUnexpectedEOF, 1},
		{"content-length lies, resync", fmt.Sprintf("--b\r\nContent-Length: 3\r\n\r\nabcdefgh\r\n--b\r\nContent-Length: %d\r\n\r\n%s\r\n--b--\r\n", len(good), good), 0, io.EOF, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, NewMultipartReader(strings.NewReader(tt.in), "b", tt.max))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(got) != tt.parts {
				t.Fatalf("got %d parts, want %d", len(got), tt.parts)
			}
		})
	}
}

// FuzzMultipartReader: the reader must never panic or return a part over
// the limit, whatever the input.
func FuzzMultipartReader(f *testing.F) {
	good := testJPEG(f)
	for _, s := range framings([][]byte{good[:200], good[:10]}) {
		f.Add(s)
	}
	f.Add([]byte("--123456789000000000000987654321\r\nContent-Length: 4\r\n\r\nabcd\r\n--123456789000000000000987654321--"))
	// The boundary is declared with a leading "--": both "--" + it and it
	// as declared delimit parts.
	f.Add([]byte("----123456789000000000000987654321\r\n\r\nab\r\n--123456789000000000000987654321\r\n\r\ncd\r\n----123456789000000000000987654321--"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewMultipartReader(bytes.NewReader(in), "--123456789000000000000987654321", 4096)
		for i := 0; i < 1000; i++ {
			_, body, err := r.NextPart()
			if err != nil {
				return
			}
			if len(body) > 4096 {
				t.Fatalf("part of %d bytes over the limit", len(body))
			}
		}
	})
}

// A boundary declared with a leading "--" is found whether the server
// writes it as declared (the common quirk) or with "--" before it, as
// RFC 2046 says, in either place a delimiter goes.
func TestMultipartBoundaryDashes(t *testing.T) {
	good := testJPEG(t)
	for _, tc := range []struct {
		declared, written string
		contentLength     bool
	}{
		{"frame", "--frame", false},
		{"frame", "--frame", true},
		{"--frame", "--frame", false},    // the quirk: the delimiter declared as the boundary
		{"--frame", "--frame", true},     //
		{"--frame", "----frame", false},  // RFC 2046: "--" + boundary
		{"--frame", "----frame", true},   //
		{`"--frame"`, "----frame", true}, // quoted
	} {
		t.Run(fmt.Sprintf("%s written %s, content-length %v", tc.declared, tc.written, tc.contentLength), func(t *testing.T) {
			var b bytes.Buffer
			for range 3 {
				b.WriteString(tc.written + "\r\nContent-Type: image/jpeg\r\n")
				if tc.contentLength {
					fmt.Fprintf(&b, "Content-Length: %d\r\n", len(good))
				}
				b.WriteString("\r\n")
				b.Write(good)
				b.WriteString("\r\n")
			}
			b.WriteString(tc.written + "--\r\n")
			got, err := readAll(t, NewMultipartReader(bytes.NewReader(b.Bytes()), tc.declared, 1<<20))
			if err != io.EOF {
				t.Fatalf("err = %v, want io.EOF at the closing delimiter", err)
			}
			if len(got) != 3 {
				t.Fatalf("got %d parts, want 3", len(got))
			}
			for i, body := range got {
				if !bytes.Equal(body, good) {
					t.Fatalf("part %d: %d bytes, want the %d sent", i, len(body), len(good))
				}
			}
		})
	}
}

// Parts that end with more than the one line end the framing strips
// (jpeg + CRLFCRLF without Content-Length, as Flask/OpenCV servers send,
// or a Content-Length that counts the CRLF) are good frames once
// CheckJPEG trimmed them; a part cut short is still truncated.
func TestMultipartTrailingLineEnds(t *testing.T) {
	good := testJPEG(t)
	for _, tc := range []struct {
		name string
		part func(b *bytes.Buffer)
		want error
	}{
		{"no content-length, CRLF", func(b *bytes.Buffer) {
			b.WriteString("--frame\r\nContent-Type: image/jpeg\r\n\r\n")
			b.Write(good)
			b.WriteString("\r\n")
		}, nil},
		{"no content-length, CRLFCRLF", func(b *bytes.Buffer) {
			b.WriteString("--frame\r\nContent-Type: image/jpeg\r\n\r\n")
			b.Write(good)
			b.WriteString("\r\n\r\n")
		}, nil},
		{"content-length counts the CRLF", func(b *bytes.Buffer) {
			fmt.Fprintf(b, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(good)+2)
			b.Write(good)
			b.WriteString("\r\n")
		}, nil},
		{"content-length counts CRLFCRLF", func(b *bytes.Buffer) {
			fmt.Fprintf(b, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(good)+4)
			b.Write(good)
			b.WriteString("\r\n\r\n")
		}, nil},
		{"truncated, CRLFCRLF", func(b *bytes.Buffer) {
			b.WriteString("--frame\r\nContent-Type: image/jpeg\r\n\r\n")
			b.Write(good[:len(good)/2])
			b.WriteString("\r\n\r\n")
		}, ErrTruncatedJPEG},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			for range 3 {
				tc.part(&b)
			}
			b.WriteString("--frame--\r\n")
			got, err := readAll(t, NewMultipartReader(bytes.NewReader(b.Bytes()), "frame", 1<<20))
			if err != io.EOF || len(got) != 3 {
				t.Fatalf("%d parts, err %v; want 3 and io.EOF", len(got), err)
			}
			for i, body := range got {
				w, h, n, err := CheckJPEG(body, 0)
				if !errors.Is(err, tc.want) {
					t.Fatalf("part %d: CheckJPEG: %v, want %v", i, err, tc.want)
				}
				if tc.want == nil && (w != 160 || h != 120 || !bytes.Equal(body[:n], good)) {
					t.Fatalf("part %d: %dx%d, %d bytes kept; want 160x120 and the %d bytes sent", i, w, h, n, len(good))
				}
			}
		})
	}
}

// The boundary in Content-Type, read as leniently as ffmpeg and go2rtc
// read it: camera firmwares write what mime.ParseMediaType refuses.
func TestMultipartBoundaryParam(t *testing.T) {
	for _, tc := range []struct {
		contentType, boundary string
		ok                    bool
	}{
		{"multipart/x-mixed-replace; boundary=frame", "frame", true},
		{`multipart/x-mixed-replace; boundary="a b"`, "a b", true},
		{"multipart/x-mixed-replace;boundary=--video boundary--", "--video boundary--", true}, // a real firmware's
		{"multipart/x-mixed-replace; boundary=frame:1", "frame:1", true},
		{"Multipart/X-Mixed-Replace; Boundary=--myboundary; charset=x y", "--myboundary", true},
		{"multipart/x-mixed-replace", "", true}, // learnt from the stream
		{"image/jpeg", "", false},
		{"text/html; boundary=x y", "", false},
		{"", "", false},
	} {
		b, ok := multipartBoundary(tc.contentType)
		if b != tc.boundary || ok != tc.ok {
			t.Errorf("multipartBoundary(%q) = %q, %v; want %q, %v", tc.contentType, b, ok, tc.boundary, tc.ok)
		}
	}
}

// A stream whose delimiters are not the declared boundary (or that
// declared none) is read by the first delimiter line it writes, as
// written (one firmware's is "--video boundary--"); one whose delimiters
// never come says so after a frame's worth of bytes; one that writes its
// delimiter only after each part syncs after the first.
func TestMultipartUndeclaredBoundary(t *testing.T) {
	good := testJPEG(t)
	frames := [][]byte{good, good, good}
	for name, stream := range framings(frames) {
		for _, declared := range []string{"", "myboundary", "--other"} {
			t.Run(name+"/"+declared, func(t *testing.T) {
				got, err := readAll(t, NewMultipartReader(bytes.NewReader(stream), declared, 1<<20))
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v", err)
				}
				if len(got) != len(frames) {
					t.Fatalf("got %d parts, want %d", len(got), len(frames))
				}
			})
		}
	}
	var firmware bytes.Buffer
	for range 3 {
		fmt.Fprintf(&firmware, "--video boundary--\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(good), good)
	}
	for _, declared := range []string{"", "x", "--video boundary--"} {
		got, err := readAll(t, NewMultipartReader(bytes.NewReader(firmware.Bytes()), declared, 1<<20))
		if len(got) != 3 || !errors.Is(err, io.ErrUnexpectedEOF) && err != io.EOF {
			t.Fatalf("delimiters \"--video boundary--\", declared %q: %d parts, %v", declared, len(got), err)
		}
	}

	big := append(append(bytes.Clone(good[:len(good)-2]), bytes.Repeat([]byte{0x55}, 100<<10)...), 0xFF, 0xD9)
	var after bytes.Buffer // no delimiter before the first part
	for range 3 {
		fmt.Fprintf(&after, "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n--frame\r\n", len(big), big)
	}
	got, _ := readAll(t, NewMultipartReader(bytes.NewReader(after.Bytes()), "frame", 1<<20))
	if len(got) < 2 {
		t.Fatalf("delimiters only after parts of 100 KB: %d parts, want the 2 after the first", len(got))
	}

	var n countingReader
	n.r = strings.NewReader(strings.Repeat("preamble without a delimiter\r\n", 100000))
	_, _, err := NewMultipartReader(&n, "frame", 64<<10).NextPart()
	if !errors.Is(err, ErrBadMultipart) || n.n > 256<<10 {
		t.Fatalf("no delimiter in 3 MB: %v after reading %d bytes", err, n.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
