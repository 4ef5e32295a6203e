package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// TestMetrics: the output's own metrics, as camd scrapes them (the SDK's
// Metrics RPC). Camera cam has a viewer that reads every frame (and sees
// a gap of two frames camd dropped) and one that stops reading and is
// dropped; a third viewer is refused over max_viewers; camera idle has
// nothing.
func TestMetrics(t *testing.T) {
	h, base := start(t, []string{"cam", "idle"}, "max_viewers: 2\nwrite_timeout: 300ms\n")
	good, err := http.Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	seqs := make(chan uint64, 100)
	defer func() { // the reader ends with the stream
		good.Body.Close()
		for range seqs {
		}
	}()
	go func() {
		defer close(seqs)
		r := device.NewMultipartReader(good.Body, Boundary, 8<<20)
		for {
			hdr, _, err := r.NextPart()
			if err != nil {
				return
			}
			seq, _ := strconv.ParseUint(hdr.Get("X-Frame-Seq"), 10, 64)
			seqs <- seq
		}
	}()
	send := func(seq uint64, jpeg []byte) {
		t.Helper()
		if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: jpeg}); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-seqs:
			if got != seq {
				t.Fatalf("the viewer got frame %d, want %d", got, seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the viewer did not get frame %d", seq)
		}
	}
	small := jpegFrame(t)
	for _, seq := range []uint64{1, 2, 5} { // 3 and 4 dropped by camd
		send(seq, small)
	}

	stalled, err := http.Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close() // never read
	refused, err := clientFrom("127.0.0.2").Get(base + "/cameras/cam/stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	refused.Body.Close()
	if refused.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a third viewer: %s, want 503", refused.Status)
	}
	big := make([]byte, 1<<20) // fills the stalled viewer's socket quickly
	for seq, deadline := uint64(6), time.Now().Add(30*time.Second); ; seq++ {
		send(seq, big)
		if n, _ := sdktest.Sample(h.Metrics(), "mjpeg_viewers_stalled_total", nil); n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the viewer that stopped reading was not dropped")
		}
	}
	// Its slot is given back once its handler has returned.
	eventually(t, 10*time.Second, "the stalled viewer gone", func() bool {
		n, _ := sdktest.Sample(h.Metrics(), "mjpeg_viewers", []string{"camera", "cam"})
		return n == 1
	})

	cam, idle := []string{"camera", "cam"}, []string{"camera", "idle"}
	sdktest.CheckMetrics(t, h.Metrics(), "mjpeg_", []sdktest.MetricWant{
		want("mjpeg_viewers", sdktest.Gauge, cam, sdktest.Eq(1)),
		want("mjpeg_viewers", sdktest.Gauge, idle, sdktest.Eq(0)),
		want("mjpeg_frames_received_total", sdktest.Counter, cam, sdktest.AtLeast(4)),
		want("mjpeg_frames_received_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("mjpeg_frames_sent_total", sdktest.Counter, cam, sdktest.AtLeast(4)),
		want("mjpeg_frames_sent_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("mjpeg_frames_skipped_total", sdktest.Counter, cam, sdktest.AtLeast(2)),
		want("mjpeg_frames_skipped_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("mjpeg_viewers_stalled_total", sdktest.Counter, nil, sdktest.Eq(1)),
		want("mjpeg_viewers_refused_total", sdktest.Counter, []string{"reason", "max_viewers"}, sdktest.Eq(1)),
		want("mjpeg_viewers_refused_total", sdktest.Counter, []string{"reason", "max_viewers_per_client"}, sdktest.Eq(0)),
	})
}

// eventually polls cond until it holds or fails the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// want is a sdktest.MetricWant, written as a call so the tables stay short.
func want(name string, typ dto.MetricType, label []string, ok func(float64) bool) sdktest.MetricWant {
	return sdktest.MetricWant{Name: name, Type: typ, Label: label, OK: ok}
}
