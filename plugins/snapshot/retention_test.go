package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camd/camd/sdk"
)

// What the timelapse keeps, as a specification: each case starts with some
// stills in the camera's folder, sends camera frames (or none) every 10ms,
// and waits (generously) until the folder holds what it should.
func TestTimelapseRetention(t *testing.T) {
	now := time.Now()
	legacy := func(d time.Duration) string { return now.Add(d).UTC().Format(nameLayout) + ".jpg" } // older versions' names
	named := func(seq uint64, d time.Duration) string { return frameName(seq, now.Add(d)) }
	seqs := func(names []string) (out []uint64) {
		for _, n := range names {
			var s uint64
			fmt.Sscanf(n, "%d_", &s)
			out = append(out, s)
		}
		return out
	}
	has := func(names []string, name string) bool {
		for _, n := range names {
			if n == name {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name     string
		config   string        // besides dir and every: 20ms
		before   []string      // stills in the camera's folder at start
		fullTill string        // the disk is below min_free (1GB) while this still exists
		frames   bool          // whether the camera sends frames
		captured time.Duration // their capture time, from now
		during   func(camDir string)
		writeErr func(camDir string) error // a write's error, if any, before it is tried
		failures float64                   // wait for at least this many failed writes too
		want     func(names []string, written float64) bool
	}{
		{
			name:   "low disk: max_age frees the space and writing resumes",
			config: "max_age: 1d\n", before: []string{legacy(-48 * time.Hour)}, fullTill: legacy(-48 * time.Hour), frames: true,
			want: func(n []string, w float64) bool { return w >= 1 && !has(n, legacy(-48*time.Hour)) },
		},
		{
			name:   "low disk: keep frees the space and writing resumes",
			config: "keep: 2\n", before: []string{named(1, -3*time.Second), named(2, -2*time.Second), named(3, -time.Second)},
			fullTill: named(1, -3*time.Second), frames: true,
			want: func(n []string, w float64) bool { return w >= 1 && len(n) <= 2 },
		},
		{
			name:   "low disk with keep full: the oldest makes room and writing goes on",
			config: "keep: 2\n", before: []string{named(1, -2*time.Second), named(2, -time.Second)},
			fullTill: named(1, -2*time.Second), frames: true,
			want: func(n []string, w float64) bool { return w >= 2 && len(n) == 2 && seqs(n)[0] >= 3 },
		},
		{
			name:   "camera offline: max_age still applies",
			config: "max_age: 1d\n", before: []string{legacy(-48 * time.Hour), legacy(-time.Hour)},
			want: func(n []string, _ float64) bool { return len(n) == 1 && n[0] == legacy(-time.Hour) },
		},
		{
			name:   "clock set back: new stills sort last, so keep deletes the old ones, not them",
			config: "keep: 3\n", before: []string{legacy(time.Hour), legacy(time.Hour + time.Second), legacy(time.Hour + 2*time.Second)}, frames: true,
			want: func(n []string, w float64) bool {
				return w >= 3 && len(n) == 3 && !has(n, legacy(time.Hour)) && !has(n, legacy(time.Hour+2*time.Second))
			},
		},
		{
			name:   "the sequence continues from the largest in the folder, whatever its time",
			config: "keep: 2\n", before: []string{named(41, time.Hour)}, frames: true,
			want: func(n []string, w float64) bool {
				return w >= 2 && len(n) == 2 && seqs(n)[0] >= 42 && seqs(n)[1] > seqs(n)[0]
			},
		},
		{
			name:   "clock stepped forward: stills written before the step are not expired by max_age",
			config: "max_age: 1d\n", frames: true, captured: -48 * time.Hour,
			want: func(n []string, w float64) bool { return w >= 3 && len(n) >= 3 },
		},
		{
			name:   "a failing write deletes nothing, even with keep: 1",
			config: "keep: 1\n", before: []string{named(1, -time.Second)}, frames: true,
			writeErr: func(string) error { return syscall.EIO }, failures: 3,
			want: func(n []string, w float64) bool { return w == 0 && len(n) == 1 && n[0] == named(1, -time.Second) },
		},
		{
			name:   "a full disk with keep: the oldest makes room, and the timelapse rotates",
			config: "keep: 2\n", before: []string{named(1, -2*time.Second), named(2, -time.Second)}, frames: true,
			writeErr: func(camDir string) error { // room for two stills
				if files, _ := listFrames(camDir); len(files) >= 2 {
					return syscall.ENOSPC
				}
				return nil
			},
			want: func(n []string, w float64) bool { return w >= 3 && len(n) == 2 && seqs(n)[0] >= 4 },
		},
		{
			name:   "a removed folder is made again",
			frames: true, during: func(camDir string) { os.RemoveAll(camDir) },
			want: func(n []string, _ float64) bool { return len(n) > 0 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			camDir := filepath.Join(dir, "cam")
			os.MkdirAll(camDir, 0o755)
			for _, name := range tt.before {
				os.WriteFile(filepath.Join(camDir, name), testJPEG, 0o644)
			}
			s := &Snapshot{freeSpace: func(string) (uint64, error) {
				if _, err := os.Stat(filepath.Join(camDir, tt.fullTill)); tt.fullTill != "" && err == nil {
					return 100 << 20, nil
				}
				return 10 << 30, nil
			}, writeFile: func(dir, name string, data []byte) error {
				if tt.writeErr != nil {
					if err := tt.writeErr(dir); err != nil {
						return fmt.Errorf("write %s: %w", name, err)
					}
				}
				return writeAtomic(dir, name, data)
			}}
			h, _ := start(t, s, fmt.Sprintf("dir: %s\nevery: 20ms\nmin_free: 1GB\n%s", dir, tt.config))
			stat := func(key string) float64 {
				return h.Status()["cameras"].(map[string]any)["cam"].(map[string]any)[key].(float64)
			}
			written := func() float64 { return stat("timelapse_written") }
			names := func() (out []string) {
				files, _ := listFrames(camDir)
				for _, f := range files {
					out = append(out, f.name)
				}
				return out
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for seq := uint64(1); tt.frames; seq++ {
					h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now().Add(tt.captured), JPEG: testJPEG})
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}()
			defer func() { close(stop); <-done }()
			if tt.during != nil {
				waitFor(t, "a first still", func() bool { return written() >= 1 })
				tt.during(camDir)
			}
			var last []string
			waitFor(t, "the folder to hold what it should", func() bool {
				last = names()
				return tt.want(last, written()) && stat("timelapse_write_errors") >= tt.failures
			})
			for _, n := range last {
				if strings.HasPrefix(n, tempPrefix) {
					t.Errorf("temp file %s left behind", n)
				}
			}
		})
	}
}

// A problem that lasts is logged when it starts (or changes), then at most
// once a minute: not on every tick.
func TestLogLimit(t *testing.T) {
	var l logLimit
	for i, step := range []struct {
		changed bool
		want    bool
	}{
		{false, true}, // the first time
		{false, false},
		{false, false},
		{true, true}, // a change of state
		{false, false},
	} {
		if got := l.due(step.changed); got != step.want {
			t.Fatalf("call %d (changed %v): due %v, want %v", i, step.changed, got, step.want)
		}
	}
	l.last = time.Now().Add(-repeatLogEvery - time.Second)
	if !l.due(false) {
		t.Fatal("not due again after repeatLogEvery")
	}
}

// A still counts as fresh by its capture time on this machine's clock; one
// captured "in the future" (the clock was set back after it was taken,
// e.g. before an outage) is not fresh, beyond a small tolerance.
func TestSnapshotFreshnessClockStep(t *testing.T) {
	h, base := start(t, &Snapshot{}, "stale_after: 5s\n")
	snap := base + "/cameras/cam/snapshot.jpg"
	for i, tt := range []struct {
		name     string
		captured time.Duration // from now
		query    string
		status   int
		state    string
	}{
		{"recent", -2 * time.Second, "", 200, "live"},
		{"older than stale_after", -10 * time.Second, "", 503, "offline"},
		{"captured an hour in the future", time.Hour, "", 503, "offline"},
		{"an hour in the future, max_age", time.Hour, "?max_age=500ms&timeout=50ms", 503, "offline"},
		{"within the clock tolerance", clockSkew / 4, "", 200, "live"},
		{"within the tolerance, max_age", clockSkew / 4, "?max_age=500ms", 200, "live"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			send(t, h, uint64(i+1), time.Now().Add(tt.captured))
			resp, body := get(t, snap+tt.query)
			if resp.StatusCode != 200 {
				t.Logf("body: %s", body)
			}
			if resp.StatusCode != tt.status || resp.Header.Get("X-Camera-State") != tt.state {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, resp.Header.Get("X-Camera-State"), tt.status, tt.state)
			}
		})
	}
}
