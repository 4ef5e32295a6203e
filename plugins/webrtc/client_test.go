package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	rtpcodecs "github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// start runs the plugin over real gRPC and returns the harness and base URL.
func start(t *testing.T, cameras []string, extra string) (*sdktest.Harness, string) {
	t.Helper()
	h := sdktest.New(t, &WebRTC{})
	urls, err := h.Start("rtc", cameras, "listen: 127.0.0.1:0\n"+extra)
	if err != nil {
		t.Fatal(err)
	}
	return h, strings.TrimSuffix(urls[0], "/")
}

// startWith is start with camd's Security (auth, CORS origins), as camd
// sends it in Configure.
func startWith(t *testing.T, cameras []string, extra string, sec sdk.Security) (*sdktest.Harness, string) {
	t.Helper()
	h := sdktest.New(t, &WebRTC{})
	resp, err := h.Client.Configure(context.Background(), &pb.ConfigureRequest{
		Output: "rtc", Cameras: cameras, ConfigYaml: []byte("listen: 127.0.0.1:0\n" + extra), Security: sdk.SecurityToProto(sec),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) > 0 || resp.StartError != "" || len(resp.Urls) == 0 {
		t.Fatalf("configure: %v %s", resp.Errors, resp.StartError)
	}
	return h, strings.TrimSuffix(resp.Urls[0], "/")
}

// feed sends sim frames of one camera to the plugin at 30 fps until the
// test ends.
func feed(t *testing.T, h *sdktest.Harness, cam string, frames [][]byte) *feeder {
	return feedCameras(t, h, frames, cam)
}

// feeder sends frames of a changing set of cameras to the plugin, as camd
// does: 30 live frames a second per camera, or a placeholder a second
// while the camera is offline. Capture times are exactly 1/30 s apart
// whatever the machine's speed, so the plugin measures 30 fps even on a
// busy machine. One goroutine sends for all cameras: the harness's frame
// stream takes one sender.
type feeder struct {
	mu          sync.Mutex
	cams        []string
	offline     map[string]bool
	placeholder []byte
}

// feedCameras starts a feeder for cams; it stops when the test ends.
func feedCameras(t *testing.T, h *sdktest.Harness, frames [][]byte, cams ...string) *feeder {
	fd := &feeder{cams: cams, offline: map[string]bool{}, placeholder: placeholderJPEG(t, 320, 240)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		t0 := time.Now()
		for seq := uint64(1); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			captured := t0.Add(time.Duration(seq) * time.Second / 30)
			for _, f := range fd.frames(seq, captured, frames) {
				if err := h.Send(f); err != nil {
					if ctx.Err() == nil {
						t.Errorf("send: %v", err)
					}
					return
				}
			}
		}
	}()
	return fd
}

// frames returns what is due at tick seq.
func (fd *feeder) frames(seq uint64, captured time.Time, live [][]byte) []sdk.Frame {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	var out []sdk.Frame
	for _, cam := range fd.cams {
		switch {
		case !fd.offline[cam]:
			out = append(out, sdk.Frame{Camera: cam, Seq: seq, Captured: captured, JPEG: live[int(seq)%len(live)]})
		case seq%30 == 0:
			out = append(out, sdk.Frame{Camera: cam, Seq: seq, Captured: captured, JPEG: fd.placeholder, Placeholder: true})
		}
	}
	return out
}

// setCameras changes the cameras sent from the next tick on.
func (fd *feeder) setCameras(cams ...string) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.cams = cams
}

// setOffline switches a camera between live frames and placeholders.
func (fd *feeder) setOffline(cam string, offline bool) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.offline[cam] = offline
}

// viewer is a pion WHEP client: the reference implementation's own stack,
// not ours, receiving the camera's track.
type viewer struct {
	pc       *webrtc.PeerConnection
	session  string // the Location of the WHEP session
	mu       sync.Mutex
	mime     string
	packets  int
	frames   [][]byte // depacketized frames, from the first keyframe on
	gotFrame chan struct{}
	ended    chan struct{}             // closed when the track ends (the output hung up)
	onSample func(rtpTimestamp uint32) // called with mu held
	onPacket func(*rtp.Packet)         // called with mu held, for every packet
}

// dialWHEP does WHEP against whepURL offering the given codecs (all pion's
// defaults when none).
func dialWHEP(t *testing.T, whepURL string, mimes ...string) (*viewer, *http.Response, error) {
	t.Helper()
	return dialWHEPWith(t, whepURL, nil, mimes...)
}

// dialWHEPWith is dialWHEP with extra request headers (Authorization,
// Origin).
func dialWHEPWith(t *testing.T, whepURL string, hdr http.Header, mimes ...string) (*viewer, *http.Response, error) {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	return dialWHEPSettings(t, whepURL, hdr, se, mimes...)
}

// dialWHEPSettings is dialWHEPWith with the viewer's own ICE settings.
func dialWHEPSettings(t *testing.T, whepURL string, hdr http.Header, se webrtc.SettingEngine, mimes ...string) (*viewer, *http.Response, error) {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if len(mimes) == 0 {
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
	}
	for i, mt := range mimes {
		c := webrtc.RTPCodecCapability{MimeType: mt, ClockRate: 90000}
		if mt == webrtc.MimeTypeH264 {
			c.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
		}
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: c, PayloadType: webrtc.PayloadType(100 + i)}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &viewer{pc: pc, gotFrame: make(chan struct{}, 1), ended: make(chan struct{})}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		defer close(v.ended)
		v.read(tr)
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	req, err := http.NewRequest(http.MethodPost, whepURL, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, hdr)
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return nil, resp, fmt.Errorf("WHEP: %s: %s", resp.Status, body)
	}
	v.session = resp.Header.Get("Location")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	return v, resp, nil
}

// read depacketizes the track into frames, skipping to the first keyframe
// as a decoder must.
func (v *viewer) read(tr *webrtc.TrackRemote) {
	mime := tr.Codec().MimeType
	codec := "vp8"
	var depack = rtpcodecs.VP8Packet{}
	sb := samplebuilder.New(256, &depack, 90000)
	if strings.EqualFold(mime, webrtc.MimeTypeH264) {
		codec = "h264"
		sb = samplebuilder.New(256, &rtpcodecs.H264Packet{}, 90000)
	}
	v.mu.Lock()
	v.mime = mime
	v.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		v.mu.Lock()
		v.packets++
		if v.onPacket != nil {
			v.onPacket(pkt)
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			if len(v.frames) == 0 && !isKeyframe(codec, s.Data) {
				continue
			}
			v.frames = append(v.frames, s.Data)
			if v.onSample != nil {
				v.onSample(s.PacketTimestamp)
			}
			select {
			case v.gotFrame <- struct{}{}:
			default:
			}
		}
		v.mu.Unlock()
	}
}

// waitFrames waits until the viewer has n frames (the first a keyframe).
func (v *viewer) waitFrames(t *testing.T, n int, within time.Duration) [][]byte {
	t.Helper()
	deadline := time.After(within)
	for {
		v.mu.Lock()
		if len(v.frames) >= n {
			out := append([][]byte(nil), v.frames...)
			v.mu.Unlock()
			return out
		}
		got, pk := len(v.frames), v.packets
		v.mu.Unlock()
		select {
		case <-v.gotFrame:
		case <-deadline:
			t.Fatalf("viewer got %d frames (%d packets) in %v, want %d", got, pk, within, n)
		}
	}
}

// count returns how many frames the viewer has.
func (v *viewer) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.frames)
}

// hangUp ends the WHEP session with DELETE, as the spec says.
func (v *viewer) hangUp(t *testing.T, base string) {
	t.Helper()
	u, _ := url.Parse(base)
	ref, _ := url.Parse(v.session)
	req, _ := http.NewRequest(http.MethodDelete, u.ResolveReference(ref).String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: %s", v.session, resp.Status)
	}
	v.pc.Close()
}

// camStatus returns one camera's pipeline counters from the plugin's
// Status over gRPC.
func camStatus(t *testing.T, h *sdktest.Harness, cam string) map[string]any {
	t.Helper()
	return h.Status()["cameras"].(map[string]any)[cam].(map[string]any)
}

// eventually polls cond until it holds or fails the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func concat(frames [][]byte) []byte { return bytes.Join(frames, nil) }
