package device

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// TestSourcesReuseFramesNobodyKept: every source reads a frame into the
// bytes of an earlier one that emit did not keep, and never touches a
// frame emit kept.
func TestSourcesReuseFramesNobodyKept(t *testing.T) {
	sim := NewSim(160, 120, 1, 50)
	var jpegs [2][]byte // different content and sizes, served in turn
	for i := range jpegs {
		b, err := sim.Frame(uint64(i+1), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		jpegs[i] = b
	}
	mjpeg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary=f")
		rc := http.NewResponseController(w)
		for i := 0; r.Context().Err() == nil; i++ {
			j := jpegs[i%2]
			fmt.Fprintf(w, "--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(j))
			w.Write(j)
			w.Write([]byte("\r\n"))
			rc.Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}))
	defer mjpeg.Close()
	// The firmware's /capture: a JPEG with its length and number. Without
	// the length (chunked), as some boards answer, it is read to the end.
	var captured atomic.Int64
	captureServer := func(length bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seq := captured.Add(1)
			j := jpegs[seq%2]
			w.Header().Set("Content-Type", "image/jpeg")
			w.Header().Set("X-Frame-Seq", strconv.FormatInt(seq, 10))
			if length {
				w.Header().Set("Content-Length", strconv.Itoa(len(j)))
			}
			w.Write(j)
		}))
	}
	capture, chunked := captureServer(true), captureServer(false)
	defer capture.Close()
	defer chunked.Close()

	for _, tc := range []struct {
		name string
		src  Source
	}{
		{"sim", NewSim(160, 120, 100, 50)},
		{"mjpeg", NewMJPEG(mjpeg.URL)},
		{"capture", NewCapture(capture.URL, 100)},
		{"capture, chunked", NewCapture(chunked.URL, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := contextWithTimeout(t, 30*time.Second)
			defer cancel()
			type keptFrame struct{ jpeg, was []byte }
			var kept []keptFrame
			dropped := map[*byte]bool{} // first bytes of frames not kept
			reused := 0
			cam := &Camera{Name: "c", Source: tc.src}
			cam.Run(ctx, func(f wire.Frame) bool {
				if f.Placeholder {
					return false
				}
				if dropped[&f.JPEG[0]] {
					reused++
				}
				if f.Seq%3 == 0 {
					kept = append(kept, keptFrame{f.JPEG, bytes.Clone(f.JPEG)})
				} else {
					dropped[&f.JPEG[0]] = true
				}
				if f.Seq >= 30 {
					cancel()
				}
				return f.Seq%3 == 0
			})
			if len(kept) < 10 {
				t.Fatalf("only %d frames kept", len(kept))
			}
			for i, k := range kept {
				if !bytes.Equal(k.jpeg, k.was) {
					t.Fatalf("kept frame %d was overwritten", i)
				}
			}
			if reused == 0 {
				t.Error("no frame reused the bytes of one that was not kept")
			}
		})
	}
}
