package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk/sdktest"
)

// TestMetrics: the output's own metrics, as camd scrapes them (the SDK's
// Metrics RPC). Camera cam is served and written to the timelapse, then
// its disk runs low, then its folder cannot be written; a request waiting
// for a frame is refused over max_viewers_per_client; camera idle has
// nothing.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	var free atomic.Uint64
	free.Store(10 << 30)
	h := sdktest.New(t, &Snapshot{freeSpace: func(string) (uint64, error) { return free.Load(), nil }})
	urls, err := h.Start("stills", []string{"cam", "idle"},
		fmt.Sprintf("listen: 127.0.0.1:0\ndir: %s\nevery: 20ms\nmin_free: 1GB\nmax_viewers_per_client: 1\n", dir))
	if err != nil {
		t.Fatal(err)
	}
	snap := strings.TrimSuffix(urls[0], "/") + "/cameras/cam/snapshot.jpg"
	cam, idle := []string{"camera", "cam"}, []string{"camera", "idle"}
	var seq uint64
	// until sends a frame at a time until the camera's metric name
	// reaches min.
	until := func(name string, min float64) {
		t.Helper()
		waitFor(t, name, func() bool {
			seq++
			send(t, h, seq, time.Now())
			v, _ := sample(scrape(t, h), name, cam)
			return v >= min
		})
	}

	until("snapshot_timelapse_frames_written_total", 2)
	for range 2 {
		if resp, _ := get(t, snap); resp.StatusCode != 200 {
			t.Fatalf("a still: %s", resp.Status)
		}
	}
	// One request waits for a newer frame; a second from the same client
	// is refused; the first is answered by the next frame.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, _ := getFrom(t, "127.0.0.1", snap+"?newer_than="+strconv.FormatUint(seq, 10)+"&timeout=30s"); resp.StatusCode != 200 {
			t.Errorf("a waiting request: %s", resp.Status)
		}
	}()
	waitFor(t, "a waiting request", func() bool { return httpStats(h)["viewers"] == 1.0 })
	if resp, _ := getFrom(t, "127.0.0.1", snap+"?newer_than="+strconv.FormatUint(seq, 10)+"&timeout=30s"); resp.StatusCode != 429 {
		t.Fatalf("a second waiting request from one client: %s, want 429", resp.Status)
	}
	seq++
	send(t, h, seq, time.Now())
	wg.Wait()

	free.Store(100 << 20)
	until("snapshot_timelapse_skipped_low_disk_total", 1)
	if v, _ := sample(scrape(t, h), "snapshot_timelapse_low_disk", cam); v != 1 {
		t.Fatalf("snapshot_timelapse_low_disk = %v below min_free", v)
	}
	free.Store(10 << 30)
	// The camera's folder becomes a file: writes fail.
	if err := os.RemoveAll(filepath.Join(dir, "cam")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cam"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	until("snapshot_timelapse_write_errors_total", 1)

	checkMetrics(t, scrape(t, h), "snapshot_", []metricWant{
		{"snapshot_stills_served_total", counter, cam, eq(3)},
		{"snapshot_stills_served_total", counter, idle, eq(0)},
		{"snapshot_timelapse_frames_written_total", counter, cam, atLeast(2)},
		{"snapshot_timelapse_frames_written_total", counter, idle, eq(0)},
		{"snapshot_timelapse_skipped_low_disk_total", counter, cam, atLeast(1)},
		{"snapshot_timelapse_skipped_low_disk_total", counter, idle, eq(0)},
		{"snapshot_timelapse_write_errors_total", counter, cam, atLeast(1)},
		{"snapshot_timelapse_write_errors_total", counter, idle, eq(0)},
		{"snapshot_timelapse_low_disk", gauge, cam, eq(0)}, // space came back
		{"snapshot_timelapse_low_disk", gauge, idle, eq(0)},
		{"snapshot_requests_refused_total", counter, nil, eq(1)},
	})
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
