package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// stamped returns a frame of n bytes starting with the source's stamp.
func stamped(stamp uint64, n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xFF, 0xD8, 0xFF, 0xFE, 0, 2 + byte(len(stampMagic)) + stampLen})
	copy(f[6:], stampMagic)
	binary.BigEndian.PutUint64(f[stampOffset:], stamp)
	return f
}

// chunk applies the chunked transfer coding, in chunks of the given sizes
// (cycled), with the last chunk if end.
func chunk(body []byte, sizes []int, end bool) []byte {
	var out bytes.Buffer
	for i := 0; len(body) > 0; i++ {
		n := min(len(body), sizes[i%len(sizes)])
		fmt.Fprintf(&out, "%x\r\n", n)
		out.Write(body[:n])
		out.WriteString("\r\n")
		body = body[n:]
	}
	if end {
		out.WriteString("0\r\n\r\n")
	}
	return out.Bytes()
}

func TestStreamParser(t *testing.T) {
	frames := [][]byte{stamped(1, 40000), stamped(2, 100), stamped(3, 37000)}
	var camdBody, go2rtcBody bytes.Buffer
	for _, f := range frames {
		// camd's plugin: delimiter, headers, frame, CRLF.
		fmt.Fprintf(&camdBody, "--camd\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Seq: 1\r\n\r\n", len(f))
		camdBody.Write(f)
		camdBody.WriteString("\r\n")
		// go2rtc: the same with its own boundary and LF-free headers.
		fmt.Fprintf(&go2rtcBody, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(f))
		go2rtcBody.Write(f)
		go2rtcBody.WriteString("\r\n")
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=camd\r\nConnection: close\r\n\r\n"
	chunkedHead := "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\nTransfer-Encoding: chunked\r\n\r\n"
	streams := []struct {
		name   string
		stream []byte
		err    error // after the frames
	}{
		{"raw body (camd)", append([]byte(head), camdBody.Bytes()...), nil},
		{"chunked, a chunk per write (go2rtc)", append([]byte(chunkedHead), chunk(go2rtcBody.Bytes(), []int{60, 40000, 2, 60, 100, 2, 60, 37000, 2}, false)...), nil},
		{"chunked, odd chunks", append([]byte(chunkedHead), chunk(go2rtcBody.Bytes(), []int{1, 7, 4096, 3}, false)...), nil},
		{"chunked, then the last chunk", append([]byte(chunkedHead), chunk(go2rtcBody.Bytes(), []int{1000}, true)...), errStreamEnded},
	}
	for _, s := range streams {
		// Pieces as a socket may deliver them: all at once, byte by
		// byte, and at random cuts.
		cuts := map[string]func(rest int) int{
			"whole":      func(rest int) int { return rest },
			"bytes":      func(int) int { return 1 },
			"random cut": func(rest int) int { return 1 + rand.IntN(rest) },
		}
		for cut, next := range cuts {
			t.Run(s.name+"/"+cut, func(t *testing.T) {
				var got []uint64
				p := newStreamParser(func(start []byte) {
					stamp, ok := stampOf(start)
					if !ok {
						t.Errorf("frame %d: no stamp in its first bytes", len(got)+1)
					}
					got = append(got, uint64(stamp))
				})
				var err error
				for b := s.stream; len(b) > 0 && err == nil; {
					n := next(len(b))
					err = p.feed(b[:n])
					b = b[n:]
				}
				if err != s.err {
					t.Errorf("err = %v, want %v", err, s.err)
				}
				if fmt.Sprint(got) != "[1 2 3]" {
					t.Errorf("stamps %v, want [1 2 3]", got)
				}
			})
		}
	}
}

func TestStreamParserBadInput(t *testing.T) {
	for _, tc := range []struct{ name, stream string }{
		{"not found", "HTTP/1.1 404 Not Found\r\n\r\n"},
		{"no Content-Length", "HTTP/1.1 200 OK\r\n\r\n--f\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8"},
		{"bad Content-Length", "HTTP/1.1 200 OK\r\n\r\n--f\r\nContent-Length: x\r\n\r\n"},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
		{"endless line", "HTTP/1.1 200 OK\r\n\r\n" + string(bytes.Repeat([]byte("a"), 2*maxLine))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newStreamParser(func([]byte) { t.Error("a frame from bad input") })
			if err := p.feed([]byte(tc.stream)); err == nil {
				t.Error("no error")
			}
		})
	}
}

func FuzzStreamParser(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n--f\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n--f\r\nContent-Length: 3\r\n\r\nabc\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := newStreamParser(func(start []byte) {
			if len(start) > stampOffset+stampLen {
				t.Fatalf("a frame's start of %d bytes", len(start))
			}
		})
		_ = p.feed(b)
		if len(p.hline) > maxLine+len(b) || len(p.mline) > maxLine+len(b) {
			t.Fatal("a line outgrew its bound")
		}
	})
}
