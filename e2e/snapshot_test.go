package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func snapshotURL(s status, output, cam string) string {
	return outputURL(s, output, "/cameras/"+cam+"/snapshot.jpg")
}

// SIGKILL the snapshot plugin again and again while it writes the
// timelapse: every .jpg on disk is always whole, and what a kill leaves
// half-written is a temp file that the next start removes.
func TestTimelapseSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: sim
    source: {type: sim, size: 640x480, fps: 30, quality: 90}
outputs:
  - name: stills
    plugin: snapshot
    restart: {backoff: 50ms, max_backoff: 100ms}
    config: {listen: "127.0.0.1:0", dir: %q, every: 10ms, keep: 200}
`, dir))
	camDir := filepath.Join(dir, "sim")
	restarts := 0
	for kill := 0; kill < 12; kill++ {
		s := c.waitOutputs(func(s status) bool { return s.Outputs[0].Restarts == restarts })
		time.Sleep(time.Duration(100+kill*23) * time.Millisecond)
		if err := syscall.Kill(s.Outputs[0].PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		restarts++
		waitGone(t, s.Outputs[0].PID, 5*time.Second)
		left := tempFiles(t, camDir)
		checkWhole(t, camDir)
		s = c.waitOutputs(func(s status) bool { return s.Outputs[0].Restarts == restarts })
		for _, f := range left {
			if _, err := os.Stat(filepath.Join(camDir, f)); !os.IsNotExist(err) {
				t.Fatalf("partial file %s survived the restart", f)
			}
		}
	}
	entries, _ := os.ReadDir(camDir)
	if len(entries) < 20 {
		t.Fatalf("only %d timelapse files after 12 restarts", len(entries))
	}
}

func tempFiles(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			tmp = append(tmp, e.Name())
		}
	}
	return tmp
}

// checkWhole decodes every finished timelapse file.
func checkWhole(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".jpg") || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			if os.IsNotExist(err) {
				continue // pruned meanwhile
			}
			t.Fatal(err)
		}
		if _, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("torn file %s (%d bytes): %v", e.Name(), len(b), err)
		}
	}
}

// With less free space than min_free the timelapse writes nothing, says so
// in the status, and snapshots keep working, from a real plugin process on
// a real filesystem.
func TestSnapshotDiskFloorAndFreshness(t *testing.T) {
	dir := t.TempDir()
	c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: sim
    source: {type: sim, size: 320x240, fps: 10}
outputs:
  - name: stills
    plugin: snapshot
    config: {listen: "127.0.0.1:0", dir: %q, every: 50ms, min_free: 1000TB}
`, dir))
	s := c.waitOutputs(nil)
	url := snapshotURL(s, "stills", "sim")
	var seq string
	for i := 0; i < 3; i++ {
		resp, err := http.Get(url + "?newer_than=now&timeout=5s")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
		}
		if resp.Header.Get("X-Frame-Seq") == seq {
			t.Fatalf("newer_than=now returned the same frame %s twice", seq)
		}
		seq = resp.Header.Get("X-Frame-Seq")
		if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	// The status and the log say so (the log line travels from the plugin
	// through camd: poll for both).
	lowDisk := func() bool {
		resp, err := http.Get(c.api + "/api/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Outputs []struct {
				PluginStatus struct {
					Cameras map[string]struct {
						LowDisk bool `json:"low_disk"`
					} `json:"cameras"`
				} `json:"plugin_status"`
			} `json:"outputs"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return len(st.Outputs) > 0 && st.Outputs[0].PluginStatus.Cameras["sim"].LowDisk
	}
	waitFor(t, 20*time.Second, func() bool { return lowDisk() && strings.Contains(c.logs.String(), "disk nearly full") })
	if entries, _ := os.ReadDir(filepath.Join(dir, "sim")); len(entries) != 0 {
		t.Fatalf("wrote %d files below min_free", len(entries))
	}
}
