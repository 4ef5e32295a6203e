package main

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/camd/camd/sdk/sdktest"
)

// TestMetrics: the output's own metrics, as camd scrapes them (the SDK's
// Metrics RPC), with one viewer watching camera cam, camera idle unwatched
// and a second viewer refused over max_viewers.
func TestMetrics(t *testing.T) {
	h, base := start(t, []string{"cam", "idle"}, "max_viewers: 1\n")
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	v, _, err := dialWHEP(t, base+"/cameras/cam/whep")
	if err != nil {
		t.Fatal(err)
	}
	v.waitFrames(t, 10, 20*time.Second)
	if _, resp, err := dialWHEP(t, base+"/cameras/cam/whep"); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a second viewer over max_viewers: %v", err)
	}

	fams := h.Metrics()
	cam, idle := []string{"camera", "cam"}, []string{"camera", "idle"}
	tests := []sdktest.MetricWant{
		want("webrtc_viewers", sdktest.Gauge, cam, sdktest.Eq(1)),
		want("webrtc_viewers", sdktest.Gauge, idle, sdktest.Eq(0)),
		want("webrtc_encoders_running", sdktest.Gauge, cam, sdktest.Eq(1)),
		want("webrtc_encoders_running", sdktest.Gauge, idle, sdktest.Eq(0)),
		want("webrtc_frames_received_total", sdktest.Counter, cam, sdktest.AtLeast(10)),
		want("webrtc_frames_received_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("webrtc_placeholder_frames_total", sdktest.Counter, cam, sdktest.Eq(0)),
		want("webrtc_frames_stale_total", sdktest.Counter, cam, sdktest.AtLeast(0)),
		want("webrtc_frames_encoded_total", sdktest.Counter, cam, sdktest.AtLeast(10)),
		want("webrtc_frames_capped_total", sdktest.Counter, cam, sdktest.Eq(0)),
		want("webrtc_keyframes_total", sdktest.Counter, cam, sdktest.AtLeast(1)),
		want("webrtc_keyframe_requests_total", sdktest.Counter, cam, sdktest.AtLeast(1)),
		want("webrtc_decode_errors_total", sdktest.Counter, cam, sdktest.Eq(0)),
		want("webrtc_encode_errors_total", sdktest.Counter, cam, sdktest.Eq(0)),
		want("webrtc_encoded_bytes_total", sdktest.Counter, cam, sdktest.AtLeast(1000)),
		want("webrtc_decode_seconds_total", sdktest.Counter, cam, sdktest.Above(0)),
		want("webrtc_encode_seconds_total", sdktest.Counter, cam, sdktest.Above(0)),
		want("webrtc_encoders_started_total", sdktest.Counter, cam, sdktest.AtLeast(1)),
		want("webrtc_viewers_refused_total", sdktest.Counter, []string{"reason", "max_viewers"}, sdktest.Eq(1)),
		want("webrtc_viewers_refused_total", sdktest.Counter, []string{"reason", "max_viewers_per_client"}, sdktest.Eq(0)),
	}
	sdktest.CheckMetrics(t, fams, "webrtc_", tests)
}

// want is a sdktest.MetricWant, written as a call so the tables stay short.
func want(name string, typ dto.MetricType, label []string, ok func(float64) bool) sdktest.MetricWant {
	return sdktest.MetricWant{Name: name, Type: typ, Label: label, OK: ok}
}
