package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	pb "github.com/camd/camd/proto/outputv1"
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

	fams := scrape(t, h)
	cam, idle := []string{"camera", "cam"}, []string{"camera", "idle"}
	tests := []metricWant{
		{"webrtc_viewers", gauge, cam, eq(1)},
		{"webrtc_viewers", gauge, idle, eq(0)},
		{"webrtc_encoders_running", gauge, cam, eq(1)},
		{"webrtc_encoders_running", gauge, idle, eq(0)},
		{"webrtc_frames_received_total", counter, cam, atLeast(10)},
		{"webrtc_frames_received_total", counter, idle, eq(0)},
		{"webrtc_placeholder_frames_total", counter, cam, eq(0)},
		{"webrtc_frames_stale_total", counter, cam, atLeast(0)},
		{"webrtc_frames_encoded_total", counter, cam, atLeast(10)},
		{"webrtc_frames_capped_total", counter, cam, eq(0)},
		{"webrtc_keyframes_total", counter, cam, atLeast(1)},
		{"webrtc_keyframe_requests_total", counter, cam, atLeast(1)},
		{"webrtc_decode_errors_total", counter, cam, eq(0)},
		{"webrtc_encode_errors_total", counter, cam, eq(0)},
		{"webrtc_encoded_bytes_total", counter, cam, atLeast(1000)},
		{"webrtc_decode_seconds_total", counter, cam, above(0)},
		{"webrtc_encode_seconds_total", counter, cam, above(0)},
		{"webrtc_encoders_started_total", counter, cam, atLeast(1)},
		{"webrtc_viewers_refused_total", counter, []string{"reason", "max_viewers"}, eq(1)},
		{"webrtc_viewers_refused_total", counter, []string{"reason", "max_viewers_per_client"}, eq(0)},
	}
	checkMetrics(t, fams, "webrtc_", tests)
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
