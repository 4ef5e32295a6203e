package main

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/camd/camd/device"
	pb "github.com/camd/camd/proto/outputv1"
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
		if n, _ := sample(scrape(t, h), "mjpeg_viewers_stalled_total", nil); n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the viewer that stopped reading was not dropped")
		}
	}
	// Its slot is given back once its handler has returned.
	eventually(t, 10*time.Second, "the stalled viewer gone", func() bool {
		n, _ := sample(scrape(t, h), "mjpeg_viewers", []string{"camera", "cam"})
		return n == 1
	})

	cam, idle := []string{"camera", "cam"}, []string{"camera", "idle"}
	checkMetrics(t, scrape(t, h), "mjpeg_", []metricWant{
		{"mjpeg_viewers", gauge, cam, eq(1)},
		{"mjpeg_viewers", gauge, idle, eq(0)},
		{"mjpeg_frames_received_total", counter, cam, atLeast(4)},
		{"mjpeg_frames_received_total", counter, idle, eq(0)},
		{"mjpeg_frames_sent_total", counter, cam, atLeast(4)},
		{"mjpeg_frames_sent_total", counter, idle, eq(0)},
		{"mjpeg_frames_skipped_total", counter, cam, atLeast(2)},
		{"mjpeg_frames_skipped_total", counter, idle, eq(0)},
		{"mjpeg_viewers_stalled_total", counter, nil, eq(1)},
		{"mjpeg_viewers_refused_total", counter, []string{"reason", "max_viewers"}, eq(1)},
		{"mjpeg_viewers_refused_total", counter, []string{"reason", "max_viewers_per_client"}, eq(0)},
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

// The metric checks below are the same in every plugin's tests.

const (
	gauge   = dto.MetricType_GAUGE
	counter = dto.MetricType_COUNTER
)

// metricWant is a sample a scrape must hold: its family's name and type,
// one label pair, and a condition on its value.
type metricWant struct {
	name  string
	typ   dto.MetricType
	label []string // name, value; nil: no labels
	ok    func(float64) bool
}

func eq(want float64) func(float64) bool     { return func(v float64) bool { return v == want } }
func atLeast(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
func above(floor float64) func(float64) bool { return func(v float64) bool { return v > floor } }

// scrape returns the plugin's metrics as camd gets them: the text of the
// SDK's Metrics RPC, parsed as camd parses it.
func scrape(t *testing.T, h *sdktest.Harness) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := h.Client.Metrics(context.Background(), &pb.MetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(resp.Text))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, resp.Text)
	}
	return fams
}

// checkMetrics checks every want, and the names: each family of the
// plugin's own (not the SDK's go_ and process_ ones) starts with prefix,
// is a counter exactly when it ends in _total, has help, and is wanted.
func checkMetrics(t *testing.T, fams map[string]*dto.MetricFamily, prefix string, wants []metricWant) {
	t.Helper()
	checkWants(t, fams, wants)
	tested := map[string]bool{}
	for _, w := range wants {
		tested[w.name] = true
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("the SDK's Go runtime and process metrics are missing")
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("metric %s lacks the plugin's prefix %s", name, prefix)
		}
		if (f.GetType() == counter) != strings.HasSuffix(name, "_total") {
			t.Errorf("metric %s is a %s: counters, and only they, end in _total", name, f.GetType())
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
		if !tested[name] {
			t.Errorf("metric %s is not tested", name)
		}
	}
}

// checkWants checks that fams hold every want.
func checkWants(t *testing.T, fams map[string]*dto.MetricFamily, wants []metricWant) {
	t.Helper()
	for _, w := range wants {
		f := fams[w.name]
		if f == nil {
			t.Errorf("no metric %s", w.name)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("%s is a %s, want a %s", w.name, f.GetType(), w.typ)
		}
		v, ok := sample(fams, w.name, w.label)
		if !ok {
			t.Errorf("%s has no sample labelled %q", w.name, w.label)
		} else if !w.ok(v) {
			t.Errorf("%s%q = %v", w.name, w.label, v)
		}
	}
}

// sample returns the value of the sample of family name that has the
// label pair (name, value; nil: the sample without labels), and whether
// there is one.
func sample(fams map[string]*dto.MetricFamily, name string, label []string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		match := len(label) == 0 && len(m.Label) == 0
		for _, l := range m.Label {
			match = match || len(label) == 2 && l.GetName() == label[0] && l.GetValue() == label[1]
		}
		if match {
			return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
