package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/camd/camd/internal/testcert"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/wire"
)

// countingConn counts what is written to a TCP connection: Write calls,
// and the writev system calls made through its descriptor (the raw
// writes of rawio).
type countingConn struct {
	*net.TCPConn
	writes, writevs atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.TCPConn.Write(b)
}

func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.TCPConn.SyscallConn()
	return countingRawConn{rc, &c.writevs}, err
}

// countingRawConn counts the system calls made through Write and Control:
// each call of the function handed to them is one.
type countingRawConn struct {
	syscall.RawConn
	calls *atomic.Int64
}

func (c countingRawConn) Write(f func(fd uintptr) bool) error {
	return c.RawConn.Write(func(fd uintptr) bool { c.calls.Add(1); return f(fd) })
}

func (c countingRawConn) Control(f func(fd uintptr)) error {
	return c.RawConn.Control(func(fd uintptr) { c.calls.Add(1); f(fd) })
}

// countingListener hands out countingConns and remembers them.
type countingListener struct {
	net.Listener
	conns chan *countingConn
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{TCPConn: c.(*net.TCPConn)}
	l.conns <- cc
	return cc, nil
}

// Each part goes to each viewer as one vectored write (header, frame and
// boundary together), and the response head as one write before it.
func TestOneWritevPerPart(t *testing.T) {
	const viewers, frames = 3, 5
	m := bare(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := countingListener{Listener: ln, conns: make(chan *countingConn, viewers)}
	srv := &http.Server{Handler: m.Handler()}
	go srv.Serve(cl)
	defer srv.Close()
	defer m.streams.stop() // after the viewers hung up; it waits for their streams

	var readers []*multipart.Reader
	for range viewers {
		resp, err := http.Get("http://" + ln.Addr().String() + "/cameras/cam/stream.mjpg")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		readers = append(readers, multipart.NewReader(resp.Body, Boundary))
	}
	img := jpegFrame(t)
	for seq := uint64(1); seq <= frames; seq++ {
		m.HandleFrame(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: img})
		for i, r := range readers {
			p, err := r.NextPart()
			if err != nil {
				t.Fatalf("viewer %d, frame %d: %v", i, seq, err)
			}
			body, _ := io.ReadAll(p)
			if got := p.Header.Get("X-Frame-Seq"); got != strconv.FormatUint(seq, 10) || !bytes.Equal(body, img) {
				t.Fatalf("viewer %d: frame %s of %d bytes, want %d of %d", i, got, len(body), seq, len(img))
			}
		}
	}
	for i := range viewers {
		c := <-cl.conns
		if w, v := c.writes.Load(), c.writevs.Load(); w != 1 || v != frames {
			t.Errorf("viewer %d: %d writes and %d writevs, want 1 (the head) and %d (one per part)", i, w, v, frames)
		}
	}
}

// bare returns the plugin configured for camera cam and ready to serve
// its Handler without the SDK's server (for a listener or ResponseWriter
// of the test's own); its streams end with the test.
func bare(t *testing.T) *MJPEG {
	t.Helper()
	m := &MJPEG{}
	if err := m.Configure(sdk.Config{Cameras: []string{"cam"}, Raw: []byte("listen: 127.0.0.1:0\n"), Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	m.http = &sdk.HTTP{Config: m.cfg.HTTPConfig, MaxViewers: m.cfg.MaxViewers}
	m.streams.start(t.Context())
	return m
}

// plainWriter is a ResponseWriter that cannot hand over its connection,
// as an HTTP/2 one cannot.
type plainWriter struct{ w http.ResponseWriter }

func (p plainWriter) Header() http.Header         { return p.w.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.w.WriteHeader(code) }
func (p plainWriter) Flush()                      { p.w.(http.Flusher).Flush() }

// A request whose connection cannot be taken over is streamed through
// net/http, part for part the same, and its handler returns when the
// viewer leaves.
func TestStreamWithoutHijack(t *testing.T) {
	m := bare(t)
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Handler().ServeHTTP(plainWriter{w}, r)
		returned <- struct{}{}
	}))
	defer srv.Close()
	defer m.streams.stop()
	resp, err := http.Get(srv.URL + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "multipart/x-mixed-replace; boundary="+Boundary {
		t.Fatalf("headers %v", resp.Header)
	}
	r := multipart.NewReader(resp.Body, Boundary)
	img := jpegFrame(t)
	for seq := uint64(1); seq <= 3; seq++ {
		m.HandleFrame(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: img})
		p, err := r.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if body, _ := io.ReadAll(p); !bytes.Equal(body, img) || p.Header.Get("X-Frame-Seq") != strconv.FormatUint(seq, 10) {
			t.Fatalf("frame %d: %s, %d bytes", seq, p.Header.Get("X-Frame-Seq"), len(body))
		}
	}
	resp.Body.Close()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still runs after the viewer left")
	}
}

// Under the SDK's HTTP server a stream's parts are one writev on plain
// TCP (through the SDK's connection wrapper) and written in turn on TLS.
func TestVectoredUnderSDK(t *testing.T) {
	cert, key := writeCert(t, t.TempDir())
	tests := []struct {
		name     string
		tls      *sdk.TLSFiles
		vectored bool
	}{
		{"tcp", nil, true},
		{"tls", &sdk.TLSFiles{Cert: cert, Key: key}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &sdk.HTTP{Config: sdk.DefaultHTTPConfig("127.0.0.1:0")}
			h.Config.TLS = tt.tls
			if err := h.Listen(sdk.WithSecurity(t.Context(), sdk.Security{})); err != nil {
				t.Fatal(err)
			}
			h.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				defer conn.Close()
				fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n%v", newConnWriter(conn).vectored())
			}))
			defer h.Shutdown(t.Context())
			resp, err := insecureClient().Get(h.URL("/"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := strconv.FormatBool(tt.vectored); string(body) != want {
				t.Fatalf("vectored = %s, want %s", body, want)
			}
		})
	}
}

// Over HTTPS (no writev) the stream is the same.
func TestStreamTLS(t *testing.T) {
	cert, key := writeCert(t, t.TempDir())
	h, base := start(t, []string{"cam"}, fmt.Sprintf("tls: {cert: %s, key: %s}\n", cert, key))
	resp, err := insecureClient().Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%s, headers %v", resp.Status, resp.Header)
	}
	r := multipart.NewReader(resp.Body, Boundary)
	img := jpegFrame(t)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: img}); err != nil {
			t.Fatal(err)
		}
		p, err := r.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if body, _ := io.ReadAll(p); !bytes.Equal(body, img) || p.Header.Get("X-Frame-Seq") != strconv.FormatUint(seq, 10) {
			t.Fatalf("frame %d: %s, %d bytes", seq, p.Header.Get("X-Frame-Seq"), len(body))
		}
	}
}

// The stream's head has what clients rely on, the SDK's headers
// included; HEAD answers with it and neither streams nor takes a slot.
func TestStreamHead(t *testing.T) {
	h, base := start(t, []string{"cam"}, "")
	tests := []struct {
		method, camera string
		code           int
	}{
		{http.MethodGet, "cam", http.StatusOK},
		{http.MethodHead, "cam", http.StatusOK},
		{http.MethodHead, "nope", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.camera, func(t *testing.T) {
			// The GET's viewer leaves once the plugin sees it hang up.
			eventually(t, 10*time.Second, "no viewer", func() bool { return h.Status()["viewers"] == 0.0 })
			req, _ := http.NewRequest(tt.method, base+"/cameras/"+tt.camera+"/stream.mjpg", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
			if tt.code != http.StatusOK {
				return
			}
			for k, want := range map[string]string{
				"Content-Type":           "multipart/x-mixed-replace; boundary=" + Boundary,
				"Cache-Control":          "no-store, no-cache, must-revalidate, max-age=0",
				"Pragma":                 "no-cache",
				"X-Accel-Buffering":      "no",
				"X-Content-Type-Options": "nosniff",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if !resp.Close || resp.Header.Get("Date") == "" {
				t.Errorf("want Connection: close and a Date, got %v", resp.Header)
			}
			if tt.method == http.MethodHead {
				if body, _ := io.ReadAll(resp.Body); len(body) > 0 || h.Status()["viewers"] != 0.0 {
					t.Errorf("HEAD: body %q, status %v", body, h.Status())
				}
			}
		})
	}
}

// A stream ends when its viewer stops reading (write_timeout), hangs up,
// or the plugin stops, and Stop waits for every stream's goroutines; a
// stream that had nothing to write yet ends as well.
func TestStreamsEnd(t *testing.T) {
	h, base := start(t, []string{"cam", "quiet"}, "write_timeout: 200ms\n")
	var bodies []io.ReadCloser
	for _, cam := range []string{"cam", "cam", "quiet"} {
		resp, err := http.Get(base + "/cameras/" + cam + "/stream.mjpg")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	ended := make(chan error, len(bodies))
	for _, b := range bodies[1:] {
		go func() { _, err := io.Copy(io.Discard, b); ended <- err }()
	}
	// bodies[0] never reads: 1 MB frames fill its socket and it is dropped.
	big := make([]byte, 1<<20)
	for seq := uint64(1); h.Status()["stalled_dropped"] != 1.0; seq++ {
		if seq > 200 {
			t.Fatalf("the viewer that stopped reading is still there: %v", h.Status())
		}
		if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: big}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- h.Stop(t.Context()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
	for range bodies[1:] {
		select {
		case err := <-ended:
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("stream ended: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a stream is still open after Stop")
		}
	}
}

// insecureClient trusts any certificate (writeCert's).
func insecureClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key
// in dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.New(t, "127.0.0.1").Write(t, certFile, keyFile)
	return certFile, keyFile
}

// A viewer slower than the camera gets whole parts, in order, and skips
// frames: the fan-out writes what its socket takes and its goroutine the
// rest, and neither starts a part while the other is in one. The viewer
// stops reading after its first part until every frame is published,
// far more than the socket buffers hold, so parts are handed over and
// frames skipped whatever the machine's pace; then it reads slowly.
func TestSlowViewerGetsWholeParts(t *testing.T) {
	m := bare(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	defer m.streams.stop()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute)) // a broken stream fails, not hangs
	fmt.Fprintf(conn, "GET /cameras/cam/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(slowReader{conn}), nil)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(resp.Body, Boundary)

	// The frames come as from the SDK, in buffers released ones are
	// reused for: the part being handed over must stay held.
	const frames, size = 60, 256 << 10
	var bufs wire.Buffers
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= frames; seq++ {
			f := sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now()}
			bufs.Fill(&f, bytes.Repeat([]byte{byte(seq)}, size))
			m.HandleFrame(f)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var last uint64
	for last < frames {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("after frame %d: %v", last, err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := strconv.ParseUint(p.Header.Get("X-Frame-Seq"), 10, 64)
		if seq <= last || len(body) != size || !bytes.Equal(body, bytes.Repeat([]byte{byte(seq)}, size)) {
			t.Fatalf("after frame %d: frame %d with %d bytes, want a later frame's %d bytes, all its own", last, seq, len(body), size)
		}
		if last == 0 {
			<-done
		}
		last = seq
	}
	fd, _ := m.feed("cam")
	if fd.skipped.Load() == 0 {
		t.Errorf("the slow viewer skipped no frame")
	}
}

// slowReader reads at most 16 KB at a time, a millisecond apart.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.r.Read(p[:min(len(p), 16<<10)])
}

// TestFramesReleased: the plugin releases each frame once nobody holds it,
// with or without viewers, so the SDK reads the next frames into the same
// few buffers.
func TestFramesReleased(t *testing.T) {
	for _, viewers := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d viewers", viewers), func(t *testing.T) {
			m := bare(t)
			srv := httptest.NewServer(m.Handler())
			defer srv.Close()
			defer m.streams.stop()
			var readers []*multipart.Reader
			for range viewers {
				resp, err := http.Get(srv.URL + "/cameras/cam/stream.mjpg")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				readers = append(readers, multipart.NewReader(resp.Body, Boundary))
			}
			var bufs wire.Buffers
			img := jpegFrame(t)
			seen := map[*byte]bool{}
			for seq := uint64(1); seq <= 50; seq++ {
				f := sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now()}
				bufs.Fill(&f, img)
				seen[&f.JPEG[0]] = true
				m.HandleFrame(f)
				for i, r := range readers { // each viewer has it before the next
					p, err := r.NextPart()
					if err != nil {
						t.Fatalf("viewer %d, frame %d: %v", i, seq, err)
					}
					if body, _ := io.ReadAll(p); !bytes.Equal(body, img) {
						t.Fatalf("viewer %d, frame %d: not the frame sent", i, seq)
					}
				}
			}
			// The latest, and one a viewer's goroutine may still hold.
			if len(seen) > 3 {
				t.Errorf("50 frames took %d buffers: frames were not released", len(seen))
			}
		})
	}
}

// A part the fan-out handed over to a viewer that leaves before its
// goroutine takes it up is dropped as the viewer leaves, so the frame goes
// back to the SDK's buffers once the feed moves on; a part written whole
// is not dropped twice. The race (a hand-over just as the viewer's stream
// ends) is made deterministic: a real publish hands the part over (or
// writes it whole) while the viewer is on the fan-out, and the viewer's
// stream then runs with its context already ended.
func TestLeavingViewerDropsHandedOverPart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size       int // of the frame: more than the socket takes at once, or not
		handedOver bool
	}{
		{"handed over, the viewer leaves", 4 << 20, true},
		{"written whole, the viewer leaves", 1 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := bare(t)
			fd, _ := m.feed("cam")
			conn := viewerConn(t)
			v := &viewer{m: m, fd: fd, camera: "cam", remote: "test", wake: make(chan struct{}, 1), direct: newConnWriter(conn)}
			if !v.direct.vectored() {
				t.Fatal("no raw writes on a TCP connection")
			}

			var bufs wire.Buffers
			frame := func(seq uint64) sdk.Frame {
				f := sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now()}
				bufs.Fill(&f, bytes.Repeat([]byte{byte(seq)}, tc.size))
				return f
			}
			fd.fanout.add(v)
			m.HandleFrame(frame(1))
			p := fd.latest.Load()
			if got := v.state.Load() == handedOver; got != tc.handedOver {
				t.Fatalf("handed over: %v, want %v", got, tc.handedOver)
			}
			fd.fanout.remove(v) // stream adds it again

			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			v.stream(ctx, v.direct)
			if n := p.refs.Load(); n != 1 {
				t.Fatalf("after the viewer left, the part has %d holders, want 1 (the feed)", n)
			}
			m.HandleFrame(frame(2)) // the feed lets go of frame 1
			if n := p.refs.Load(); n != 0 {
				t.Fatalf("after the next frame, frame 1 has %d holders, want 0", n)
			}
			if f3 := frame(3); &f3.JPEG[0] != &p.frame.JPEG[0] {
				t.Errorf("frame 1's buffer did not go back to the SDK's buffers")
			}
		})
	}
}

// viewerConn returns the server's end of a TCP connection whose client
// never reads, with small buffers: a large part does not fit at once.
func viewerConn(t *testing.T) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	_ = client.(*net.TCPConn).SetReadBuffer(16 << 10)
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	_ = server.(*net.TCPConn).SetWriteBuffer(16 << 10)
	return server
}
