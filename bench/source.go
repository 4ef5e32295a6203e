package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// The stamp: a JPEG comment segment right after SOI holding a magic and the
// source's wall clock at the moment it writes the frame. A comment keeps the
// frame a valid JPEG for every relay and player, and sits at a fixed offset,
// so a viewer finds it without parsing.
const (
	stampMagic  = "CAMDBNCH"
	stampOffset = 2 + 4 + len(stampMagic) // SOI, COM marker and length, magic
	stampLen    = 8
)

// makeFrames encodes n distinct width x height JPEGs of about target bytes
// each (a moving pattern with noise, so they compress like a camera's), with
// room for the stamp after SOI.
func makeFrames(n, width, height, target int) ([][]byte, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]uint8, width*height)
	for i := range noise {
		noise[i] = uint8(rng.IntN(48))
	}
	render := func(k int) *image.YCbCr {
		img := image.NewYCbCr(image.Rect(0, 0, width, height), image.YCbCrSubsampleRatio420)
		for y := range height {
			for x := range width {
				v := uint8((x+y+4*k)%256/2) + noise[(y*width+x+k*7)%len(noise)]
				if ((x+2*k)/40+y/40)%2 == 0 {
					v += 60
				}
				img.Y[y*img.YStride+x] = v
			}
		}
		for y := range height / 2 {
			for x := range width / 2 {
				img.Cb[y*img.CStride+x] = uint8(128 + (x-k)%64 - 32)
				img.Cr[y*img.CStride+x] = uint8(128 + (y+k)%64 - 32)
			}
		}
		return img
	}
	// Pick the quality whose size is nearest the target on the first frame.
	first := render(0)
	best, bestDiff := 75, -1
	for q := 30; q <= 95; q++ {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, first, &jpeg.Options{Quality: q}); err != nil {
			return nil, err
		}
		if d := abs(b.Len() - target); bestDiff < 0 || d < bestDiff {
			best, bestDiff = q, d
		}
	}
	frames := make([][]byte, n)
	for k := range frames {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, render(k), &jpeg.Options{Quality: best}); err != nil {
			return nil, err
		}
		j := b.Bytes()
		seg := make([]byte, 0, len(j)+stampOffset+stampLen)
		seg = append(seg, 0xFF, 0xD8, 0xFF, 0xFE)
		seg = binary.BigEndian.AppendUint16(seg, uint16(2+len(stampMagic)+stampLen))
		seg = append(seg, stampMagic...)
		seg = append(seg, make([]byte, stampLen)...)
		frames[k] = append(seg, j[2:]...)
	}
	return frames, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// stampOf returns the stamp in a frame, or false if it has none.
func stampOf(frame []byte) (int64, bool) {
	if len(frame) < stampOffset+stampLen || string(frame[6:stampOffset]) != stampMagic {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(frame[stampOffset:])), true
}

// source serves the frames as an MJPEG stream at fps on /stream, stamping
// each as it writes it: what an IP camera or the firmware's /stream does.
type source struct {
	frames [][]byte
	fps    int
	// trickle, when set, spreads each frame's bytes over this long in
	// 1,460-byte segments, as a camera on Wi-Fi sends them.
	trickle time.Duration
	srv     *http.Server
	url     string
}

func startSource(ctx context.Context, frames [][]byte, fps int, trickle time.Duration) (*source, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	s := &source{frames: frames, fps: fps, trickle: trickle, url: "http://" + ln.Addr().String() + "/stream"}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", s.stream)
	s.srv = &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return ctx }}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	return s, nil
}

func (s *source) Close() error { return s.srv.Close() }

func (s *source) stream(w http.ResponseWriter, r *http.Request) {
	const boundary = "frame"
	w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary="+boundary)
	rc := http.NewResponseController(w)
	buf := make([]byte, 0, len(s.frames[0])+1024)
	t := time.NewTicker(time.Second / time.Duration(s.fps))
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		f := s.frames[k%len(s.frames)]
		buf = append(buf[:0], "--"+boundary+"\r\nContent-Type: image/jpeg\r\nContent-Length: "...)
		buf = strconv.AppendInt(buf, int64(len(f)), 10)
		buf = append(buf, "\r\n\r\n"...)
		at := len(buf)
		buf = append(buf, f...)
		buf = append(buf, "\r\n"...)
		binary.BigEndian.PutUint64(buf[at+stampOffset:], uint64(time.Now().UnixNano()))
		if s.trickle <= 0 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			continue
		}
		// Wi-Fi-like: the frame in segments spread over the trickle time.
		const seg = 1460
		pause := s.trickle / time.Duration((len(buf)+seg-1)/seg)
		for off := 0; off < len(buf); off += seg {
			if _, err := w.Write(buf[off:min(off+seg, len(buf))]); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			time.Sleep(pause)
		}
	}
}
