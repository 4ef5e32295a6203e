package device

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// fakeESP32 speaks the firmware's HTTP API: /capture (keep-alive, with
// X-Frame-Seq) and /stream in either framing.
type fakeESP32 struct {
	t       *testing.T
	srv     *httptest.Server
	sim     *Sim
	mu      sync.Mutex
	seq     int
	conns   atomic.Int64 // TCP connections accepted
	corrupt atomic.Int64 // serve this many more corrupt JPEGs from /capture
}

func newFakeESP32(t *testing.T) *fakeESP32 {
	e := &fakeESP32{t: t, sim: NewSim(320, 240, 1, 60)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /capture", e.capture)
	mux.HandleFunc("GET /stream", e.stream)
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.conns.Add(1)
		}
	}
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeESP32) frame() ([]byte, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	b, err := e.sim.Frame(uint64(e.seq), time.Now())
	if err != nil {
		e.t.Error(err)
	}
	return b, e.seq
}

func (e *fakeESP32) capture(w http.ResponseWriter, r *http.Request) {
	b, seq := e.frame()
	if e.corrupt.Add(-1) >= 0 {
		b = b[:len(b)/2]
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("X-Frame-Seq", strconv.Itoa(seq))
	w.Write(b)
}

// stream serves ?framing=camerawebserver (chunked, delimiter before each
// part) or the default ESPHome/firmware framing (raw HTTP/1.0, no chunking,
// delimiter after each part). ?cut=N cuts the connection in the middle of
// frame N.
func (e *fakeESP32) stream(w http.ResponseWriter, r *http.Request) {
	const b = "123456789000000000000987654321"
	cut, _ := strconv.Atoi(r.URL.Query().Get("cut"))
	if r.URL.Query().Get("framing") == "camerawebserver" {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary="+b)
		for i := 1; r.Context().Err() == nil; i++ {
			f, _ := e.frame()
			fmt.Fprintf(w, "\r\n--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: 1.000000\r\n\r\n", b, len(f))
			if i == cut {
				w.Write(f[:len(f)/2])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			w.Write(f)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		e.t.Error(err)
		return
	}
	defer conn.Close()
	bw := bufio.NewWriter(conn)
	_ = buf
	fmt.Fprintf(bw, "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Type: multipart/x-mixed-replace;boundary=%s\r\n\r\n--%s\r\n", b, b)
	for i := 1; ; i++ {
		f, _ := e.frame()
		fmt.Fprintf(bw, "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(f))
		if i == cut {
			bw.Write(f[:len(f)/2])
			bw.Flush()
			return
		}
		bw.Write(f)
		fmt.Fprintf(bw, "\r\n--%s\r\n", b)
		if bw.Flush() != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collect runs a Camera on src until it delivered n frames or timeout.
func collect(t *testing.T, src Source, n int, timeout time.Duration) (*Camera, []wire.Frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cam := &Camera{Name: "esp", Source: src, MinRetry: 20 * time.Millisecond, MaxRetry: 100 * time.Millisecond}
	var frames []wire.Frame
	cam.Run(ctx, func(f wire.Frame) bool {
		frames = append(frames, f)
		if len(frames) == n {
			cancel()
		}
		return true
	})
	return cam, frames
}

func TestESP32CaptureOneKeepAliveConnection(t *testing.T) {
	e := newFakeESP32(t)
	src, _ := New(SourceConfig{Type: "esp32", URL: e.srv.URL + "/", FPS: 0})
	_, frames := collect(t, src, 30, 10*time.Second)
	if len(frames) != 30 {
		t.Fatalf("got %d frames", len(frames))
	}
	for i, f := range frames {
		if f.Seq != uint64(i+1) || f.Width != 320 || f.Height != 240 {
			t.Fatalf("frame %d: seq %d size %dx%d", i, f.Seq, f.Width, f.Height)
		}
	}
	if n := e.conns.Load(); n != 1 {
		t.Fatalf("%d TCP connections for 30 captures, want 1 (keep-alive)", n)
	}
}

// The first frames a board serves are corrupt, then good ones: the bad
// ones are dropped and counted, and the good ones come through.
func TestESP32CorruptFramesDropped(t *testing.T) {
	const corrupt = 2
	e := newFakeESP32(t)
	e.corrupt.Store(corrupt)
	src, _ := New(SourceConfig{Type: "esp32", URL: e.srv.URL, FPS: 50})
	// The capture source backs off after each bad frame: 250 ms, doubling.
	cam, frames := collect(t, src, 5, 30*time.Second)
	if len(frames) != 5 {
		t.Fatalf("got %d frames", len(frames))
	}
	good := 0
	for _, f := range frames {
		if _, _, _, err := CheckJPEG(f.JPEG, 0); err != nil {
			t.Fatalf("a bad frame was forwarded: %v", err)
		}
		if !f.Placeholder { // one may come while the bad frames are backed off from
			good++
		}
	}
	if good == 0 {
		t.Fatalf("only placeholders: no good frame came after the bad ones")
	}
	if st := cam.Stats(); st.Dropped == 0 || st.Dropped > corrupt {
		t.Fatalf("%d frames counted as dropped, %d corrupt ones served: %+v", st.Dropped, corrupt, st)
	}
}

func TestESP32StreamFramings(t *testing.T) {
	for _, framing := range []string{"esphome", "camerawebserver"} {
		t.Run(framing, func(t *testing.T) {
			e := newFakeESP32(t)
			src, _ := New(SourceConfig{Type: "esp32", Mode: "stream", URL: e.srv.URL, StreamURL: e.srv.URL + "/stream?framing=" + framing})
			_, frames := collect(t, src, 10, 10*time.Second)
			if len(frames) != 10 {
				t.Fatalf("got %d frames", len(frames))
			}
			if n := e.conns.Load(); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
		})
	}
}

// A device that vanishes mid-frame: the half frame is never forwarded and
// the camera reconnects.
func TestStreamCutMidFrame(t *testing.T) {
	for _, framing := range []string{"esphome", "camerawebserver"} {
		t.Run(framing, func(t *testing.T) {
			e := newFakeESP32(t)
			src := NewMJPEG(e.srv.URL + "/stream?cut=3&framing=" + framing)
			cam, frames := collect(t, src, 6, 10*time.Second)
			if len(frames) != 6 {
				t.Fatalf("got %d frames", len(frames))
			}
			for _, f := range frames {
				if _, _, _, err := CheckJPEG(f.JPEG, 0); err != nil {
					t.Fatalf("half frame forwarded: %v", err)
				}
			}
			if st := cam.Stats(); st.Reconnects < 1 {
				t.Fatalf("no reconnect recorded: %+v", st)
			}
		})
	}
}

// A device absent at start and one that goes away later are both retried
// until they come back.
func TestDeviceGoneAndBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // absent at start

	sim := NewSim(160, 120, 1, 50)
	var seq atomic.Int64
	serve := func() *http.Server {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := sim.Frame(uint64(seq.Add(1)), time.Now())
			w.Header().Set("X-Frame-Seq", strconv.FormatInt(seq.Load(), 10))
			w.Write(b)
		})}
		go srv.Serve(l)
		return srv
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cam := &Camera{Name: "esp", Source: NewCapture("http://"+addr+"/capture", 50), MinRetry: 20 * time.Millisecond, MaxRetry: 200 * time.Millisecond}
	got := make(chan uint64, 1000)
	done := make(chan struct{})
	go func() { defer close(done); cam.Run(ctx, func(f wire.Frame) bool { got <- f.Seq; return false }) }()

	waitState := func(want State) {
		t.Helper()
		for cam.Stats().State != want {
			if ctx.Err() != nil {
				t.Fatalf("camera never reached %s: %+v", want, cam.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFrames := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			select {
			case <-got:
			case <-ctx.Done():
				t.Fatalf("frames did not resume")
			}
		}
	}
	time.Sleep(150 * time.Millisecond)
	if s := cam.Stats(); s.State == StateLive || s.Frames != 0 {
		t.Fatalf("streaming with no device: %+v", s)
	}
	srv := serve()
	waitFrames(5)
	waitState(StateLive)
	srv.Close() // the device goes away
	waitState(StateOffline)
	for len(got) > 0 {
		<-got
	}
	srv = serve()
	defer srv.Close()
	waitFrames(5)
	cancel()
	<-done
}

// A capture device that answers 200 with something that is not a JPEG (a
// router's login page, a captive portal) or with broken frames is polled
// with a growing backoff, not as fast as it answers; good frames are
// polled at full speed (fps unset), also right after bad ones.
func TestCaptureBacksOffFromBadFrames(t *testing.T) {
	const watch = 3 * time.Second
	good := testJPEG(t)
	for _, tc := range []struct {
		name string
		body func(req int64) []byte // the answer to request req, from 1
		drop DropReason
		// bad: at most maxReq requests in watch (the backoff allows
		// about 5; without it there were thousands). good: minFrames
		// frames within seconds.
		maxReq, minFrames int64
	}{
		{name: "an HTML page", body: func(int64) []byte { return []byte("<html><body>router login</body></html>") },
			drop: DropNotJPEG, maxReq: 50},
		{name: "truncated JPEGs", body: func(int64) []byte { return good[:len(good)/2] }, drop: DropTruncated, maxReq: 50},
		{name: "empty answers", body: func(int64) []byte { return nil }, drop: DropEmpty, maxReq: 50},
		{name: "good frames", body: func(int64) []byte { return good }, minFrames: 200},
		{name: "bad, then good frames", body: func(req int64) []byte {
			if req <= 3 {
				return []byte("<html></html>")
			}
			return good
		}, drop: DropNotJPEG, minFrames: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				w.Header().Set("X-Frame-Seq", strconv.FormatInt(n, 10))
				w.Write(tc.body(n))
			}))
			defer srv.Close()
			src, err := New(SourceConfig{Type: "esp32", URL: srv.URL, FPS: 0})
			if err != nil {
				t.Fatal(err)
			}
			r := start(t, &Camera{Name: "c", Source: src, OfflineAfter: 300 * time.Millisecond})
			began := time.Now()
			if tc.minFrames > 0 {
				waitFor(t, 15*time.Second, fmt.Sprintf("%d frames", tc.minFrames), func() bool { return r.cam.Stats().Frames >= uint64(tc.minFrames) })
			} else {
				time.Sleep(watch)
			}
			r.stop()
			n, st := requests.Load(), r.cam.Stats()
			t.Logf("%d requests in %v: %d frames, drops %v", n, time.Since(began).Round(time.Millisecond), st.Frames, st.Drops)
			if tc.maxReq > 0 && n > tc.maxReq {
				t.Errorf("%d requests in %v to a device answering with bad frames, want at most %d: no backoff", n, watch, tc.maxReq)
			}
			if tc.drop != 0 && st.Drops[tc.drop] == 0 {
				t.Errorf("drops %v, want %s counted", st.Drops, tc.drop)
			}
			if tc.maxReq > 0 && st.Frames != 0 {
				t.Errorf("%d frames from a device sending only bad ones", st.Frames)
			}
		})
	}
}
