package main

import (
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
			v, _ := sdktest.Sample(h.Metrics(), name, cam)
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
	if v, _ := sdktest.Sample(h.Metrics(), "snapshot_timelapse_low_disk", cam); v != 1 {
		t.Fatalf("snapshot_timelapse_low_disk = %v below min_free", v)
	}
	free.Store(10 << 30)
	// The camera's folder becomes a file: writes fail. Moved aside, not
	// removed: the timelapse may be writing into it right now.
	if err := os.Rename(filepath.Join(dir, "cam"), filepath.Join(dir, "cam.gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cam"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	until("snapshot_timelapse_write_errors_total", 1)

	sdktest.CheckMetrics(t, h.Metrics(), "snapshot_", []sdktest.MetricWant{
		want("snapshot_stills_served_total", sdktest.Counter, cam, sdktest.Eq(3)),
		want("snapshot_stills_served_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("snapshot_timelapse_frames_written_total", sdktest.Counter, cam, sdktest.AtLeast(2)),
		want("snapshot_timelapse_frames_written_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("snapshot_timelapse_skipped_low_disk_total", sdktest.Counter, cam, sdktest.AtLeast(1)),
		want("snapshot_timelapse_skipped_low_disk_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("snapshot_timelapse_write_errors_total", sdktest.Counter, cam, sdktest.AtLeast(1)),
		want("snapshot_timelapse_write_errors_total", sdktest.Counter, idle, sdktest.Eq(0)),
		want("snapshot_timelapse_low_disk", sdktest.Gauge, cam, sdktest.Eq(0)), // space came back
		want("snapshot_timelapse_low_disk", sdktest.Gauge, idle, sdktest.Eq(0)),
		want("snapshot_requests_refused_total", sdktest.Counter, nil, sdktest.Eq(1)),
	})
}

// want is a sdktest.MetricWant, written as a call so the tables stay short.
func want(name string, typ dto.MetricType, label []string, ok func(float64) bool) sdktest.MetricWant {
	return sdktest.MetricWant{Name: name, Type: typ, Label: label, OK: ok}
}
