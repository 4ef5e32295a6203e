package main

import (
	"fmt"
	"testing"
	"time"
)

var benchSizes = [][2]int{{640, 480}, {1280, 720}}

// BenchmarkDecodeEncode is the per-frame cost of a camera's pipeline:
// libturbojpeg decode plus encode, per codec and size, on sim frames
// (moving pattern, clock, noise texture). Reported as ms per frame; one
// thread.
func BenchmarkDecodeEncode(b *testing.B) {
	for _, codec := range codecNames() {
		for _, sz := range benchSizes {
			b.Run(fmt.Sprintf("%s/%dx%d", codec, sz[0], sz[1]), func(b *testing.B) {
				frames := simFrames(b, sz[0], sz[1], 60)
				dec := NewDecoder()
				defer dec.Close()
				enc, err := newEncoder(codec, EncoderConfig{Width: sz[0], Height: sz[1], FPS: 30, BitrateKbps: 1500, KeyInterval: 2 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				defer enc.Close()
				var decT, encT time.Duration
				bytes := 0
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					img, err := dec.Decode(frames[i%len(frames)])
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					out, err := enc.Encode(img, false)
					if err != nil {
						b.Fatal(err)
					}
					encT += time.Since(t1)
					decT += t1.Sub(t0)
					bytes += len(out)
				}
				b.ReportMetric(float64(decT.Microseconds())/1000/float64(b.N), "ms-decode")
				b.ReportMetric(float64(encT.Microseconds())/1000/float64(b.N), "ms-encode")
				b.ReportMetric(float64(bytes*8*30)/1000/float64(b.N), "kbps-at-30fps")
			})
		}
	}
}
