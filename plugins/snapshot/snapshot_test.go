package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"defaults", "", nil},
		{"sample", strings.Replace(sampleConfig, "/var/lib/camd/timelapse", dir, 1), nil},
		{"timelapse", "dir: " + dir + "/new/sub\nevery: 1s\nkeep: 10\nmax_age: 7d\nmin_free: 500MB\n", nil},
		{"unknown key", "dirr: /tmp\n", []string{"dirr: unknown key"}},
		{"bad durations", "dir: " + dir + "\nevery: often\nmax_age: forever\n", []string{`every: invalid duration "often"`, `max_age: invalid duration "forever"`}},
		{"timelapse keys without dir", "every: 10s\nkeep: 5\n", []string{"every: needs dir", "keep: needs dir"}},
		{"dir is a file", "dir: " + file + "\n", []string{"dir: " + file + " is not a directory"}},
		{"dir under a file", "dir: " + file + "/sub\n", []string{"dir: " + file + " is not a directory"}},
		{"bad size", "min_free: lots\n", []string{`min_free: invalid size "lots"`}},
		{"every too small", "dir: " + dir + "\nevery: 1ms\n", []string{"every: must be at least 10ms"}},
		{"stale_after and per-client cap", "stale_after: 2s\nmax_viewers_per_client: 4\n", nil},
		{"bad stale_after", "stale_after: 0s\n", []string{"stale_after: must be positive"}},
		{"bad per-client cap", "max_viewers_per_client: 0\n", []string{"max_viewers_per_client: must be at least 1"}},
		{"bad listen", "listen: 8083\n", []string{"listen: want host:port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sdktest.CheckConfig(t, &Snapshot{}, []string{"cam"}, tt.yaml, tt.want...) })
	}
}

var testJPEG = func() []byte {
	b, err := device.NewSim(160, 120, 1, 60).Frame(1, time.Now())
	if err != nil {
		panic(err)
	}
	return b
}()

func start(t testing.TB, s *Snapshot, yaml string) (*sdktest.Harness, string) {
	t.Helper()
	h := sdktest.New(t, s)
	urls, err := h.Start("stills", []string{"cam"}, "listen: 127.0.0.1:0\n"+yaml)
	if err != nil {
		t.Fatal(err)
	}
	return h, strings.TrimSuffix(urls[0], "/")
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func send(t *testing.T, h *sdktest.Harness, seq uint64, captured time.Time) {
	t.Helper()
	if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: captured, Width: 160, Height: 120, JPEG: testJPEG}); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotFreshness(t *testing.T) {
	// The frames' ages are far from every limit: an hour old and within
	// stale_after, or fresh and within max_age, whatever the load.
	h, base := start(t, &Snapshot{}, "wait: 300ms\nstale_after: 2h\n")
	snap := base + "/cameras/cam/snapshot.jpg"

	// Never delivered a frame: 503, not an empty 200.
	resp, body := get(t, snap)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "has not delivered a frame") {
		t.Fatalf("before any frame: %d %q", resp.StatusCode, body)
	}

	captured := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	send(t, h, 7, captured)
	resp, body = get(t, snap)
	if resp.StatusCode != 200 || !bytes.Equal(body, testJPEG) {
		t.Fatalf("snapshot: %d, %d bytes", resp.StatusCode, len(body))
	}
	for k, want := range map[string]string{
		"Content-Type":   "image/jpeg",
		"Cache-Control":  "no-store",
		"X-Frame-Seq":    "7",
		"X-Timestamp":    unixString(captured),
		"Last-Modified":  captured.UTC().Format(http.TimeFormat),
		"X-Camera-State": "live",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}

	// The frame is an hour old: max_age=1m waits, and 503s when none comes.
	resp, body = get(t, snap+"?max_age=1m")
	if resp.StatusCode != 503 || !strings.Contains(string(body), "no frame newer than 1m") {
		t.Fatalf("stale: %d %q", resp.StatusCode, body)
	}
	// Each waits, and answers as soon as a fitting frame arrives: a fresh
	// one for max_age, a later one for newer_than=SEQ, one captured after
	// the request for newer_than=now. The frame is sent once the request
	// is seen waiting (it holds a viewer slot).
	for _, tt := range []struct {
		query string
		seq   uint64
	}{
		{"?max_age=1m&timeout=30s", 8},
		{"?newer_than=8&timeout=30s", 9},
		{"?newer_than=now&timeout=30s", 10},
	} {
		// The previous request's slot is released after its answer.
		waitFor(t, "no waiting request", func() bool { return httpStats(h)["viewers"] == 0.0 })
		answered := make(chan *http.Response, 1)
		go func() {
			resp, err := http.Get(snap + tt.query)
			if err != nil {
				t.Error(err)
				answered <- nil
				return
			}
			resp.Body.Close()
			answered <- resp
		}()
		waitFor(t, tt.query+" waiting", func() bool { return httpStats(h)["viewers"] == 1.0 })
		send(t, h, tt.seq, time.Now())
		if resp = <-answered; resp == nil {
			t.FailNow()
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Seq") != strconv.FormatUint(tt.seq, 10) {
			t.Fatalf("%s: %d seq %s", tt.query, resp.StatusCode, resp.Header.Get("X-Frame-Seq"))
		}
	}
	// A timestamp form.
	ts := unixString(time.Now().Add(time.Hour))
	if resp, _ = get(t, snap+"?newer_than="+ts); resp.StatusCode != 503 {
		t.Fatalf("newer_than future: %d", resp.StatusCode)
	}
	for _, bad := range []string{"?max_age=soon", "?newer_than=yesterday", "?timeout=x", "?placeholder=maybe"} {
		if resp, _ = get(t, snap+bad); resp.StatusCode != 400 {
			t.Fatalf("%s: %d", bad, resp.StatusCode)
		}
	}
	if resp, _ = get(t, base+"/cameras/nope/snapshot.jpg"); resp.StatusCode != 404 {
		t.Fatalf("unknown camera: %d", resp.StatusCode)
	}
}

func listTimelapse(t *testing.T, base string) []entry {
	t.Helper()
	resp, body := get(t, base+"/cameras/cam/timelapse/")
	if resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	var l struct{ Frames []entry }
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatal(err)
	}
	return l.Frames
}

// Frames appear at the interval, decode, and retention holds.
func TestTimelapse(t *testing.T) {
	dir := t.TempDir()
	h, base := start(t, &Snapshot{}, fmt.Sprintf("dir: %s\nevery: 50ms\nkeep: 5\n", dir))
	written := func() float64 {
		return h.Status()["cameras"].(map[string]any)["cam"].(map[string]any)["timelapse_written"].(float64)
	}
	// New frames until more than keep were written, so retention has had
	// to remove some.
	for seq := uint64(1); written() < 8; seq++ {
		if seq > 2000 {
			t.Fatalf("only %v written after %d frames 20ms apart", written(), seq)
		}
		send(t, h, seq, time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	// Retention runs right after each write.
	var files []entry
	waitFor(t, "5 files kept (keep: 5)", func() bool {
		files = listTimelapse(t, base)
		return len(files) == 5
	})
	for i, f := range files {
		if i > 0 && f.Name <= files[i-1].Name {
			t.Fatalf("not sorted: %s after %s", f.Name, files[i-1].Name)
		}
		resp, body := get(t, base+"/cameras/cam/timelapse/"+f.URL)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", f.Name, resp.StatusCode)
		}
		if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
			t.Fatalf("%s does not decode: %v", f.Name, err)
		}
	}
}

func TestTimelapseMaxAge(t *testing.T) {
	dir := t.TempDir()
	camDir := filepath.Join(dir, "cam")
	os.MkdirAll(camDir, 0o755)
	old := time.Now().Add(-48*time.Hour).UTC().Format(nameLayout) + ".jpg"
	os.WriteFile(filepath.Join(camDir, old), testJPEG, 0o644)
	os.WriteFile(filepath.Join(camDir, tempPrefix+"crashed-123"), testJPEG[:10], 0o644)
	h, base := start(t, &Snapshot{}, fmt.Sprintf("dir: %s\nevery: 20ms\nmax_age: 1d\n", dir))
	if _, err := os.Stat(filepath.Join(camDir, tempPrefix+"crashed-123")); !os.IsNotExist(err) {
		t.Fatal("partial file from a crash not removed at start")
	}
	send(t, h, 1, time.Now())
	// Retention runs right after each write: the 2-day-old file goes,
	// the new one stays.
	waitFor(t, "the new frame alone", func() bool {
		files := listTimelapse(t, base)
		return len(files) == 1 && files[0].Name != old
	})
}

// Below min_free the timelapse stops (loudly) and the HTTP side keeps
// working; it resumes when space comes back.
func TestTimelapseDiskFloor(t *testing.T) {
	dir := t.TempDir()
	var free atomic.Uint64
	free.Store(100 << 20)
	s := &Snapshot{freeSpace: func(string) (uint64, error) { return free.Load(), nil }}
	h, base := start(t, s, fmt.Sprintf("dir: %s\nevery: 20ms\nmin_free: 1GB\n", dir))
	camStatus := func() map[string]any { return h.Status()["cameras"].(map[string]any)["cam"].(map[string]any) }
	for seq := uint64(1); camStatus()["timelapse_skipped_low_disk"].(float64) < 3; seq++ {
		if seq > 2000 {
			t.Fatalf("the timelapse did not try to write: %v", camStatus())
		}
		send(t, h, seq, time.Now())
		time.Sleep(10 * time.Millisecond)
	}
	if files := listTimelapse(t, base); len(files) != 0 {
		t.Fatalf("wrote %d files below min_free", len(files))
	}
	if resp, _ := get(t, base+"/cameras/cam/snapshot.jpg"); resp.StatusCode != 200 {
		t.Fatalf("snapshot while disk low: %d", resp.StatusCode)
	}
	if st := camStatus(); st["low_disk"] != true {
		t.Fatalf("status %v", st)
	}
	free.Store(10 << 30)
	send(t, h, 11, time.Now())
	waitFor(t, "the timelapse to resume", func() bool { return len(listTimelapse(t, base)) > 0 })
}

func TestTimelapseTraversal(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret.jpg"), []byte("secret"), 0o644)
	_, base := start(t, &Snapshot{}, fmt.Sprintf("dir: %s/frames\n", dir))
	for _, p := range []string{
		"../secret.jpg", "..%2fsecret.jpg", "..%2F..%2Fsecret.jpg", "%2e%2e/secret.jpg",
		"/etc/passwd", "..%5csecret.jpg", "20261124T101500.123Z.jpg/../../secret.jpg",
	} {
		resp, body := get(t, base+"/cameras/cam/timelapse/"+p)
		if resp.StatusCode == 200 || strings.Contains(string(body), "secret") || strings.Contains(string(body), "root:") {
			t.Fatalf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, base+"/cameras/../timelapse/"); resp.StatusCode == 200 {
		t.Fatal("camera traversal answered")
	}
}
