package main

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/device"
	pb "github.com/camd/camd/proto/outputv1"
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
		{"per-client cap", "max_viewers_per_client: 3\n", nil},
		{"bad per-client cap", "max_viewers_per_client: 0\n", []string{"max_viewers_per_client: must be at least 1"}},
		{"port out of range", "listen: 127.0.0.1:99999\n", []string{"listen: want a port number"}},
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
	// Each frame is sent once the viewer has read the one before, so the
	// viewer sees every one: live, offline while camd draws placeholders,
	// live again.
	frames := []struct {
		seq         uint64
		placeholder bool
		state       string
	}{
		{1, false, "live"},
		{2, false, "live"},
		{1000, true, "offline"},
		{1001, true, "offline"},
		{3, false, "live"},
	}
	// Go's own multipart reader, a client nobody here wrote.
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for _, f := range frames {
		if err := h.Send(sdk.Frame{Camera: "cam", Seq: f.seq, Captured: captured, Width: 160, Height: 120, JPEG: img, Placeholder: f.placeholder}); err != nil {
			t.Fatal(err)
		}
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		if !bytes.Equal(body, img) {
			t.Fatalf("part %d: %d bytes, want %d", f.seq, len(body), len(img))
		}
		for k, want := range map[string]string{
			"Content-Type":   "image/jpeg",
			"Content-Length": strconv.Itoa(len(img)),
			"X-Timestamp":    "1700000000.123456",
			"X-Frame-Seq":    strconv.FormatUint(f.seq, 10),
			"X-Camera-State": f.state,
		} {
			if got := p.Header.Get(k); got != want {
				t.Fatalf("part %d: %s = %q, want %q", f.seq, k, got, want)
			}
		}
	}
	// Placeholders are not counted as frames the viewer skipped.
	if st := h.Status()["cameras"].(map[string]any)["cam"].(map[string]any); st["skipped"] != 0.0 || st["frames"] != 5.0 {
		t.Fatalf("status %v", st)
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
	// Opened with ?token=, the page hands the token on to its pictures.
	resp, err = http.Get(base + "/?token=tok%2Fx")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `src="cameras/front/stream.mjpg?token=tok%2fx"`; !bytes.Contains(bytes.ToLower(page), []byte(want)) {
		t.Fatalf("index opened with a token lacks %s:\n%s", want, page)
	}
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address from (127.0.0.x), so one test can be several clients.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// Streams are capped per client address (429) and over all (503), each
// refusal with Retry-After and the limit's name; a stream that ends frees
// its slot.
func TestMaxViewers(t *testing.T) {
	h, base := start(t, []string{"cam"}, "max_viewers: 3\nmax_viewers_per_client: 2\n")
	steps := []struct {
		from     string
		code     int
		contains string
	}{
		{"127.0.0.1", 200, ""},
		{"127.0.0.1", 200, ""},
		{"127.0.0.1", 429, "too many viewers from 127.0.0.1: it has 2 open and max_viewers_per_client is 2"},
		{"127.0.0.2", 200, ""},
		{"127.0.0.3", 503, "too many viewers (max_viewers is 3)"},
	}
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for i, s := range steps {
		resp, err := clientFrom(s.from).Get(base + "/cameras/cam/stream.mjpg")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			open = append(open, resp)
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), s.contains) {
				t.Fatalf("step %d: Retry-After %q, body %q, want %q", i, resp.Header.Get("Retry-After"), body, s.contains)
			}
		}
		if resp.StatusCode != s.code {
			t.Fatalf("step %d (%s): status %d, want %d", i, s.from, resp.StatusCode, s.code)
		}
	}
	if st := h.Status(); st["viewers"] != 3.0 || st["refused"] != 2.0 {
		t.Fatalf("status %v", st)
	}
	open[0].Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for h.Status()["viewers"] != 2.0 {
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %v", h.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := clientFrom("127.0.0.3").Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after a viewer left: %d", resp.StatusCode)
	}
}

// SetCameras changes the cameras while running: viewers of a removed
// camera are disconnected, viewers of a kept one keep every frame, an
// added camera is served at once.
func TestSetCameras(t *testing.T) {
	h, base := start(t, []string{"front", "back"}, "")
	img := jpegFrame(t)
	watch := func(cam string) (*http.Response, *device.MultipartReader) {
		t.Helper()
		resp, err := http.Get(base + "/cameras/" + cam + "/stream.mjpg")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", cam, resp.StatusCode)
		}
		return resp, device.NewMultipartReader(resp.Body, Boundary, 8<<20)
	}
	next := func(cam string, r *device.MultipartReader, seq uint64) {
		t.Helper()
		if err := h.Send(sdk.Frame{Camera: cam, Seq: seq, Captured: time.Now(), JPEG: img}); err != nil {
			t.Fatal(err)
		}
		hdr, _, err := r.NextPart()
		if err != nil {
			t.Fatalf("%s: %v", cam, err)
		}
		if got := hdr.Get("X-Frame-Seq"); got != strconv.FormatUint(seq, 10) {
			t.Fatalf("%s: frame %s, want %d", cam, got, seq)
		}
	}
	_, frontR := watch("front")
	_, backR := watch("back")
	next("front", frontR, 1)
	next("back", backR, 1)

	resp, err := h.Client.SetCameras(context.Background(), &pb.SetCamerasRequest{Cameras: []string{"back", "side"}})
	if err != nil {
		t.Fatal(err)
	}
	// camd shows the new URLs.
	if want := []string{base + "/", base + "/cameras/back/stream.mjpg", base + "/cameras/side/stream.mjpg"}; !slices.Equal(resp.Urls, want) {
		t.Fatalf("URLs after SetCameras: %v, want %v", resp.Urls, want)
	}
	ended := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, _, err = frontR.NextPart()
		}
		ended <- err
	}()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the removed camera's viewer is still connected")
	}
	next("back", backR, 2) // untouched: the same connection, the next frame
	_, sideR := watch("side")
	next("side", sideR, 1)
	next("back", backR, 3)

	if code := getStatus(t, http.DefaultClient, base+"/cameras/front/stream.mjpg"); code != http.StatusNotFound {
		t.Fatalf("removed camera: %d", code)
	}
	// A removed camera's frames (camd stops them before the call) would be
	// ignored; its status is gone.
	cams := h.Status()["cameras"].(map[string]any)
	if _, ok := cams["front"]; ok || len(cams) != 2 {
		t.Fatalf("cameras in status: %v", cams)
	}
	// Re-adding a camera starts it afresh.
	if err := h.SetCameras([]string{"front", "back", "side"}); err != nil {
		t.Fatal(err)
	}
	_, frontR = watch("front")
	next("front", frontR, 7)
	next("back", backR, 4)
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
	// Stop ends the viewers' streams itself: it does not wait them out
	// (it would fail at this deadline).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("viewer still connected after Stop")
	}
}
