package main

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // "key: message" prefixes
	}{
		{"defaults", "", nil},
		{"sample", sampleConfig, nil},
		{"unknown key", "listen: 127.0.0.1:1\nmax_viewer: 3\n", []string{"max_viewer: unknown key"}},
		{"bad listen", "listen: 8081\n", []string{"listen: want host:port"}},
		{"bad viewers and timeout", "max_viewers: 0\nwrite_timeout: soon\n", []string{`write_timeout: invalid duration "soon"`, "max_viewers: must be at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sdktest.CheckConfig(t, &MJPEG{}, []string{"cam"}, tt.yaml, tt.want...) })
	}
}

// start runs the plugin over real gRPC and returns its base URL.
func start(t *testing.T, cameras []string, extra string) (*sdktest.Harness, string) {
	t.Helper()
	h := sdktest.New(t, &MJPEG{})
	urls, err := h.Start("web", cameras, "listen: 127.0.0.1:0\n"+extra)
	if err != nil {
		t.Fatal(err)
	}
	return h, strings.TrimSuffix(urls[0], "/")
}

func jpegFrame(t testing.TB) []byte {
	b, err := os.ReadFile("../../device/testdata/frame-160x120.jpg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStreamParts(t *testing.T) {
	h, base := start(t, []string{"cam"}, "")
	resp, err := http.Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "multipart/x-mixed-replace" || params["boundary"] != Boundary {
		t.Fatalf("Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	img := jpegFrame(t)
	captured := time.Unix(1700000000, 123456000)
	sent := make(chan error, 1)
	go func() {
		for seq := uint64(1); seq <= 3; seq++ {
			if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: captured, Width: 160, Height: 120, JPEG: img}); err != nil {
				sent <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		sent <- nil
	}()
	defer func() {
		if err := <-sent; err != nil {
			t.Error(err)
		}
	}()
	// Go's own multipart reader, a client nobody here wrote.
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for i := 0; i < 2; i++ {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		if !bytes.Equal(body, img) {
			t.Fatalf("part %d: %d bytes, want %d", i, len(body), len(img))
		}
		if p.Header.Get("Content-Type") != "image/jpeg" || p.Header.Get("Content-Length") != strconv.Itoa(len(img)) {
			t.Fatalf("part headers %v", p.Header)
		}
		if ts := p.Header.Get("X-Timestamp"); ts != "1700000000.123456" {
			t.Fatalf("X-Timestamp = %q", ts)
		}
	}
}

func TestUnknownCameraAndIndex(t *testing.T) {
	_, base := start(t, []string{"front", "back"}, "")
	resp, err := http.Get(base + "/cameras/nope/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`src="cameras/back/stream.mjpg"`, `src="cameras/front/stream.mjpg"`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Fatalf("index lacks %s:\n%s", want, page)
		}
	}
}

func TestMaxViewers(t *testing.T) {
	_, base := start(t, []string{"cam"}, "max_viewers: 2\n")
	for i := 0; i < 2; i++ {
		resp, err := http.Get(base + "/cameras/cam/stream.mjpg")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
	}
	resp, err := http.Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "max_viewers is 2") {
		t.Fatalf("third viewer: %d %q", resp.StatusCode, body)
	}
}

// A viewer that stops reading is dropped after write_timeout, and a normal
// viewer of the same camera keeps getting every frame meanwhile.
func TestStalledViewerDoesNotStallOthers(t *testing.T) {
	h, base := start(t, []string{"cam"}, "write_timeout: 300ms\n")
	stalled, err := http.Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close() // never read

	good, err := http.Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer good.Body.Close()
	r := device.NewMultipartReader(good.Body, Boundary, 8<<20)

	big := make([]byte, 1<<20) // 1 MB frames fill the stalled socket quickly
	received := make(chan uint64, 1000)
	go func() {
		for {
			hdr, _, err := r.NextPart()
			if err != nil {
				close(received)
				return
			}
			n, _ := strconv.Atoi(hdr.Get("Content-Length"))
			received <- uint64(n)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	var seq uint64
	got := 0
	for time.Now().Before(deadline) {
		seq++
		if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: big}); err != nil {
			t.Fatal(err)
		}
		// The good viewer must see this frame before the next is sent.
		select {
		case <-received:
			got++
		case <-time.After(5 * time.Second):
			t.Fatalf("good viewer stuck after %d frames", got)
		}
		if status(h)["stalled_dropped"].(float64) >= 1 && got >= 20 {
			return
		}
	}
	t.Fatalf("stalled viewer not dropped: %v", status(h))
}

func status(h *sdktest.Harness) map[string]any {
	return h.Status()
}

// Stop ends viewers' connections (the stream reaches EOF).
func TestStopClosesViewers(t *testing.T) {
	h := sdktest.New(t, &MJPEG{})
	urls, err := h.Start("web", []string{"cam"}, "listen: 127.0.0.1:0\n")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(urls[1])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("viewer still connected after Stop")
	}
}
