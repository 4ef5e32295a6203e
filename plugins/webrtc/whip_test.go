package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camd/camd/sdk/sdktest"
	"github.com/pion/webrtc/v4"
)

// whipServer is a minimal WHIP endpoint (an SFU's ingest side) built on
// pion: it answers offers, receives the track, and records DELETEs.
type whipServer struct {
	t        *testing.T
	srv      *httptest.Server
	refuse   atomic.Int32 // answer this many POSTs with 503 first
	posts    atomic.Int32
	deletes  atomic.Int32
	mu       sync.Mutex
	auth     string
	offer    string  // the last offer
	receiver *viewer // reuses the WHEP test client's depacketizer
}

// newWHIPServer starts a WHIP server on 127.0.0.1.
func newWHIPServer(t *testing.T) *whipServer { return newWHIPServerOn(t, "127.0.0.1") }

// newWHIPServerOn starts a WHIP server on host (an IP address); its ICE
// gathers on every address.
func newWHIPServerOn(t *testing.T, host string) *whipServer {
	ws := &whipServer{t: t, receiver: &viewer{gotFrame: make(chan struct{}, 1)}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/cam", ws.post)
	mux.HandleFunc("DELETE /whip/session", func(w http.ResponseWriter, r *http.Request) { ws.deletes.Add(1) })
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ws.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	ws.srv.Start()
	t.Cleanup(ws.srv.Close)
	return ws
}

func (ws *whipServer) post(w http.ResponseWriter, r *http.Request) {
	ws.posts.Add(1)
	ws.mu.Lock()
	ws.auth = r.Header.Get("Authorization")
	ws.mu.Unlock()
	if ws.refuse.Add(-1) >= 0 {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	offer, _ := io.ReadAll(r.Body)
	ws.mu.Lock()
	ws.offer = string(offer)
	ws.mu.Unlock()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		ws.t.Error(err)
		return
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		ws.t.Error(err)
		return
	}
	ws.t.Cleanup(func() { pc.Close() })
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { ws.receiver.read(tr) })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	_ = pc.SetLocalDescription(answer)
	<-gathered
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whip/session") // relative, as many SFUs answer
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

// TestWHIPPublish: a camera is published to a WHIP server, after a refused
// first attempt; a local WHEP viewer shares the same encoder; stopping the
// output deletes the session at the server.
func TestWHIPPublish(t *testing.T) {
	ws := newWHIPServer(t)
	ws.refuse.Store(1)
	h, base := start(t, []string{"cam"}, "codec: vp8\nwhip:\n  cam: {url: \""+ws.srv.URL+"/whip/cam\", token: s3cret}\n")
	feed(t, h, "cam", simFrames(t, 320, 240, 10))

	frames := ws.receiver.waitFrames(t, 20, 15*time.Second)
	checkDecodes(t, "vp8", frames)
	if n := ws.posts.Load(); n != 2 {
		t.Fatalf("POSTs = %d, want a refused one and a retry", n)
	}
	ws.mu.Lock()
	auth := ws.auth
	ws.mu.Unlock()
	if auth != "Bearer s3cret" {
		t.Fatalf("Authorization %q", auth)
	}
	st := h.Status()
	pub := st["whip"].(map[string]any)["cam"].(map[string]any)
	if pub["state"] != "connected" || pub["connects"] != 1.0 || pub["last_error"] == "" {
		t.Fatalf("whip status %v", pub)
	}
	sdktest.CheckWants(t, h.Metrics(), []sdktest.MetricWant{
		want("webrtc_whip_connected", sdktest.Gauge, []string{"camera", "cam"}, sdktest.Eq(1)),
		want("webrtc_whip_connects_total", sdktest.Counter, []string{"camera", "cam"}, sdktest.Eq(1)),
	})

	v, _, err := dialWHEP(t, base+"/cameras/cam/whep")
	if err != nil {
		t.Fatal(err)
	}
	v.waitFrames(t, 5, 15*time.Second)
	if cs := camStatus(t, h, "cam"); cs["encoders_running"] != 1.0 || cs["encoders_running_peak"] != 1.0 || cs["users"] != 2.0 {
		t.Fatalf("publisher and viewer: %v, want one encoder for both", cs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ws.deletes.Load(); n != 1 {
		t.Fatalf("DELETEs at the WHIP server = %d, want 1", n)
	}
}

// TestWHIPGathersOnItsRoute: the publisher of a plugin listening on
// 127.0.0.1 dials out: it offers candidates on the address its route to
// the WHIP server starts from (loopback for a server on this host's
// loopback, the LAN address for one on the LAN), not listen's, and
// publishes.
func TestWHIPGathersOnItsRoute(t *testing.T) {
	lan, _ := nonLoopbackIPv4(t)
	tests := []struct{ name, server string }{
		{"server on loopback", "127.0.0.1"},
		{"server on another address", lan},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.server == "" {
				t.Skip("this machine has no IPv4 address beyond loopback")
			}
			ws := newWHIPServerOn(t, tt.server)
			h, _ := start(t, []string{"cam"}, "whip:\n  cam: {url: \""+ws.srv.URL+"/whip/cam\"}\n")
			feed(t, h, "cam", simFrames(t, 160, 120, 5))
			ws.receiver.waitFrames(t, 10, 20*time.Second)
			ws.mu.Lock()
			offer := ws.offer
			ws.mu.Unlock()
			var cands int
			for _, line := range strings.Split(offer, "\n") {
				if f := strings.Fields(line); strings.HasPrefix(line, "a=candidate:") && len(f) > 4 {
					cands++
					if f[4] != tt.server {
						t.Errorf("the publisher offers a candidate on %s, want only %s: %s", f[4], tt.server, line)
					}
				}
			}
			if cands == 0 {
				t.Fatalf("no candidate in the offer:\n%s", offer)
			}
		})
	}
}
