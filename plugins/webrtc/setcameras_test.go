package main

import (
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/sdk/sdktest"
)

// TestSetCameras: the camera set changes while the output runs (a config
// reload). By the time SetCameras returns, a removed camera's viewer is
// hung up and its encoder stopped; its page and WHEP answer 404. An added
// camera plays. A viewer of a camera that stays is not disturbed: same
// session, frames keep coming, same encoder. A camera removed and added
// back plays again.
func TestSetCameras(t *testing.T) {
	p := &WebRTC{}
	h := sdktest.New(t, p)
	urls, err := h.Start("rtc", []string{"a", "b"}, "listen: 127.0.0.1:0\ncodec: vp8\n")
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(urls[0], "/")
	fd := feedCameras(t, h, simFrames(t, 160, 120, 10), "a", "b")
	whep := func(cam string) string { return base + "/cameras/" + cam + "/whep" }
	va, _, err := dialWHEP(t, whep("a"))
	if err != nil {
		t.Fatal(err)
	}
	vb, _, err := dialWHEP(t, whep("b"))
	if err != nil {
		t.Fatal(err)
	}
	va.waitFrames(t, 5, 20*time.Second)
	vb.waitFrames(t, 5, 20*time.Second)
	removed := p.pipeline("a")
	bStarted := camStatus(t, h, "b")["encoders_started"]

	// camd stops a removed camera's frames before the call.
	fd.setCameras("b", "c")
	if err := h.SetCameras([]string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	if n := removed.stats.encodersRunning.Load(); n != 0 {
		t.Fatalf("removed camera: %d encoders still running", n)
	}
	if st := removed.status(); st.Users != 0 {
		t.Fatalf("removed camera: %d users left", st.Users)
	}
	cams := h.Status()["cameras"].(map[string]any)
	if _, ok := cams["a"]; ok || cams["b"] == nil || cams["c"] == nil {
		t.Fatalf("status cameras %v, want b and c", slices.Sorted(maps.Keys(cams)))
	}
	if n := h.Status()["viewers"]; n != 1.0 {
		t.Fatalf("viewers = %v, want b's only", n)
	}
	if urls := strings.Join(p.URLs(), " "); strings.Contains(urls, "/cameras/a/") || !strings.Contains(urls, base+"/cameras/c/whep") {
		t.Fatalf("URLs after the change: %s", urls)
	}
	if _, resp, err := dialWHEP(t, whep("a")); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("WHEP to a removed camera: %v", err)
	}
	for path, want := range map[string]int{"/cameras/a/": 404, "/cameras/c/": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	index, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(index), "cameras/a/") || !strings.Contains(string(index), "cameras/c/") {
		t.Fatalf("index after the change:\n%s", index)
	}
	select {
	case <-va.ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the removed camera's viewer still has its track")
	}

	// b's viewer carries on, on the same encoder.
	vb.waitFrames(t, vb.count()+30, 20*time.Second)
	if st := camStatus(t, h, "b"); st["encoders_started"] != bStarted || st["encoders_running"] != 1.0 {
		t.Fatalf("b after the change: %v, want its encoder untouched", st)
	}

	vc, _, err := dialWHEP(t, whep("c"))
	if err != nil {
		t.Fatal(err)
	}
	vc.waitFrames(t, 5, 20*time.Second)

	// a comes back: a new pipeline that plays.
	fd.setCameras("a", "b", "c")
	if err := h.SetCameras([]string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	va2, _, err := dialWHEP(t, whep("a"))
	if err != nil {
		t.Fatal(err)
	}
	va2.waitFrames(t, 5, 20*time.Second)
	vb.hangUp(t, base) // b's session survived both changes
	if n := h.Status()["viewers"]; n != 2.0 {
		t.Fatalf("viewers = %v, want a's and c's", n)
	}
}

// TestSetCamerasStopsWHIP: a removed camera's WHIP publisher is stopped,
// and its session deleted at the SFU, before SetCameras returns; added
// back, the camera is published again.
func TestSetCamerasStopsWHIP(t *testing.T) {
	ws := newWHIPServer(t)
	h, _ := start(t, []string{"cam", "other"}, "codec: vp8\nwhip:\n  cam: {url: \""+ws.srv.URL+"/whip/cam\"}\n")
	fd := feedCameras(t, h, simFrames(t, 160, 120, 10), "cam", "other")
	ws.receiver.waitFrames(t, 5, 20*time.Second)

	fd.setCameras("other")
	if err := h.SetCameras([]string{"other"}); err != nil {
		t.Fatal(err)
	}
	if n := ws.deletes.Load(); n != 1 {
		t.Fatalf("DELETEs at the WHIP server = %d, want 1", n)
	}
	if _, ok := h.Status()["whip"]; ok {
		t.Fatalf("whip status after its camera left: %v", h.Status()["whip"])
	}

	fd.setCameras("cam", "other")
	if err := h.SetCameras([]string{"cam", "other"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the camera published again", func() bool {
		w, ok := h.Status()["whip"].(map[string]any)
		return ok && w["cam"].(map[string]any)["state"] == "connected" && ws.posts.Load() >= 2
	})
}
